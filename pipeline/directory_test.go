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

func TestWebhookProviderConfig(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	d, err := pipeline.ParseDirectory([]byte(`
issuers: [{id: de-bka, name: BKA, member_state: DE}]
providers:
  - id: hook
    name: Hook
    channel: webhook
    webhook: {url: "https://hook.example/takedown", secrets: [`+secret+`], retry: [2s, 20s]}
    token_sha256: [e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855]
`), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := d.Provider("hook")
	if p.Webhook.Concurrency != 4 || p.Webhook.Timeout.D() != 10*time.Second || p.Webhook.BreakerFailures != 5 {
		t.Errorf("webhook defaults not applied: %+v", p.Webhook)
	}
	pol := d.PolicyFor("hook", pipeline.KindRemovalOrder)
	if len(pol.RetrySchedule) != 2 || pol.RetrySchedule[1].D() != 20*time.Second || pol.Window.D() != time.Hour {
		t.Errorf("policy for hook: %+v", pol)
	}

	_, err = pipeline.ParseDirectory([]byte(`
issuers: [{id: de-bka, name: BKA, member_state: DE}]
providers:
  - {id: a, name: A, channel: webhook}
  - {id: b, name: B, channel: nats, webhook: {url: "https://b.example", secrets: [`+secret+`]}}
  - id: c
    name: C
    channel: webhook
    webhook: {url: "http://c.example/hook", secrets: [nope, "whsec_c2hvcnQ="], retry: [0s], concurrency: 1000, rate: -1}
    token_sha256: [abc]
  - {id: d, name: D, channel: pigeon}
  - {id: e, name: E, channel: webhook, webhook: {url: "https://user:pw@e.example/", secrets: [`+secret+`]}}
`), "yaml")
	want := []string{"providers[0].webhook", "providers[1].webhook", "providers[2].webhook.url", "providers[2].webhook.secrets[0]",
		"providers[2].webhook.secrets[1]", "providers[2].webhook.retry[0]", "providers[2].webhook.concurrency", "providers[2].webhook.rate",
		"providers[2].token_sha256[0]", "providers[3].channel", "providers[4].webhook.url"}
	if diff := cmp.Diff(want, fields(err), sortStrings); diff != "" {
		t.Errorf("fields (-want +got):\n%s\n%v", diff, err)
	}
}
