package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Schema versions carried in every JSON body.
const (
	NoticeSchema   = "takedown.notice/v1"
	FeedbackSchema = "takedown.feedback/v1"
	ActionSchema   = "takedown.action/v1"
	EventSchema    = "takedown.event/v1"
)

// Kind is what sort of notice an issuer sends.
type Kind string

const (
	// KindRemovalOrder is a binding TCO Art. 3 order: one hour from receipt.
	KindRemovalOrder Kind = "removal_order"
	// KindReferral is a voluntary referral judged against the provider's
	// terms; it runs on a configurable service level and may be declined.
	KindReferral Kind = "referral"
)

// Kinds lists every kind, in a fixed order.
var Kinds = []Kind{KindRemovalOrder, KindReferral}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k == KindRemovalOrder || k == KindReferral }

// Reason is an Art. 2(7) category of terrorist content.
type Reason string

// The Art. 2(7) letters (a) to (e) by name.
const (
	ReasonIncitement    Reason = "incitement"
	ReasonSolicitation  Reason = "solicitation"
	ReasonParticipation Reason = "participation"
	ReasonInstruction   Reason = "instruction"
	ReasonThreat        Reason = "threat"
)

var reasons = []Reason{ReasonIncitement, ReasonSolicitation, ReasonParticipation, ReasonInstruction, ReasonThreat}

// ContentItem locates one piece of content: a URL and, where the URL alone
// is not enough, a description (time stamp in a video, account name).
type ContentItem struct {
	URL     string `json:"url"`
	Locator string `json:"locator,omitempty"`
}

// Contact is the issuer's follow-up contact for the provider.
type Contact struct {
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"`
	Phone string `json:"phone,omitempty"`
}

// Notice is a removal order or a referral with the Annex I fields of
// Regulation 2021/784. Its identity is derived from Issuer and Reference.
type Notice struct {
	Schema             string        `json:"schema"`
	Kind               Kind          `json:"kind"`
	Issuer             string        `json:"issuer"`
	Reference          string        `json:"reference"`
	Provider           string        `json:"provider"`
	IssuedAt           time.Time     `json:"issued_at"`
	MemberState        string        `json:"member_state"`
	Authority          string        `json:"authority,omitempty"`
	Content            []ContentItem `json:"content"`
	Reasons            []Reason      `json:"reasons,omitempty"`
	Explanation        string        `json:"explanation,omitempty"`
	Language           string        `json:"language,omitempty"`
	NonDisclosureUntil *time.Time    `json:"non_disclosure_until,omitempty"`
	CrossBorder        bool          `json:"cross_border,omitempty"`
	HomeMemberState    string        `json:"home_member_state,omitempty"`
	Contact            Contact       `json:"contact"`
}

// noticeWire is the decoding shape: times arrive as strings so that a bad
// time is reported against its own field. The optional "id" lets a client
// echo the id it computed; it must then match the derived one.
type noticeWire struct {
	Schema             string        `json:"schema"`
	ID                 string        `json:"id"`
	Kind               Kind          `json:"kind"`
	Issuer             string        `json:"issuer"`
	Reference          string        `json:"reference"`
	Provider           string        `json:"provider"`
	IssuedAt           string        `json:"issued_at"`
	MemberState        string        `json:"member_state"`
	Authority          string        `json:"authority"`
	Content            []ContentItem `json:"content"`
	Reasons            []Reason      `json:"reasons"`
	Explanation        string        `json:"explanation"`
	Language           string        `json:"language"`
	NonDisclosureUntil string        `json:"non_disclosure_until"`
	CrossBorder        bool          `json:"cross_border"`
	HomeMemberState    string        `json:"home_member_state"`
	Contact            Contact       `json:"contact"`
}

// noticeNamespace is the UUIDv5 namespace of notice ids. Changing it would
// change every id, so it is fixed forever.
var noticeNamespace = uuid.MustParse("6f1c3f0e-3b7a-5d8e-9a51-7c2a1e0b9d44")

// NoticeID derives a notice's id from its issuer and the issuer's reference:
// the same submission always maps to the same id.
func NoticeID(issuer, reference string) string {
	return uuid.NewSHA1(noticeNamespace, []byte(issuer+"\x00"+reference)).String()
}

// ID is the notice's derived id.
func (n *Notice) ID() string { return NoticeID(n.Issuer, n.Reference) }

// Fingerprint is a digest of the notice's content. Two submissions with the
// same id but different fingerprints are a conflict.
func (n *Notice) Fingerprint() string { return FingerprintOf(n.JSON()) }

// JSON is the notice's canonical JSON, byte for byte what json.Marshal
// writes for it: what is stored, delivered and fingerprinted. Calling
// MarshalJSON directly spares json.Marshal's second pass over a
// marshaler's output (it validates and compacts what is already compact),
// which every new notice would pay for.
func (n *Notice) JSON() []byte {
	b, _ := n.MarshalJSON() // a Notice always marshals
	return b
}

// FingerprintOf is the fingerprint of a notice from its JSON as
// json.Marshal (and JSON) writes it, for callers that have it already.
func FingerprintOf(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:16])
}

// MarshalJSON adds the derived id to the wire form so providers and the
// events stream always see it.
func (n Notice) MarshalJSON() ([]byte, error) {
	type plain Notice
	return json.Marshal(struct {
		ID string `json:"id"`
		plain
	}{n.ID(), plain(n)})
}

// DecodeNotice decodes and validates a notice body.
func DecodeNotice(data []byte) (Notice, error) {
	var w noticeWire
	if err := decodeStrict("notice", data, MaxNoticeBytes, &w); err != nil {
		return Notice{}, err
	}
	return w.notice()
}

func (w *noticeWire) notice() (Notice, error) {
	fe := &fieldErrors{what: "notice"}
	n := Notice{
		Schema: w.Schema, Kind: w.Kind, Issuer: w.Issuer, Reference: w.Reference,
		Provider: w.Provider, MemberState: w.MemberState, Authority: w.Authority,
		Content: w.Content, Reasons: w.Reasons, Explanation: w.Explanation,
		Language: w.Language, CrossBorder: w.CrossBorder,
		HomeMemberState: w.HomeMemberState, Contact: w.Contact,
	}
	if w.IssuedAt == "" {
		fe.add("issued_at", "is required (RFC 3339 time)")
	} else if t, err := time.Parse(time.RFC3339Nano, w.IssuedAt); err != nil {
		fe.add("issued_at", "must be an RFC 3339 time such as 2026-11-27T09:15:00Z")
	} else {
		n.IssuedAt = t.UTC()
	}
	if w.NonDisclosureUntil != "" {
		if t, err := time.Parse(time.RFC3339Nano, w.NonDisclosureUntil); err != nil {
			fe.add("non_disclosure_until", "must be an RFC 3339 time")
		} else {
			t = t.UTC()
			n.NonDisclosureUntil = &t
		}
	}
	n.validate(fe)
	if w.ID != "" && fe.err() == nil && w.ID != n.ID() {
		fe.add("id", "does not match the id derived from issuer and reference (%s)", n.ID())
	}
	if err := fe.err(); err != nil {
		return Notice{}, err
	}
	return n, nil
}

// Validate checks every field and reports all problems at once.
func (n *Notice) Validate() error {
	fe := &fieldErrors{what: "notice"}
	if n.IssuedAt.IsZero() {
		fe.add("issued_at", "is required (RFC 3339 time)")
	}
	n.validate(fe)
	return fe.err()
}

var (
	slugRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	languageRE = regexp.MustCompile(`^[a-z]{2}$`)
)

// memberStates are the EU Member State codes (Greece as EL, with GR
// accepted as its ISO alias).
var memberStates = map[string]bool{
	"AT": true, "BE": true, "BG": true, "HR": true, "CY": true, "CZ": true, "DK": true,
	"EE": true, "FI": true, "FR": true, "DE": true, "EL": true, "GR": true, "HU": true,
	"IE": true, "IT": true, "LV": true, "LT": true, "LU": true, "MT": true, "NL": true,
	"PL": true, "PT": true, "RO": true, "SK": true, "SI": true, "ES": true, "SE": true,
}

// ValidMemberState reports whether s is an EU Member State code.
func ValidMemberState(s string) bool { return memberStates[s] }

// ValidSlug reports whether s can name an issuer or provider: it becomes a
// NATS subject token, so it is lower case letters, digits, '-' and '_'.
func ValidSlug(s string) bool { return slugRE.MatchString(s) }

const (
	maxContentItems   = 100
	maxURLLen         = 2048
	maxLocatorLen     = 1000
	maxReferenceLen   = 128
	maxExplanationLen = 10000
	maxNameLen        = 200
)

func (n *Notice) validate(fe *fieldErrors) {
	if n.Schema != NoticeSchema {
		fe.add("schema", "must be %q", NoticeSchema)
	}
	if !n.Kind.Valid() {
		fe.add("kind", "must be removal_order or referral")
	}
	if !ValidSlug(n.Issuer) {
		fe.add("issuer", "must be a lower-case id of letters, digits, '-' or '_' (at most 63)")
	}
	checkText(fe, "reference", n.Reference, maxReferenceLen, true)
	if !ValidSlug(n.Provider) {
		fe.add("provider", "must be a lower-case id of letters, digits, '-' or '_' (at most 63)")
	}
	if !ValidMemberState(n.MemberState) {
		fe.add("member_state", "must be an EU Member State code such as DE")
	}
	checkText(fe, "authority", n.Authority, maxNameLen, false)
	switch {
	case len(n.Content) == 0:
		fe.add("content", "needs at least one item")
	case len(n.Content) > maxContentItems:
		fe.add("content", "has %d items; at most %d", len(n.Content), maxContentItems)
	default:
		for i, c := range n.Content {
			field := "content[" + strconv.Itoa(i) + "]"
			if err := checkURL(c.URL); err != "" {
				fe.add(field+".url", "%s", err)
			}
			checkText(fe, field+".locator", c.Locator, maxLocatorLen, false)
		}
	}
	if n.Kind == KindRemovalOrder && len(n.Reasons) == 0 {
		fe.add("reasons", "a removal order needs at least one Art. 2(7) reason")
	}
	for i, r := range n.Reasons {
		field := "reasons[" + strconv.Itoa(i) + "]"
		if !slices.Contains(reasons, r) {
			fe.add(field, "must be one of incitement, solicitation, participation, instruction, threat")
		} else if slices.Index(n.Reasons, r) != i {
			fe.add(field, "repeats %q", r)
		}
	}
	checkText(fe, "explanation", n.Explanation, maxExplanationLen, n.Kind == KindRemovalOrder)
	if n.Language != "" && !languageRE.MatchString(n.Language) {
		fe.add("language", "must be a two-letter ISO 639-1 code such as de")
	}
	if n.NonDisclosureUntil != nil && !n.IssuedAt.IsZero() && !n.NonDisclosureUntil.After(n.IssuedAt) {
		fe.add("non_disclosure_until", "must be after issued_at")
	}
	if n.CrossBorder {
		switch {
		case !ValidMemberState(n.HomeMemberState):
			fe.add("home_member_state", "a cross-border order needs the provider's home Member State")
		case n.HomeMemberState == n.MemberState:
			fe.add("home_member_state", "equals member_state; a cross-border order goes to another Member State")
		}
	} else if n.HomeMemberState != "" && !ValidMemberState(n.HomeMemberState) {
		fe.add("home_member_state", "must be an EU Member State code")
	}
	checkText(fe, "contact.name", n.Contact.Name, maxNameLen, false)
	if n.Contact.Email != "" {
		if a, err := mail.ParseAddress(n.Contact.Email); err != nil || a.Address != n.Contact.Email {
			fe.add("contact.email", "must be a plain e-mail address")
		}
	}
	checkText(fe, "contact.phone", n.Contact.Phone, 40, false)
	if n.Kind == KindRemovalOrder && n.Contact.Email == "" && n.Contact.Phone == "" {
		fe.add("contact", "a removal order needs a follow-up e-mail or phone")
	}
}

func checkURL(s string) string {
	if s == "" {
		return "is required"
	}
	if len(s) > maxURLLen {
		return "is longer than 2048 bytes"
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "must be an absolute http or https URL"
	}
	return ""
}

// checkText refuses control characters, invalid UTF-8 and overlong text.
func checkText(fe *fieldErrors, field, s string, max int, required bool) {
	switch {
	case s == "" || strings.TrimSpace(s) == "":
		if required {
			fe.add(field, "is required")
		} else if s != "" {
			fe.add(field, "is blank")
		}
	case len(s) > max:
		fe.add(field, "is longer than %d bytes", max)
	case !utf8.ValidString(s):
		fe.add(field, "is not valid UTF-8")
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) >= 0:
		fe.add(field, "contains control characters")
	}
}
