package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
}

// Directory is the set of known issuers and providers and the follow-up
// policy per kind. Build it with ParseDirectory or LoadDirectory; it is
// read-only afterwards and safe for concurrent use.
type Directory struct {
	Policies  map[Kind]Policy `json:"policies,omitempty" yaml:"policies,omitempty"`
	Issuers   []Issuer        `json:"issuers" yaml:"issuers"`
	Providers []Provider      `json:"providers" yaml:"providers"`

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
		if p.Channel != ChannelNATS {
			fe.add(field+".channel", "must be nats")
		}
		for k, w := range p.Windows {
			if !k.Valid() {
				fe.add(field+".windows."+string(k), "is not a kind")
			} else if w.D() <= 0 {
				fe.add(field+".windows."+string(k), "must be positive")
			}
		}
		d.providers[p.ID] = p
	}
	if len(d.Issuers) == 0 {
		fe.add("issuers", "needs at least one issuer")
	}
	if len(d.Providers) == 0 {
		fe.add("providers", "needs at least one provider")
	}
	return fe.err()
}
