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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/tracker"
)

// repairReport is what a repair did.
type repairReport struct {
	restored    map[string][2]int64 // the tracker's version before, and after
	republished map[string]int      // events put back on the stream, by notice
	stale       []string            // moved on while repaired: compare again
	failed      map[string]string   // could not be repaired, and why
}

func newRepairReport() *repairReport {
	return &repairReport{restored: map[string][2]int64{}, republished: map[string]int{}, failed: map[string]string{}}
}

// repair restores the notices r found not tracked or behind from their
// events on the stream: each is rebuilt from all its events and written
// back over the version the tracker held when compared, and left alone
// if it moved on since. It takes batch notices at a time, reading the
// stream once per batch, so that its memory stays bounded however many
// notices Redis lost.
func repair(ctx context.Context, js jetstream.JetStream, stream string, store *tracker.Store, r *eventsReport, batch int, now time.Time) (*repairReport, error) {
	rep := newRepairReport()
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

// republish puts back on the events stream, from the tracker, the events
// the stream lacks of the notices r found with events missing: the
// tracker holds them at a newer version, or the stream lacks versions in
// between (the stream was restored from an older backup, or messages
// were deleted). Each notice's timeline keeps its latest 200 events and
// the received event's notice is its body, so the events are published
// as the relay published them, with their ids, in version order. The
// stream drops an id it still remembers (a message deleted within its
// duplicate window): that notice is reported, not repaired.
func republish(ctx context.Context, js jetstream.JetStream, prefix, stream string, store *tracker.Store, r *eventsReport, rep *repairReport) error {
	want := map[string]bool{}
	for id := range r.gaps {
		want[id] = true
	}
	for id := range r.ahead {
		want[id] = true
	}
	if len(want) == 0 {
		return nil
	}
	have := map[string]map[int64]bool{}
	if _, _, _, _, err := readEventIDs(ctx, js, stream, 1, func(id string, v int64, _ uint64) {
		if want[id] {
			if have[id] == nil {
				have[id] = map[int64]bool{}
			}
			have[id][v] = true
		}
	}); err != nil {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(want)) {
		rec, err := store.Get(ctx, id)
		if errors.Is(err, pipeline.ErrNotFound) {
			rep.failed[id] = "no longer in the tracker"
			continue
		}
		if err != nil {
			return err
		}
		timeline, err := store.Timeline(ctx, id)
		if err != nil {
			return err
		}
		byVersion := make(map[int64]pipeline.Event, len(timeline))
		for _, ev := range timeline {
			byVersion[ev.Version] = ev
		}
		for v := int64(1); v <= rec.Version; v++ {
			if have[id][v] {
				continue
			}
			ev, ok := byVersion[v]
			if !ok {
				rep.failed[id] = fmt.Sprintf("version %d is no longer in the tracker's timeline (it keeps the latest 200 events)", v)
				break
			}
			if ev.Type == pipeline.EventReceived {
				ev.Notice = rec.Body
			}
			m := nats.NewMsg(bus.EventSubject(prefix, ev.Issuer, ev.Provider, string(ev.Type)))
			m.Data = ev.AppendJSON(nil)
			ack, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(stream))
			if err != nil {
				return fmt.Errorf("republish %s: %w", ev.ID, err)
			}
			if ack.Duplicate {
				rep.failed[id] = fmt.Sprintf("the stream still remembers %s (deleted within its duplicate window); run again once the window has passed", ev.ID)
				break
			}
			rep.republished[id]++
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
	if len(r.republished) > 0 {
		n := 0
		for _, c := range r.republished {
			n += c
		}
		fmt.Fprintf(w, "%-16s%d events of %d notices, from the tracker\n", "republished:", n, len(r.republished))
	}
	if len(r.stale) > 0 {
		fmt.Fprintf(w, "%-16s%d notices that changed while repaired; run again\n", "left alone:", len(r.stale))
	}
	if len(r.failed) > 0 {
		fmt.Fprintf(w, "%-16s%d notices\n", "not repaired:", len(r.failed))
		for _, id := range slices.Sorted(maps.Keys(r.failed)) {
			fmt.Fprintf(w, "  %s: %s\n", id, r.failed[id])
		}
	}
}

// repaired reports whether the repair left nothing of what it was asked
// to mend.
func (r *repairReport) repaired() bool { return len(r.stale) == 0 && len(r.failed) == 0 }
