package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/tracker"
)

// repairReport is what a repair did.
type repairReport struct {
	restored map[string][2]int64 // the tracker's version before, and after
	stale    []string            // moved on while repaired: compare again
	failed   map[string]string   // could not be rebuilt, and why
}

// repair restores the notices r found not tracked or behind from their
// events on the stream: each is rebuilt from all its events and written
// back over the version the tracker held when compared, and left alone
// if it moved on since. It takes batch notices at a time, reading the
// stream once per batch, so that its memory stays bounded however many
// notices Redis lost.
func repair(ctx context.Context, js jetstream.JetStream, stream string, store *tracker.Store, r *eventsReport, batch int, now time.Time) (*repairReport, error) {
	rep := &repairReport{restored: map[string][2]int64{}, failed: map[string]string{}}
	from := map[string]int64{}
	for id := range r.missing {
		from[id] = 0
	}
	for id, vs := range r.behind {
		from[id] = vs[0]
	}
	ids := slices.Sorted(maps.Keys(from))
	for chunk := range slices.Chunk(ids, max(batch, 1)) {
		if err := repairBatch(ctx, js, stream, store, r, from, chunk, now, rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// repairBatch restores the notices ids (a batch of repair's).
func repairBatch(ctx context.Context, js jetstream.JetStream, stream string, store *tracker.Store, r *eventsReport, from map[string]int64, ids []string, now time.Time, rep *repairReport) error {
	start := uint64(math.MaxUint64)
	events := make(map[string][]pipeline.Event, len(ids))
	for _, id := range ids {
		start = min(start, r.first[id])
		events[id] = nil
	}
	_, err := scanStream(ctx, js, stream, start, false, func(m jetstream.Msg, seq uint64) error {
		id, _, ok := eventID(m.Headers().Get(jetstream.MsgIDHeader))
		if _, want := events[id]; !ok || !want {
			return nil
		}
		var ev pipeline.Event
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			return fmt.Errorf("event at sequence %d: %w", seq, err)
		}
		events[id] = append(events[id], ev)
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		rb, err := tracker.Rebuild(events[id])
		if err != nil {
			rep.failed[id] = err.Error()
			continue
		}
		switch err := store.Restore(ctx, rb, from[id], now); {
		case errors.Is(err, pipeline.ErrStale):
			rep.stale = append(rep.stale, id)
		case err != nil:
			return err
		default:
			rep.restored[id] = [2]int64{from[id], rb.Version}
		}
	}
	return nil
}

func (r *repairReport) print(w io.Writer, list int) {
	fmt.Fprintf(w, "%-16s%d notices, from their events\n", "restored:", len(r.restored))
	n := 0
	for _, id := range slices.Sorted(maps.Keys(r.restored)) {
		if n == list {
			fmt.Fprintf(w, "  … and %d more\n", len(r.restored)-list)
			break
		}
		vs := r.restored[id]
		if vs[0] == 0 {
			fmt.Fprintf(w, "  %s: restored at version %d\n", id, vs[1])
		} else {
			fmt.Fprintf(w, "  %s: version %d → %d\n", id, vs[0], vs[1])
		}
		n++
	}
	if len(r.stale) > 0 {
		fmt.Fprintf(w, "%-16s%d notices that changed while repaired; run again\n", "left alone:", len(r.stale))
	}
	if len(r.failed) > 0 {
		fmt.Fprintf(w, "%-16s%d notices\n", "not restorable:", len(r.failed))
		for _, id := range slices.Sorted(maps.Keys(r.failed)) {
			fmt.Fprintf(w, "  %s: %s\n", id, r.failed[id])
		}
	}
}

// repaired reports whether the repair left nothing of what it was asked
// to mend.
func (r *repairReport) repaired() bool { return len(r.stale) == 0 && len(r.failed) == 0 }
