package pipeline_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/takedown-eu/takedown/pipeline"
)

const sampleDirectory = `
policies:
  referral:
    window: 24h
issuers:
  - id: de-bka
    name: Bundeskriminalamt
    member_state: DE
    contact: {email: tco@bka.example}
providers:
  - id: videohost
    name: VideoHost Ltd
    member_state: IE
    channel: nats
    windows:
      referral: 12h
  - id: filedrop
    name: FileDrop BV
`

func TestParseDirectory(t *testing.T) {
	d, err := pipeline.ParseDirectory([]byte(sampleDirectory), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Issuer("de-bka"); !ok {
		t.Fatal("issuer missing")
	}
	if p, _ := d.Provider("filedrop"); p.Channel != pipeline.ChannelNATS {
		t.Errorf("default channel = %q, want nats", p.Channel)
	}
	for _, tt := range []struct {
		provider string
		kind     pipeline.Kind
		want     time.Duration
	}{
		{"videohost", pipeline.KindRemovalOrder, time.Hour},
		{"videohost", pipeline.KindReferral, 12 * time.Hour},
		{"filedrop", pipeline.KindReferral, 24 * time.Hour},
	} {
		if got := d.Window(tt.provider, tt.kind); got != tt.want {
			t.Errorf("window %s %s = %v, want %v", tt.provider, tt.kind, got, tt.want)
		}
	}
	if got := d.Policy(pipeline.KindReferral).Reminders; !cmp.Equal(got, []float64{0.5, 0.85}) {
		t.Errorf("referral reminders not defaulted: %v", got)
	}
}

func TestLoadDirectoryJSONAndErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "directory.json")
	os.WriteFile(path, []byte(`{"issuers":[{"id":"de-bka","name":"BKA","member_state":"DE"}],"providers":[{"id":"videohost","name":"VH"}]}`), 0o600)
	if _, err := pipeline.LoadDirectory(path); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, format, body string
		want               []string
	}{
		{"unknown yaml field", "yaml", "issuers: []\nprovidres: []\n", []string{"(file)"}},
		{"unknown json field", "json", `{"issuers":[],"providres":[]}`, []string{"providres"}},
		{"bad entries", "yaml", `
policies:
  takedown: {window: 1h}
  removal_order: {window: -1s, reminders: [0.9, 0.5], max_deliveries: 0}
issuers:
  - {id: "DE BKA", name: "", member_state: XX}
  - {id: "DE BKA", name: B, member_state: DE}
providers:
  - {id: p, name: P, channel: carrier-pigeon, windows: {removal_order: 0s}}
`, []string{"policies.takedown", "policies.removal_order.window", "policies.removal_order.reminders[1]",
			"issuers[0].id", "issuers[0].name", "issuers[0].member_state", "issuers[1].id",
			"providers[0].channel", "providers[0].windows.removal_order"}},
		{"bad duration", "yaml", "policies:\n  referral: {window: soon}\nissuers: []\nproviders: []\n", []string{"(file)"}},
		{"empty", "yaml", "", []string{"(file)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pipeline.ParseDirectory([]byte(tt.body), tt.format)
			if !errors.Is(err, pipeline.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			got := fields(err)
			// Map order makes policy problems come in any order.
			if diff := cmp.Diff(tt.want, got, sortStrings); diff != "" {
				t.Errorf("fields (-want +got):\n%s\n%v", diff, err)
			}
		})
	}
}
