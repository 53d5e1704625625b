package pipeline_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/takedown-eu/takedown/pipeline"
)

const validOrder = `{
  "schema": "takedown.notice/v1",
  "kind": "removal_order",
  "issuer": "de-bka",
  "reference": "BKA-TCO-2026-000123",
  "provider": "videohost",
  "issued_at": "2026-11-27T09:15:00Z",
  "member_state": "DE",
  "content": [
    {"url": "https://videohost.example/v/8f3k2", "locator": "video at 00:42, uploaded by account 'x'"}
  ],
  "reasons": ["incitement", "instruction"],
  "explanation": "Video glorifies the attack of ... and gives instructions for ...",
  "language": "de",
  "non_disclosure_until": "2027-01-08T00:00:00Z",
  "cross_border": true,
  "home_member_state": "IE",
  "contact": {"name": "BKA TCO desk", "email": "tco@bka.example"}
}`

func fields(err error) []string {
	var verr *pipeline.ValidationError
	if !errors.As(err, &verr) {
		return nil
	}
	out := make([]string, len(verr.Fields))
	for i, f := range verr.Fields {
		out[i] = f.Field
	}
	return out
}

func TestDecodeNoticeValid(t *testing.T) {
	n, err := pipeline.DecodeNotice([]byte(validOrder))
	if err != nil {
		t.Fatal(err)
	}
	if n.Kind != pipeline.KindRemovalOrder || len(n.Content) != 1 || n.NonDisclosureUntil == nil || n.HomeMemberState != "IE" {
		t.Fatalf("decoded %+v", n)
	}
	// The wire form round-trips, id included.
	b, _ := json.Marshal(n)
	again, err := pipeline.DecodeNotice(b)
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if diff := cmp.Diff(n, again); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if !strings.Contains(string(b), `"id":"`+n.ID()+`"`) {
		t.Errorf("wire form lacks the id: %s", b)
	}
}

func TestNoticeIdentity(t *testing.T) {
	a := pipeline.NoticeID("de-bka", "REF-1")
	if a != pipeline.NoticeID("de-bka", "REF-1") {
		t.Fatal("id is not deterministic")
	}
	for _, other := range []string{pipeline.NoticeID("de-bka", "REF-2"), pipeline.NoticeID("fr-pharos", "REF-1"), pipeline.NoticeID("de-bk", "aREF-1")} {
		if other == a {
			t.Fatalf("distinct submissions share id %s", a)
		}
	}
	if !strings.HasPrefix(a[14:15], "5") {
		t.Errorf("id %s is not a version 5 UUID", a)
	}
}

func edit(f func(m map[string]any)) []byte {
	var m map[string]any
	if err := json.Unmarshal([]byte(validOrder), &m); err != nil {
		panic(err)
	}
	f(m)
	b, _ := json.Marshal(m)
	return b
}

func TestDecodeNoticeNamesEveryWrongField(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		want []string
	}{
		{"unknown field", edit(func(m map[string]any) { m["priority"] = "high" }), []string{"priority"}},
		{"wrong type", edit(func(m map[string]any) { m["content"] = "https://x.example" }), []string{"content"}},
		{"bad time", edit(func(m map[string]any) { m["issued_at"] = "yesterday" }), []string{"issued_at"}},
		{"many at once", edit(func(m map[string]any) {
			m["schema"] = "v0"
			m["kind"] = "takedown"
			m["issuer"] = "DE BKA"
			m["member_state"] = "XX"
			m["reasons"] = []string{"incitement", "incitement", "spam"}
			m["content"] = []map[string]string{{"url": "ftp://x"}, {"url": "https://ok.example", "locator": "a\x00b"}}
			m["language"] = "deu"
		}), []string{"schema", "kind", "issuer", "member_state", "content[0].url", "content[1].locator", "reasons[1]", "reasons[2]", "language"}},
		{"cross border without home state", edit(func(m map[string]any) { delete(m, "home_member_state") }), []string{"home_member_state"}},
		{"cross border to itself", edit(func(m map[string]any) { m["home_member_state"] = "DE" }), []string{"home_member_state"}},
		{"order without reasons, explanation or contact", edit(func(m map[string]any) {
			delete(m, "reasons")
			delete(m, "explanation")
			m["contact"] = map[string]string{"name": "desk"}
		}), []string{"reasons", "explanation", "contact"}},
		{"non-disclosure before issue", edit(func(m map[string]any) { m["non_disclosure_until"] = "2020-01-01T00:00:00Z" }), []string{"non_disclosure_until"}},
		{"wrong id", edit(func(m map[string]any) { m["id"] = "6f1c3f0e-3b7a-5d8e-9a51-7c2a1e0b9d44" }), []string{"id"}},
		{"no content", edit(func(m map[string]any) { m["content"] = []any{} }), []string{"content"}},
		{"bad email", edit(func(m map[string]any) { m["contact"] = map[string]string{"email": "Desk <a@b.example>"} }), []string{"contact.email"}},
		{"trailing data", append([]byte(validOrder), []byte(`{}`)...), []string{"(body)"}},
		{"not JSON", []byte(`<xml/>`), []string{"(body)"}},
		{"empty", nil, []string{"(body)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pipeline.DecodeNotice(tt.body)
			if !errors.Is(err, pipeline.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			if diff := cmp.Diff(tt.want, fields(err)); diff != "" {
				t.Errorf("fields (-want +got):\n%s\n%v", diff, err)
			}
		})
	}
}

func TestReferralNeedsLess(t *testing.T) {
	body := edit(func(m map[string]any) {
		m["kind"] = "referral"
		delete(m, "reasons")
		delete(m, "explanation")
		delete(m, "contact")
	})
	if _, err := pipeline.DecodeNotice(body); err != nil {
		t.Fatalf("referral without reasons, explanation, contact: %v", err)
	}
}

func TestDecodeNoticeRefusesOversizedBody(t *testing.T) {
	big := edit(func(m map[string]any) { m["explanation"] = strings.Repeat("x", pipeline.MaxNoticeBytes) })
	if _, err := pipeline.DecodeNotice(big); !errors.Is(err, pipeline.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

func TestDecodeFeedback(t *testing.T) {
	id := pipeline.NoticeID("de-bka", "R")
	good := []string{
		`{"schema":"takedown.feedback/v1","notice_id":"` + id + `","provider":"videohost","type":"removed","action_at":"2026-11-27T09:41:10Z","provider_reference":"VH-77121"}`,
		`{"schema":"takedown.feedback/v1","notice_id":"` + id + `","provider":"videohost","type":"blocked","ground":"insufficient_info","explanation":"URL 404s already; which account?"}`,
		`{"schema":"takedown.feedback/v1","notice_id":"` + id + `","provider":"videohost","type":"acknowledged","received_at":"2026-11-27T09:20:00Z"}`,
		`{"schema":"takedown.feedback/v1","notice_id":"` + id + `","provider":"videohost","type":"resumed"}`,
	}
	for _, b := range good {
		if _, err := pipeline.DecodeFeedback([]byte(b)); err != nil {
			t.Errorf("%s: %v", b, err)
		}
	}
	bad := []struct {
		body string
		want []string
	}{
		{`{"schema":"takedown.feedback/v1","notice_id":"` + id + `","provider":"videohost","type":"removed"}`, []string{"action_at"}},
		{`{"schema":"takedown.feedback/v1","notice_id":"` + id + `","provider":"videohost","type":"blocked"}`, []string{"ground", "explanation"}},
		{`{"schema":"takedown.feedback/v1","notice_id":"nope","provider":"Video Host","type":"gone"}`, []string{"notice_id", "provider", "type"}},
		{`{"schema":"takedown.feedback/v1","notice_id":"` + id + `","provider":"videohost","type":"acknowledged","ground":"force_majeure"}`, []string{"ground"}},
		{`{"schema":"takedown.feedback/v1","notice_id":"` + id + `","provider":"videohost","type":"removed","action_at":"soon"}`, []string{"action_at", "action_at"}},
		{`{"schema":"takedown.feedback/v1","extra":1}`, []string{"extra"}},
	}
	for _, tt := range bad {
		_, err := pipeline.DecodeFeedback([]byte(tt.body))
		if diff := cmp.Diff(tt.want, fields(err)); diff != "" {
			t.Errorf("%s: fields (-want +got):\n%s\n%v", tt.body, diff, err)
		}
	}
}

func TestDecodeIntakeDispatchesOnSchema(t *testing.T) {
	id := pipeline.NoticeID("de-bka", "R")
	in, err := pipeline.DecodeIntake([]byte(`{"schema":"takedown.action/v1","notice_id":"` + id + `","issuer":"de-bka","type":"withdraw"}`))
	if err != nil || in.Action == nil || in.Notice != nil {
		t.Fatalf("action: %+v %v", in, err)
	}
	in, err = pipeline.DecodeIntake([]byte(validOrder))
	if err != nil || in.Notice == nil {
		t.Fatalf("notice: %+v %v", in, err)
	}
	// The schema spelt with JSON escapes is still an action.
	for _, schema := range []string{`takedown.action\/v1`, `\u0074akedown.action/v1`} {
		in, err = pipeline.DecodeIntake([]byte(`{"schema":"` + schema + `","notice_id":"` + id + `","issuer":"de-bka","type":"withdraw"}`))
		if err != nil || in.Action == nil {
			t.Errorf("action with schema %s: %+v %v", schema, in, err)
		}
	}
	_, err = pipeline.DecodeIntake([]byte(`{"schema":"takedown.action/v1","notice_id":"` + id + `","issuer":"de-bka","type":"clarify"}`))
	if diff := cmp.Diff([]string{"explanation"}, fields(err)); diff != "" {
		t.Errorf("clarify without explanation (-want +got):\n%s", diff)
	}
}
