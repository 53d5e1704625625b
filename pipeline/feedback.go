package pipeline

import (
	"bytes"
	"time"

	"github.com/google/uuid"
)

// FeedbackType is what a provider reports about a notice.
type FeedbackType string

const (
	// FeedbackAcknowledged: the contact point received the notice.
	FeedbackAcknowledged FeedbackType = "acknowledged"
	// FeedbackRemoved: the content was removed (Annex II), with the time.
	FeedbackRemoved FeedbackType = "removed"
	// FeedbackDisabled: access was disabled in all Member States (Annex II).
	FeedbackDisabled FeedbackType = "disabled"
	// FeedbackBlocked: the provider cannot act (Annex III), with a ground.
	FeedbackBlocked FeedbackType = "blocked"
	// FeedbackDeclined: the provider declines a referral under its terms.
	FeedbackDeclined FeedbackType = "declined"
	// FeedbackResumed: force majeure is over; the clock starts again.
	FeedbackResumed FeedbackType = "resumed"
)

// FeedbackTypes lists every feedback type, in a fixed order.
var FeedbackTypes = []FeedbackType{FeedbackAcknowledged, FeedbackRemoved, FeedbackDisabled, FeedbackBlocked, FeedbackDeclined, FeedbackResumed}

// Ground is an Annex III reason why a provider cannot comply.
type Ground string

const (
	GroundForceMajeure     Ground = "force_majeure"
	GroundManifestError    Ground = "manifest_error"
	GroundInsufficientInfo Ground = "insufficient_info"
)

// Grounds lists every Annex III ground.
var Grounds = []Ground{GroundForceMajeure, GroundManifestError, GroundInsufficientInfo}

// Valid reports whether g is a known ground.
func (g Ground) Valid() bool {
	return g == GroundForceMajeure || g == GroundManifestError || g == GroundInsufficientInfo
}

// Feedback is a provider's report on one notice.
type Feedback struct {
	Schema            string       `json:"schema"`
	NoticeID          string       `json:"notice_id"`
	Provider          string       `json:"provider"`
	Type              FeedbackType `json:"type"`
	ActionAt          *time.Time   `json:"action_at,omitempty"`
	ReceivedAt        *time.Time   `json:"received_at,omitempty"`
	ProviderReference string       `json:"provider_reference,omitempty"`
	Ground            Ground       `json:"ground,omitempty"`
	Explanation       string       `json:"explanation,omitempty"`
}

type feedbackWire struct {
	Schema            string       `json:"schema"`
	NoticeID          string       `json:"notice_id"`
	Provider          string       `json:"provider"`
	Type              FeedbackType `json:"type"`
	ActionAt          string       `json:"action_at"`
	ReceivedAt        string       `json:"received_at"`
	ProviderReference string       `json:"provider_reference"`
	Ground            Ground       `json:"ground"`
	Explanation       string       `json:"explanation"`
}

// DecodeFeedback decodes and validates a provider's feedback body.
func DecodeFeedback(data []byte) (Feedback, error) {
	var w feedbackWire
	if err := decodeStrict("feedback", data, MaxFeedbackBytes, &w); err != nil {
		return Feedback{}, err
	}
	fe := &fieldErrors{what: "feedback"}
	f := Feedback{
		Schema: w.Schema, NoticeID: w.NoticeID, Provider: w.Provider, Type: w.Type,
		ProviderReference: w.ProviderReference, Ground: w.Ground, Explanation: w.Explanation,
	}
	f.ActionAt = parseOptionalTime(fe, "action_at", w.ActionAt)
	f.ReceivedAt = parseOptionalTime(fe, "received_at", w.ReceivedAt)
	f.validate(fe)
	if err := fe.err(); err != nil {
		return Feedback{}, err
	}
	return f, nil
}

// Validate checks every field and reports all problems at once.
func (f *Feedback) Validate() error {
	fe := &fieldErrors{what: "feedback"}
	f.validate(fe)
	return fe.err()
}

func (f *Feedback) validate(fe *fieldErrors) {
	if f.Schema != FeedbackSchema {
		fe.add("schema", "must be %q", FeedbackSchema)
	}
	checkNoticeID(fe, f.NoticeID)
	if !ValidSlug(f.Provider) {
		fe.add("provider", "must be the provider's id")
	}
	switch f.Type {
	case FeedbackRemoved, FeedbackDisabled:
		if f.ActionAt == nil {
			fe.add("action_at", "is required for %s (Annex II time of action)", f.Type)
		}
	case FeedbackBlocked:
		if !f.Ground.Valid() {
			fe.add("ground", "must be force_majeure, manifest_error or insufficient_info")
		}
		checkText(fe, "explanation", f.Explanation, maxExplanationLen, true)
	case FeedbackAcknowledged, FeedbackDeclined, FeedbackResumed:
	default:
		fe.add("type", "must be one of acknowledged, removed, disabled, blocked, declined, resumed")
	}
	if f.Type != FeedbackBlocked {
		if f.Ground != "" {
			fe.add("ground", "only blocked feedback carries a ground")
		}
		checkText(fe, "explanation", f.Explanation, maxExplanationLen, false)
	}
	if f.ActionAt != nil && f.Type != FeedbackRemoved && f.Type != FeedbackDisabled {
		fe.add("action_at", "only removed or disabled feedback carries action_at")
	}
	checkText(fe, "provider_reference", f.ProviderReference, maxReferenceLen, false)
}

// ActionType is what an issuer does to a notice after submitting it.
type ActionType string

const (
	// ActionWithdraw closes an open notice on the issuer's behalf.
	ActionWithdraw ActionType = "withdraw"
	// ActionClarify answers a provider's insufficient_info or
	// manifest_error block; the clock starts again.
	ActionClarify ActionType = "clarify"
)

// Action is an issuer's follow-up on one of its notices. It travels on the
// issuer's intake subject beside its notices.
type Action struct {
	Schema      string     `json:"schema"`
	NoticeID    string     `json:"notice_id"`
	Issuer      string     `json:"issuer"`
	Type        ActionType `json:"type"`
	Explanation string     `json:"explanation,omitempty"`
}

// DecodeAction decodes and validates an issuer's action body.
func DecodeAction(data []byte) (Action, error) {
	var a Action
	if err := decodeStrict("action", data, MaxActionBytes, &a); err != nil {
		return Action{}, err
	}
	if err := a.Validate(); err != nil {
		return Action{}, err
	}
	return a, nil
}

// Validate checks every field and reports all problems at once.
func (a *Action) Validate() error {
	fe := &fieldErrors{what: "action"}
	if a.Schema != ActionSchema {
		fe.add("schema", "must be %q", ActionSchema)
	}
	checkNoticeID(fe, a.NoticeID)
	if !ValidSlug(a.Issuer) {
		fe.add("issuer", "must be the issuer's id")
	}
	switch a.Type {
	case ActionWithdraw:
		checkText(fe, "explanation", a.Explanation, maxExplanationLen, false)
	case ActionClarify:
		checkText(fe, "explanation", a.Explanation, maxExplanationLen, true)
	default:
		fe.add("type", "must be withdraw or clarify")
	}
	return fe.err()
}

// Intake is one message on an issuer's intake subject: a new notice or an
// action on an earlier one, told apart by its schema.
type Intake struct {
	Notice *Notice
	Action *Action
}

// DecodeIntake decodes a message from an issuer's intake subject.
func DecodeIntake(data []byte) (Intake, error) {
	var head struct {
		Schema string `json:"schema"`
	}
	// A first, lenient pass only finds the schema; the strict decoder below
	// reports everything else. Most intake is notices: a body that
	// contains neither the action schema's name nor any escape (which
	// could spell it otherwise) is no action and skips that pass.
	if len(data) <= MaxNoticeBytes && (bytes.Contains(data, []byte(ActionSchema)) || bytes.IndexByte(data, '\\') >= 0) {
		_ = jsonUnmarshalLenient(data, &head)
	}
	if head.Schema == ActionSchema {
		a, err := DecodeAction(data)
		if err != nil {
			return Intake{}, err
		}
		return Intake{Action: &a}, nil
	}
	n, err := DecodeNotice(data)
	if err != nil {
		return Intake{}, err
	}
	return Intake{Notice: &n}, nil
}

func checkNoticeID(fe *fieldErrors, id string) {
	if u, err := uuid.Parse(id); err != nil || u.String() != id {
		fe.add("notice_id", "must be a notice id (lower-case UUID)")
	}
}

func parseOptionalTime(fe *fieldErrors, field, s string) *time.Time {
	if s == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		fe.add(field, "must be an RFC 3339 time such as 2026-11-27T09:41:10Z")
		return nil
	}
	t = t.UTC()
	return &t
}
