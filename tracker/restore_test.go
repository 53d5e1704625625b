package tracker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/tracker"
)

// restoreShards is the shard count of the restore tests' stores.
const restoreShards = 4

// noticeState is what the tracker holds of one notice, as the tests
// compare it before a loss and after a restore.
type noticeState struct {
	Record   tracker.Record
	Timeline []pipeline.Event
	Deadline float64 // score in the deadline index, 0 when not in it
	Due      bool    // in the due index
	Issuer   bool    // in the listing indexes
	Provider bool
}

func stateOf(t *testing.T, st *tracker.Store, rdb *redis.Client, id string) noticeState {
	t.Helper()
	ctx := context.Background()
	rec, err := st.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := st.Timeline(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("td:{%d}:", tracker.ShardOf(id, restoreShards))
	score := func(key string) (float64, bool) {
		s, err := rdb.ZScore(ctx, prefix+key, id).Result()
		if errors.Is(err, redis.Nil) {
			return 0, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return s, true
	}
	ns := noticeState{Record: rec, Timeline: tl}
	ns.Deadline, _ = score("deadline")
	_, ns.Due = score("due")
	_, ns.Issuer = score("by:issuer:" + rec.Issuer)
	_, ns.Provider = score("by:provider:" + rec.Provider)
	return ns
}

// streamEvents reads every shard's outbox and returns each notice's
// events as the events stream holds them (the relay's JSON, decoded).
func streamEvents(t *testing.T, st *tracker.Store) map[string][]pipeline.Event {
	t.Helper()
	out := map[string][]pipeline.Event{}
	for shard := range restoreShards {
		entries, err := st.ReadOutbox(context.Background(), shard, 100000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			var ev pipeline.Event
			if err := json.Unmarshal(e.Event.AppendJSON(nil), &ev); err != nil {
				t.Fatal(err)
			}
			out[ev.NoticeID] = append(out[ev.NoticeID], ev)
		}
	}
	return out
}

// outboxEvents returns the events of notice id waiting in its shard's
// outbox, in order.
func outboxEvents(t *testing.T, st *tracker.Store, id string) []pipeline.Event {
	t.Helper()
	entries, err := st.ReadOutbox(context.Background(), tracker.ShardOf(id, st.Shards()), 100000)
	if err != nil {
		t.Fatal(err)
	}
	var out []pipeline.Event
	for _, e := range entries {
		if e.Event.NoticeID == id {
			out = append(out, e.Event)
		}
	}
	return out
}

// fire runs one scheduler follow-up of id under a claim of its own.
func fire(t *testing.T, st *tracker.Store, id, act string, at time.Time) {
	t.Helper()
	ctx := context.Background()
	token := "tok-" + act + at.Format("150405")
	if _, err := st.Claim(ctx, tracker.ShardOf(id, restoreShards), at.Add(240*time.Hour), at.Add(241*time.Hour), 1000, token); err != nil {
		t.Fatal(err)
	}
	rec, err := st.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.FollowUp(ctx, id, token, rec.Version, act, at, at.Add(time.Hour), pipeline.Event{Explanation: act + " by the test"}, nil); err != nil {
		t.Fatalf("%s of %s: %v", act, id, err)
	}
}

// Every path a notice can take through the tracker, lost from Redis and
// rebuilt from its events alone, comes back as it was: the notice hash
// (as Get reads it), the body, the timeline, the indexes and the
// counters. Only the due index's times differ: a restored open notice is
// due at once, for the scheduler to plan its next step.
func TestRestoreRebuildsEveryPath(t *testing.T) {
	ctx := context.Background()
	st, rdb := newStore(t)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	feedback := func(id string, f pipeline.Feedback, m int) {
		t.Helper()
		if _, err := st.ApplyFeedback(ctx, f, fmt.Sprintf("msg-%s-%d", id[:8], m), at(m)); err != nil {
			t.Fatalf("%s of %s: %v", f.Type, id, err)
		}
	}
	action := func(id, issuer string, typ pipeline.ActionType, m int) {
		t.Helper()
		a := pipeline.Action{Schema: pipeline.ActionSchema, NoticeID: id, Issuer: issuer, Type: typ, Explanation: "the account is 'x'"}
		if _, err := st.ApplyAction(ctx, a, "", at(m)); err != nil {
			t.Fatalf("%s of %s: %v", typ, id, err)
		}
	}
	paths := map[string]func(id string){
		"received":  func(string) {},
		"delivered": func(id string) { delivered(t, st, id, at(1)) },
		"acknowledged": func(id string) {
			delivered(t, st, id, at(1))
			feedback(id, fb(id, "videohost", pipeline.FeedbackAcknowledged), 2)
		},
		"removed late after escalation": func(id string) {
			delivered(t, st, id, at(1))
			feedback(id, fb(id, "videohost", pipeline.FeedbackAcknowledged), 2)
			fire(t, st, id, "reminder", at(31))
			fire(t, st, id, "escalate", at(61))
			fire(t, st, id, "follow_up", at(90))
			f := fb(id, "videohost", pipeline.FeedbackRemoved)
			f.ActionAt, f.ProviderReference = testenv.Time(at(95)), "VH-1"
			feedback(id, f, 96)
		},
		"overdue": func(id string) {
			delivered(t, st, id, at(1))
			fire(t, st, id, "redeliver", at(20))
			fire(t, st, id, "reminder", at(31))
			fire(t, st, id, "escalate", at(61))
		},
		"blocked then resumed": func(id string) {
			delivered(t, st, id, at(1))
			f := fb(id, "videohost", pipeline.FeedbackBlocked)
			f.Ground = pipeline.GroundForceMajeure
			feedback(id, f, 5)
			feedback(id, fb(id, "videohost", pipeline.FeedbackResumed), 50)
		},
		"blocked then clarified, then disabled in time": func(id string) {
			delivered(t, st, id, at(1))
			feedback(id, fb(id, "videohost", pipeline.FeedbackBlocked), 5)
			action(id, "de-bka", pipeline.ActionClarify, 7)
			f := fb(id, "videohost", pipeline.FeedbackDisabled)
			f.ActionAt = testenv.Time(at(9))
			feedback(id, f, 10)
		},
		"blocked": func(id string) {
			delivered(t, st, id, at(1))
			fire(t, st, id, "escalate", at(61))
			feedback(id, fb(id, "videohost", pipeline.FeedbackBlocked), 62)
		},
		"withdrawn": func(id string) {
			delivered(t, st, id, at(1))
			action(id, "de-bka", pipeline.ActionWithdraw, 3)
		},
		"failed": func(id string) {
			if _, err := st.Fail(ctx, id, "", 0, at(5), "endpoint refused", nil); err != nil {
				t.Fatal(err)
			}
		},
		"failed, replayed and delivered": func(id string) {
			if _, err := st.Fail(ctx, id, "", 0, at(5), "endpoint refused", nil); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Replay(ctx, id, at(30)); err != nil {
				t.Fatal(err)
			}
			delivered(t, st, id, at(31))
		},
	}
	ids := map[string]string{}
	for name, path := range paths {
		n := testenv.Notice("de-bka", "REF-"+name, "videohost", pipeline.KindRemovalOrder)
		id := created(t, st, n)
		path(id)
		ids[name] = id
	}
	ref := testenv.Notice("de-bka", "REF-referral", "videohost", pipeline.KindReferral)
	ids["referral declined"] = created(t, st, ref)
	delivered(t, st, ids["referral declined"], at(1))
	feedback(ids["referral declined"], fb(ids["referral declined"], "videohost", pipeline.FeedbackDeclined), 4)

	want := map[string]noticeState{}
	for _, id := range ids {
		want[id] = stateOf(t, st, rdb, id)
	}
	wantCounts, err := st.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	events := streamEvents(t, st)

	// Redis loses everything.
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	now := at(200)
	for name, id := range ids {
		rb, err := tracker.Rebuild(events[id])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := st.Restore(ctx, rb, 0, now); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for name, id := range ids {
		got := stateOf(t, st, rdb, id)
		w := want[id]
		// Restored open notices are due now; closed and failed ones not
		// at all, as before.
		w.Due = !w.Record.State.Terminal() && w.Record.State != pipeline.StateFailed
		if d := cmp.Diff(w, got); d != "" {
			t.Errorf("%s: restored notice differs (-before +restored):\n%s", name, d)
		}
		if w.Record.Version < 2 && name != "received" {
			t.Errorf("%s: path did not run (version %d)", name, w.Record.Version)
		}
	}
	gotCounts, err := st.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts.Outbox = 0
	if d := cmp.Diff(nonZero(wantCounts), nonZero(gotCounts)); d != "" {
		t.Errorf("counters differ (-before +restored):\n%s", d)
	}
	if gotCounts.Overdue[tracker.OverdueKey{Kind: pipeline.KindRemovalOrder, Provider: "videohost"}] != 1 {
		t.Errorf("overdue counters %v, want the one open overdue notice", gotCounts.Overdue)
	}

	// The restored notices go on: the same submission is a duplicate (the
	// fingerprint came back), the due one is planned, feedback applies
	// with the next version and no event is recorded by the restore
	// itself.
	n := testenv.Notice("de-bka", "REF-delivered", "videohost", pipeline.KindRemovalOrder)
	if _, err := st.Create(ctx, &n, testenv.JSON(n), now, now); !errors.Is(err, pipeline.ErrDuplicate) {
		t.Errorf("same submission after the restore: %v, want ErrDuplicate", err)
	}
	if c, _ := st.Counts(ctx); c.Outbox != 0 {
		t.Errorf("restore recorded %d events; the stream has them already", c.Outbox)
	}
	id := ids["delivered"]
	claimed, err := st.Claim(ctx, tracker.ShardOf(id, restoreShards), now, now.Add(time.Minute), 100, "after")
	if err != nil || !slices.Contains(claimed, id) {
		t.Errorf("restored open notice not due at the restore time: claimed %v, %v", claimed, err)
	}
	f := fb(id, "videohost", pipeline.FeedbackRemoved)
	f.ActionAt = testenv.Time(now)
	a, err := st.ApplyFeedback(ctx, f, "after", now)
	if err != nil || a.Version != want[id].Record.Version+1 {
		t.Errorf("removal after the restore: %+v, %v; want version %d", a, err, want[id].Record.Version+1)
	}
}

// A tracker behind the stream (transitions lost) is brought forward from
// the version it holds, and only from that version: a notice that moved
// on meanwhile is left alone. Events that cannot rebuild a notice are
// refused; events repeated on the stream count once.
func TestRestoreFromAnEarlierVersion(t *testing.T) {
	ctx := context.Background()
	st, rdb := newStore(t)
	n := testenv.Notice("de-bka", "REF-behind", "videohost", pipeline.KindRemovalOrder)
	id := created(t, st, n)
	delivered(t, st, id, t0.Add(time.Minute))
	if _, err := st.ApplyFeedback(ctx, fb(id, "videohost", pipeline.FeedbackAcknowledged), "m1", t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	want := stateOf(t, st, rdb, id)
	wantCounts, _ := st.Counts(ctx)
	wantCounts.Outbox = 0
	events := streamEvents(t, st)[id]
	if len(events) != 3 {
		t.Fatalf("%d events, want 3", len(events))
	}
	rebuild := func(evs ...pipeline.Event) *tracker.Rebuilt {
		t.Helper()
		rb, err := tracker.Rebuild(evs)
		if err != nil {
			t.Fatal(err)
		}
		return rb
	}
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	// Redis kept the notice as delivered: the acknowledgement was lost.
	if err := st.Restore(ctx, rebuild(events[:2]...), 0, now); err != nil {
		t.Fatal(err)
	}
	if err := st.Restore(ctx, rebuild(events...), 1, now); !errors.Is(err, pipeline.ErrStale) {
		t.Fatalf("restore from a version the tracker no longer holds: %v, want ErrStale", err)
	}
	if got := stateOf(t, st, rdb, id); got.Record.Version != 2 || got.Record.State != pipeline.StateDelivered {
		t.Fatalf("stale restore changed the notice: %+v", got.Record)
	}
	if err := st.Restore(ctx, rebuild(events[:2]...), 2, now); err == nil {
		t.Fatal("restore to the version the tracker holds: no error")
	}
	// The stream repeats an event (published again after the duplicate
	// window): it counts once.
	if err := st.Restore(ctx, rebuild(events[0], events[1], events[1], events[2]), 2, now); err != nil {
		t.Fatal(err)
	}
	want.Due = true
	if d := cmp.Diff(want, stateOf(t, st, rdb, id)); d != "" {
		t.Errorf("restored notice differs (-before +restored):\n%s", d)
	}
	if c, _ := st.Counts(ctx); !cmp.Equal(nonZero(wantCounts), nonZero(c)) {
		t.Errorf("counters %+v, want %+v", c, wantCounts)
	}

	for name, evs := range map[string][]pipeline.Event{
		"first event missing": events[1:],
		"version missing":     {events[0], events[2]},
		"none":                nil,
	} {
		if _, err := tracker.Rebuild(evs); !errors.Is(err, tracker.ErrIncomplete) {
			t.Errorf("%s: %v, want ErrIncomplete", name, err)
		}
	}
	other := testenv.Notice("de-bka", "REF-other", "videohost", pipeline.KindRemovalOrder)
	created(t, st, other)
	if _, err := tracker.Rebuild(append(events[:1:1], streamEvents(t, st)[other.ID()]...)); err == nil {
		t.Error("events of two notices: no error")
	}
}

// nonZero leaves out the counters at zero (a counter's field stays after
// its last notice left the state; a restored tracker may not have it).
func nonZero(c tracker.Counts) tracker.Counts {
	for st, n := range c.ByState {
		if n == 0 {
			delete(c.ByState, st)
		}
	}
	for k, n := range c.Overdue {
		if n == 0 {
			delete(c.Overdue, k)
		}
	}
	for p, n := range c.OverdueByProvider {
		if n == 0 {
			delete(c.OverdueByProvider, p)
		}
	}
	return c
}
