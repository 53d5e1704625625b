package tracker

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Timeline entries written as JSON objects (before the packed form) read
// as the same events as their packed equivalents.
func TestTimelineEntriesOfBothForms(t *testing.T) {
	constant := [5]string{"0b5f1c9e-2f1d-5a43-9d0e-7f3c2a1b4d5e", "de-bka", "videohost", "removal_order", "BKA-1"}
	for _, c := range []struct{ name, json, packed string }{
		{"received",
			`{"v":1,"t":"received","at":"2026-11-27T09:00:00Z","st":"received"}`,
			"\x1f1\x1freceived\x1f2026-11-27T09:00:00Z\x1freceived\x1f\x1f\x1f\x1f\x1f\x1f0\x1f0\x1f\x1f\x1f\x1f\x1f"},
		{"delivered",
			`{"v":2,"t":"delivered","at":"2026-11-27T09:00:05Z","st":"delivered","dl":"1764237605000","run":"1","da":"1764234005000","x":"{\"attempt\":1}"}`,
			"\x1f2\x1fdelivered\x1f2026-11-27T09:00:05Z\x1fdelivered\x1f\x1f\x1f\x1f\x1f1764237605000\x1f1\x1f0\x1f1764234005000\x1f\x1f\x1f\x1f{\"attempt\":1}"},
		{"removed",
			`{"v":3,"t":"removed","at":"2026-11-27T09:20:00Z","st":"removed","dl":"1764237605000","da":"1764234005000","it":1,"ms":1195000}`,
			"\x1f3\x1fremoved\x1f2026-11-27T09:20:00Z\x1fremoved\x1f\x1f\x1f\x1f\x1f1764237605000\x1f0\x1f0\x1f1764234005000\x1f1\x1f1195000\x1f\x1f"},
	} {
		fromJSON, err := timelineEvent(c.json, constant)
		if err != nil {
			t.Fatalf("%s as JSON: %v", c.name, err)
		}
		fromPacked, err := timelineEvent(c.packed, constant)
		if err != nil {
			t.Fatalf("%s packed: %v", c.name, err)
		}
		if diff := cmp.Diff(fromJSON, fromPacked); diff != "" {
			t.Errorf("%s (-JSON +packed):\n%s", c.name, diff)
		}
		if fromPacked.NoticeID != constant[0] || fromPacked.Issuer != "de-bka" || fromPacked.Reference != "BKA-1" || fromPacked.Version == 0 {
			t.Errorf("%s: constant fields not filled in: %+v", c.name, fromPacked)
		}
	}
	if _, err := timelineEvent("\x1f1\x1freceived", constant); err == nil {
		t.Error("a truncated packed entry was accepted")
	}
}
