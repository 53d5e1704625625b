package tracker

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/google/uuid"

	"github.com/takedown-eu/takedown/pipeline"
)

// Rebuild takes events read from the events stream. Whatever they hold,
// it returns a notice or an error, never panics; a notice it returns is
// at the version of the last event it applied, and its timeline entries
// read back as those events.
func FuzzRebuild(f *testing.F) {
	id := pipeline.NoticeID("de-bka", "REF-1")
	f.Add([]byte(`{"id":"` + id + `.1","notice_id":"` + id + `","version":1,"type":"received","at":"2026-11-27T10:00:00Z","state":"received","issuer":"de-bka","provider":"videohost","kind":"removal_order","reference":"REF-1","notice":{"a":1}}
{"id":"` + id + `.2","notice_id":"` + id + `","version":2,"type":"delivered","at":"2026-11-27T10:00:01.5Z","state":"delivered","deadline":"2026-11-27T11:00:01.5Z","delivered_at":"2026-11-27T10:00:01.5Z"}
{"id":"` + id + `.3","notice_id":"` + id + `","version":3,"type":"removed","at":"2026-11-27T10:20:00Z","state":"removed","outcome":"removed","action_at":"2026-11-27T10:19:00Z","in_time":true,"seconds":1138.5}`))
	f.Add([]byte(`{"notice_id":"x","version":1,"type":"received","notice":{}}`))
	f.Add([]byte(`{"notice_id":"x","version":2,"type":"delivered"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var events []pipeline.Event
		for line := range bytes.SplitSeq(data, []byte("\n")) {
			var ev pipeline.Event
			if json.Unmarshal(line, &ev) == nil {
				events = append(events, ev)
			}
		}
		rb, err := Rebuild(events)
		if err != nil {
			if rb != nil {
				t.Fatalf("error %v with a notice", err)
			}
			return
		}
		if uuid.Validate(rb.ID) != nil || field(rb.fields, "issuer") == "" || field(rb.fields, "provider") == "" {
			t.Fatalf("rebuilt a notice without id, issuer or provider: %q %v", rb.ID, rb.fields)
		}
		var applied []pipeline.Event
		for _, ev := range events {
			if ev.Version == int64(len(applied))+1 {
				applied = append(applied, ev)
			}
		}
		last := applied[len(applied)-1]
		if rb.Version != last.Version || rb.State != last.State || field(rb.fields, "v") != strconv.FormatInt(last.Version, 10) {
			t.Fatalf("rebuilt at version %d, state %q, fields %v; last event %+v", rb.Version, rb.State, rb.fields, last)
		}
		if want := min(len(applied), timelineLength); len(rb.timeline) != want {
			t.Fatalf("%d timeline entries, want %d", len(rb.timeline), want)
		}
		for i, entry := range rb.timeline {
			ev := applied[len(applied)-len(rb.timeline)+i]
			got, err := timelineEvent(entry, [5]string{ev.NoticeID})
			if err != nil {
				t.Fatalf("entry %q: %v", entry, err)
			}
			if got.Version != ev.Version || got.Type != ev.Type || got.State != ev.State || !got.At.Equal(ev.At) {
				t.Fatalf("entry %q reads back as %+v, want %+v", entry, got, ev)
			}
		}
	})
}
