package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxDirectoryBytes bounds the directory file.
const MaxDirectoryBytes = 4 << 20

// Channel names a delivery channel.
type Channel string

const (
	// ChannelNATS publishes to the provider's deliver subject.
	ChannelNATS Channel = "nats"
	// ChannelWebhook posts to the provider's endpoint.
	ChannelWebhook Channel = "webhook"
)

// Duration is a time.Duration written as "90s", "1h" in config files.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as "1h0m0s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads "1h", "90s", "250ms".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 90s or 1h", b)
	}
	*d = Duration(v)
	return nil
}

// Issuer is a referral unit or competent authority allowed to submit.
type Issuer struct {
	ID          string  `json:"id" yaml:"id"`
	Name        string  `json:"name" yaml:"name"`
	MemberState string  `json:"member_state" yaml:"member_state"`
	Contact     Contact `json:"contact" yaml:"contact"`
	// TokenSHA256 lists the hex SHA-256 digests of the issuer's API tokens.
	TokenSHA256 []string `json:"token_sha256,omitempty" yaml:"token_sha256,omitempty"`
	// NATSNKey is the public NKey ("U…") the issuer connects to NATS with,
	// for the rendered server configuration.
	NATSNKey string `json:"nats_nkey,omitempty" yaml:"nats_nkey,omitempty"`
}

// Operator may read everything and repair (replay) through the API.
type Operator struct {
	ID          string   `json:"id" yaml:"id"`
	Name        string   `json:"name" yaml:"name"`
	TokenSHA256 []string `json:"token_sha256" yaml:"token_sha256"`
}

// Provider is a hosting service provider that receives notices.
type Provider struct {
	ID           string  `json:"id" yaml:"id"`
	Name         string  `json:"name" yaml:"name"`
	MemberState  string  `json:"member_state" yaml:"member_state"`
	Channel      Channel `json:"channel" yaml:"channel"`
	ContactPoint Contact `json:"contact_point" yaml:"contact_point"`
	// Windows overrides the kind's window for this provider.
	Windows map[Kind]Duration `json:"windows,omitempty" yaml:"windows,omitempty"`
	// Webhook configures channel webhook.
	Webhook *Webhook `json:"webhook,omitempty" yaml:"webhook,omitempty"`
	// TokenSHA256 lists the hex SHA-256 digests of the bearer tokens with
	// which this provider authenticates to the HTTP API. Tokens themselves
	// are never stored.
	TokenSHA256 []string `json:"token_sha256,omitempty" yaml:"token_sha256,omitempty"`
	// NATSNKey is the public NKey ("U…") the provider connects to NATS
	// with, for the rendered server configuration.
	NATSNKey string `json:"nats_nkey,omitempty" yaml:"nats_nkey,omitempty"`
}

// Webhook is a provider's HTTP endpoint and how to deliver to it.
type Webhook struct {
	// URL receives each notice as a signed POST. https, unless
	// AllowPrivate is set (development and tests).
	URL string `json:"url" yaml:"url"`
	// Secrets ("whsec_<base64>") sign every delivery, one signature each,
	// so a provider can rotate without downtime.
	Secrets []string `json:"secrets" yaml:"secrets"`
	// AllowPrivate lets deliveries reach loopback, private and link-local
	// addresses. Off by default: no SSRF through an endpoint.
	AllowPrivate bool `json:"allow_private,omitempty" yaml:"allow_private,omitempty"`
	// Retry is the delay before each retry of a failed delivery; the
	// notice fails after the last. Default 5s 15s 30s 1m 2m 5m 10m 15m.
	Retry []Duration `json:"retry,omitempty" yaml:"retry,omitempty"`
	// Concurrency bounds requests in flight to this endpoint. Default 4.
	Concurrency int `json:"concurrency,omitempty" yaml:"concurrency,omitempty"`
	// Rate bounds requests per second to this endpoint. Default 20.
	Rate float64 `json:"rate,omitempty" yaml:"rate,omitempty"`
	// Timeout of one request. Default 10s.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// BreakerFailures consecutive failures open the circuit for
	// BreakerCooldown. Defaults 5 and 30s.
	BreakerFailures int      `json:"breaker_failures,omitempty" yaml:"breaker_failures,omitempty"`
	BreakerCooldown Duration `json:"breaker_cooldown,omitempty" yaml:"breaker_cooldown,omitempty"`
}

// DefaultWebhookRetry is the retry schedule of a webhook delivery:
// front-loaded for a one-hour clock, seconds first, then minutes.
var DefaultWebhookRetry = []Duration{
	Duration(5 * time.Second), Duration(15 * time.Second), Duration(30 * time.Second), Duration(time.Minute),
	Duration(2 * time.Minute), Duration(5 * time.Minute), Duration(10 * time.Minute), Duration(15 * time.Minute),
}

func (w *Webhook) defaults() {
	if len(w.Retry) == 0 {
		w.Retry = DefaultWebhookRetry
	}
	if w.Concurrency == 0 {
		w.Concurrency = 4
	}
	if w.Rate == 0 {
		w.Rate = 20
	}
	if w.Timeout == 0 {
		w.Timeout = Duration(10 * time.Second)
	}
	if w.BreakerFailures == 0 {
		w.BreakerFailures = 5
	}
	if w.BreakerCooldown == 0 {
		w.BreakerCooldown = Duration(30 * time.Second)
	}
}

func (w *Webhook) validate(fe *fieldErrors, field string) {
	u, err := url.Parse(w.URL)
	switch {
	case w.URL == "" || err != nil || u.Host == "":
		fe.add(field+".url", "must be an absolute URL")
	case u.Scheme != "https" && !(u.Scheme == "http" && w.AllowPrivate):
		fe.add(field+".url", "must be https (http only with allow_private, for development)")
	case u.User != nil:
		fe.add(field+".url", "must not carry credentials")
	}
	if len(w.Secrets) == 0 {
		fe.add(field+".secrets", "needs at least one whsec_ secret")
	}
	for i, s := range w.Secrets {
		raw, ok := strings.CutPrefix(s, "whsec_")
		if key, err := base64.StdEncoding.DecodeString(raw); !ok || err != nil || len(key) < 16 {
			fe.add(fmt.Sprintf("%s.secrets[%d]", field, i), "must be whsec_ followed by base64 of at least 16 bytes")
		}
	}
	if len(w.Retry) > 20 {
		fe.add(field+".retry", "has %d entries; at most 20", len(w.Retry))
	}
	for i, d := range w.Retry {
		if d <= 0 {
			fe.add(fmt.Sprintf("%s.retry[%d]", field, i), "must be positive")
		}
	}
	if w.Concurrency < 1 || w.Concurrency > 256 {
		fe.add(field+".concurrency", "must be between 1 and 256")
	}
	if w.Rate <= 0 {
		fe.add(field+".rate", "must be positive")
	}
	if w.Timeout <= 0 || w.BreakerCooldown <= 0 || w.BreakerFailures < 1 {
		fe.add(field, "timeout, breaker_failures and breaker_cooldown must be positive")
	}
}

// Directory is the set of known issuers and providers and the follow-up
// policy per kind. Build it with ParseDirectory or LoadDirectory; it is
// read-only afterwards and safe for concurrent use.
type Directory struct {
	Policies  map[Kind]Policy `json:"policies,omitempty" yaml:"policies,omitempty"`
	Issuers   []Issuer        `json:"issuers" yaml:"issuers"`
	Providers []Provider      `json:"providers" yaml:"providers"`
	Operators []Operator      `json:"operators,omitempty" yaml:"operators,omitempty"`

	issuers   map[string]*Issuer
	providers map[string]*Provider
}

// Issuer looks an issuer up by id.
func (d *Directory) Issuer(id string) (*Issuer, bool) {
	i, ok := d.issuers[id]
	return i, ok
}

// Provider looks a provider up by id.
func (d *Directory) Provider(id string) (*Provider, bool) {
	p, ok := d.providers[id]
	return p, ok
}

// Policy returns the follow-up policy for a kind.
func (d *Directory) Policy(k Kind) Policy { return d.Policies[k] }

// PolicyFor is the policy of kind k for provider: the kind's policy with
// the provider's window and, for webhooks, its retry schedule.
func (d *Directory) PolicyFor(provider string, k Kind) Policy {
	p := d.Policies[k]
	if pr, ok := d.providers[provider]; ok {
		if w, ok := pr.Windows[k]; ok {
			p.Window = w
		}
		if pr.Webhook != nil {
			p.RetrySchedule = pr.Webhook.Retry
		}
	}
	return p
}

// Window is how long provider has to act on a notice of kind k.
func (d *Directory) Window(provider string, k Kind) time.Duration {
	if p, ok := d.providers[provider]; ok {
		if w, ok := p.Windows[k]; ok {
			return w.D()
		}
	}
	return d.Policies[k].Window.D()
}

// LoadDirectory reads a directory file; ".json" files are JSON, anything
// else YAML.
func LoadDirectory(path string) (*Directory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxDirectoryBytes+1))
	if err != nil {
		return nil, fmt.Errorf("directory %s: %w", path, err)
	}
	format := "yaml"
	if strings.EqualFold(filepath.Ext(path), ".json") {
		format = "json"
	}
	d, err := ParseDirectory(data, format)
	if err != nil {
		return nil, fmt.Errorf("directory %s: %w", path, err)
	}
	return d, nil
}

// ParseDirectory decodes and validates a directory in "yaml" or "json".
// Unknown fields are refused; missing policies get the defaults.
func ParseDirectory(data []byte, format string) (*Directory, error) {
	if len(data) > MaxDirectoryBytes {
		return nil, fmt.Errorf("directory of %d bytes exceeds the limit of %d bytes: %w", len(data), MaxDirectoryBytes, ErrTooLarge)
	}
	var d Directory
	switch format {
	case "json":
		if err := decodeStrict("directory", data, MaxDirectoryBytes, &d); err != nil {
			return nil, err
		}
	case "yaml":
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&d); err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("empty document")
			}
			return nil, &ValidationError{What: "directory", Fields: []FieldError{{Field: "(file)", Problem: strings.TrimPrefix(err.Error(), "yaml: ")}}}
		}
	default:
		return nil, fmt.Errorf("directory format %q: want yaml or json", format)
	}
	if err := d.init(); err != nil {
		return nil, err
	}
	return &d, nil
}

func (d *Directory) init() error {
	fe := &fieldErrors{what: "directory"}
	pols := make(map[Kind]Policy, len(Kinds))
	for k, p := range d.Policies {
		if !k.Valid() {
			fe.add("policies."+string(k), "is not a kind (removal_order or referral)")
			continue
		}
		pols[k] = p.withDefaults(DefaultPolicy(k))
		pols[k].validate(fe, "policies."+string(k))
	}
	for _, k := range Kinds {
		if _, ok := pols[k]; !ok {
			pols[k] = DefaultPolicy(k)
		}
	}
	d.Policies = pols
	d.issuers = make(map[string]*Issuer, len(d.Issuers))
	for i := range d.Issuers {
		is := &d.Issuers[i]
		field := fmt.Sprintf("issuers[%d]", i)
		if !ValidSlug(is.ID) {
			fe.add(field+".id", "must be a lower-case id of letters, digits, '-' or '_'")
		} else if _, dup := d.issuers[is.ID]; dup {
			fe.add(field+".id", "repeats %q", is.ID)
		}
		checkText(fe, field+".name", is.Name, maxNameLen, true)
		if !ValidMemberState(is.MemberState) {
			fe.add(field+".member_state", "must be an EU Member State code")
		}
		checkDigests(fe, field, is.TokenSHA256)
		checkNKey(fe, field, is.NATSNKey)
		d.issuers[is.ID] = is
	}
	d.providers = make(map[string]*Provider, len(d.Providers))
	for i := range d.Providers {
		p := &d.Providers[i]
		field := fmt.Sprintf("providers[%d]", i)
		if !ValidSlug(p.ID) {
			fe.add(field+".id", "must be a lower-case id of letters, digits, '-' or '_'")
		} else if _, dup := d.providers[p.ID]; dup {
			fe.add(field+".id", "repeats %q", p.ID)
		}
		checkText(fe, field+".name", p.Name, maxNameLen, true)
		if p.MemberState != "" && !ValidMemberState(p.MemberState) {
			fe.add(field+".member_state", "must be an EU Member State code")
		}
		if p.Channel == "" {
			p.Channel = ChannelNATS
		}
		switch p.Channel {
		case ChannelNATS:
			if p.Webhook != nil {
				fe.add(field+".webhook", "is only for channel webhook")
			}
		case ChannelWebhook:
			if p.Webhook == nil {
				fe.add(field+".webhook", "is required for channel webhook")
			} else {
				p.Webhook.defaults()
				p.Webhook.validate(fe, field+".webhook")
			}
		default:
			fe.add(field+".channel", "must be nats or webhook")
		}
		checkDigests(fe, field, p.TokenSHA256)
		checkNKey(fe, field, p.NATSNKey)
		for k, w := range p.Windows {
			if !k.Valid() {
				fe.add(field+".windows."+string(k), "is not a kind")
			} else if w.D() <= 0 {
				fe.add(field+".windows."+string(k), "must be positive")
			}
		}
		d.providers[p.ID] = p
	}
	seenOp := map[string]bool{}
	for i, o := range d.Operators {
		field := fmt.Sprintf("operators[%d]", i)
		if !ValidSlug(o.ID) || seenOp[o.ID] {
			fe.add(field+".id", "must be a unique lower-case id")
		}
		seenOp[o.ID] = true
		checkText(fe, field+".name", o.Name, maxNameLen, true)
		if len(o.TokenSHA256) == 0 {
			fe.add(field+".token_sha256", "an operator needs at least one token digest")
		}
		checkDigests(fe, field, o.TokenSHA256)
	}
	if len(d.Issuers) == 0 {
		fe.add("issuers", "needs at least one issuer")
	}
	if len(d.Providers) == 0 {
		fe.add("providers", "needs at least one provider")
	}
	return fe.err()
}

func checkDigests(fe *fieldErrors, field string, digests []string) {
	for j, h := range digests {
		if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
			fe.add(fmt.Sprintf("%s.token_sha256[%d]", field, j), "must be a hex SHA-256 digest (64 hex digits)")
		}
	}
}

var nkeyRE = regexp.MustCompile(`^U[A-Z2-7]{55}$`)

func checkNKey(fe *fieldErrors, field, key string) {
	if key != "" && !nkeyRE.MatchString(key) {
		fe.add(field+".nats_nkey", "must be a public user NKey (U followed by 55 base32 characters)")
	}
}
