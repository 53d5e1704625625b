package pipeline_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/takedown-eu/takedown/pipeline"
)

// Every decoder of outside input either returns a value that passes its own
// validation and survives a round trip, or an error that is ErrInvalid or
// ErrTooLarge. It never panics.

func checkDecodeErr(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, pipeline.ErrInvalid) && !errors.Is(err, pipeline.ErrTooLarge) {
		t.Fatalf("error is neither ErrInvalid nor ErrTooLarge: %v", err)
	}
	var verr *pipeline.ValidationError
	if errors.As(err, &verr) && len(verr.Fields) == 0 {
		t.Fatal("validation error names no field")
	}
}

func FuzzDecodeNotice(f *testing.F) {
	f.Add([]byte(validOrder))
	f.Add(edit(func(m map[string]any) { m["kind"] = "referral"; delete(m, "reasons") }))
	f.Add([]byte(`{"schema":"takedown.notice/v1","content":[{"url":"http://[::1"}]}`))
	f.Add([]byte(`{}`))
	f.Add(edit(func(m map[string]any) {
		m["explanation"] = "<script>&amp; \u2028\u2029 é 𝄞 \"quoted\" \\ \t"
		m["contact"] = map[string]any{"name": "<b>&</b>", "email": "a&b@x.example"}
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := pipeline.DecodeNotice(data)
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		if err := n.Validate(); err != nil {
			t.Fatalf("decoded notice fails validation: %v", err)
		}
		b, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		// What is stored and fingerprinted must stay byte for byte what
		// json.Marshal writes, or fingerprints of stored notices change.
		if got := n.JSON(); string(got) != string(b) {
			t.Fatalf("JSON differs from json.Marshal:\n%s\n%s", got, b)
		}
		again, err := pipeline.DecodeNotice(b)
		if err != nil {
			t.Fatalf("re-encoded notice does not decode: %v\n%s", err, b)
		}
		if again.ID() != n.ID() || again.Fingerprint() != n.Fingerprint() {
			t.Fatalf("round trip changed identity")
		}
	})
}

func FuzzDecodeFeedback(f *testing.F) {
	id := pipeline.NoticeID("de-bka", "R")
	f.Add([]byte(`{"schema":"takedown.feedback/v1","notice_id":"` + id + `","provider":"videohost","type":"removed","action_at":"2026-11-27T09:41:10Z"}`))
	f.Add([]byte(`{"schema":"takedown.feedback/v1","notice_id":"` + id + `","provider":"videohost","type":"blocked","ground":"force_majeure","explanation":"x"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fb, err := pipeline.DecodeFeedback(data)
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		if err := fb.Validate(); err != nil {
			t.Fatalf("decoded feedback fails validation: %v", err)
		}
		b, _ := json.Marshal(fb)
		if _, err := pipeline.DecodeFeedback(b); err != nil {
			t.Fatalf("re-encoded feedback does not decode: %v\n%s", err, b)
		}
	})
}

func FuzzDecodeIntake(f *testing.F) {
	id := pipeline.NoticeID("de-bka", "R")
	f.Add([]byte(validOrder))
	f.Add([]byte(`{"schema":"takedown.action/v1","notice_id":"` + id + `","issuer":"de-bka","type":"clarify","explanation":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := pipeline.DecodeIntake(data)
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		if (in.Notice == nil) == (in.Action == nil) {
			t.Fatalf("intake decoded to %+v: want exactly one of notice and action", in)
		}
	})
}

func FuzzParseDirectory(f *testing.F) {
	f.Add([]byte(sampleDirectory), "yaml")
	f.Add([]byte(`{"issuers":[{"id":"a","name":"A","member_state":"DE"}],"providers":[{"id":"p","name":"P"}]}`), "json")
	f.Add([]byte("issuers: [\n"), "yaml")
	f.Fuzz(func(t *testing.T, data []byte, format string) {
		d, err := pipeline.ParseDirectory(data, format)
		if err != nil {
			if format != "yaml" && format != "json" {
				return
			}
			checkDecodeErr(t, err)
			return
		}
		for _, k := range pipeline.Kinds {
			if d.Policy(k).Window <= 0 || d.Policy(k).MaxDeliveries < 1 {
				t.Fatalf("accepted directory has an unusable %s policy: %+v", k, d.Policy(k))
			}
		}
		for _, p := range d.Providers {
			if _, ok := d.Provider(p.ID); !ok {
				t.Fatalf("provider %q not indexed", p.ID)
			}
		}
	})
}
