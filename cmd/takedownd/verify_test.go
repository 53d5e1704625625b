package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/tracker"
)

// verify agrees with a pipeline left alone, and names each notice whose
// tracker state or events were damaged, in the right section.
func TestVerifyFindsWhatTheTrackerAndTheStreamDisagreeOn(t *testing.T) {
	rdb := testenv.Redis(t)
	redisURL := "redis://" + rdb.Options().Addr + "/0"
	d := startDaemon(t, "-redis-url", redisURL)
	ctx := context.Background()
	r := newVerifyRig(t, d.natsURL, rdb)
	js, store, run := r.js, r.store, r.verify
	var ids []string
	for i := range 6 {
		ids = append(ids, r.submit(fmt.Sprintf("VERIFY-%d", i)))
	}
	r.settled("six notices delivered and their events relayed", map[pipeline.State]int64{pipeline.StateDelivered: 6})
	out, err := run()
	if err != nil || !strings.Contains(out, "agreeing:       6 notices") || !strings.Contains(out, "events stream:  12 events") {
		t.Fatalf("untouched pipeline: %v\n%s", err, out)
	}

	// An event lost from the stream — the stream's first, which is not
	// its age limit at work —, a create lost from Redis, a transition
	// lost from Redis, and a transition whose event never came.
	st, err := js.Stream(ctx, "TAKEDOWN_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	gap, _, _ := eventID(first.Header.Get(jetstream.MsgIDHeader))
	if err := st.DeleteMsg(ctx, 1); err != nil {
		t.Fatal(err)
	}
	var others []string
	for _, id := range ids {
		if id != gap {
			others = append(others, id)
		}
	}
	lost, behind, ahead := others[0], others[1], others[2]
	noticeKey := func(id string) string { return fmt.Sprintf("td:{%d}:n:%s", tracker.ShardOf(id, 16), id) }
	if err := rdb.Del(ctx, noticeKey(lost)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, noticeKey(behind), "v", 1).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HIncrBy(ctx, noticeKey(ahead), "v", 1).Err(); err != nil {
		t.Fatal(err)
	}

	out, err = run()
	if !errors.Is(err, errDisagree) {
		t.Fatalf("damaged: error %v, want %v\n%s", err, errDisagree, out)
	}
	for _, want := range []string{
		"not tracked:    1 notices\n  " + lost + ": on the stream up to version 2, not in the tracker",
		"tracker behind: 1 notices\n  " + behind + ": tracker at version 1, the stream at 2",
		"  " + gap + ": 1 events on the stream up to version 2",
		"  " + ahead + ": tracker at version 3, the stream at 2, nothing waiting to be relayed",
		"events missing: 2 notices",
		"agreeing:       2 notices",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}

	// -repair restores the notice Redis lost and the one it holds at an
	// older version from their events. The event deleted from the stream
	// it cannot put back yet (the stream remembers its id for the
	// duplicate window), nor the version the tracker never recorded an
	// event of, so the exit status stays 1.
	out, err = run("-repair")
	if !errors.Is(err, errDisagree) {
		t.Fatalf("repair: error %v, want %v (events still missing)\n%s", err, errDisagree, out)
	}
	for _, want := range []string{
		"restored:       2 notices, from their events",
		"  " + lost + ": restored at version 2",
		"  " + behind + ": version 1 → 2",
		"not repaired:   2 notices",
		"  " + gap + ": the stream still remembers " + gap + ".1 (deleted within its duplicate window)",
		"  " + ahead + ": version 3 is no longer in the tracker's timeline",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("repair report lacks %q:\n%s", want, out)
		}
	}
	for _, id := range []string{lost, behind} {
		rec, err := store.Get(ctx, id)
		if err != nil || rec.Version != 2 || rec.State != pipeline.StateDelivered || rec.DeliveredAt.IsZero() || len(rec.Body) == 0 {
			t.Errorf("%s after repair: %+v, %v", id, rec, err)
		}
	}
	out, err = run()
	if !errors.Is(err, errDisagree) || !strings.Contains(out, "agreeing:       4 notices") || !strings.Contains(out, "not tracked:    0 notices") || !strings.Contains(out, "tracker behind: 0 notices") {
		t.Errorf("after repair: %v\n%s", err, out)
	}

	var errOut bytes.Buffer
	if err := verify(ctx, nil, func(string) string { return "" }, &bytes.Buffer{}, &errOut); !errors.Is(err, errUsage) {
		t.Errorf("without -nats-url: %v", err)
	}
	if _, err := run("-repair", "-repair-batch", "0"); !errors.Is(err, errUsage) {
		t.Errorf("-repair-batch 0: %v", err)
	}
	// takedownd's environment variables serve as well.
	env := map[string]string{"TAKEDOWN_NATS_URL": d.natsURL, "TAKEDOWN_REDIS_URL": redisURL}
	if err := verify(ctx, nil, func(k string) string { return env[k] }, &bytes.Buffer{}, &errOut); !errors.Is(err, errDisagree) {
		t.Errorf("from the environment: %v, want %v", err, errDisagree)
	}
}

func TestVerifyClassification(t *testing.T) {
	seen := map[string]*streamNotice{
		"same":    {max: 3, events: 3, before: 3},
		"lost":    {max: 2, events: 2, before: 2},
		"behind":  {max: 4, events: 4, before: 4},
		"gap":     {max: 3, events: 2, before: 3},
		"newer":   {max: 2, events: 2, before: 2},
		"unknown": {max: 1, events: 1, before: 1},
		// Moved on while the tracker was read: the tracker saw version
		// 2, the stream had 2 before and 3 after.
		"moved": {max: 3, events: 3, before: 2},
		// Created while the tracker was read.
		"fresh": {max: 1, events: 1},
	}
	tracked := map[string]int64{"same": 3, "behind": 2, "gap": 3, "newer": 3, "unrelayed": 1, "moved": 2}
	// Nothing waits in the outbox: a tracker ahead of the stream lost
	// its events.
	r := newEventsReport()
	r.classify(seen, tracked)
	if r.agreeing != 2 || len(r.missing) != 2 || r.behind["behind"] != [2]int64{2, 4} || r.gaps["gap"].events != 2 ||
		r.ahead["newer"] != [2]int64{3, 2} || r.ahead["unrelayed"] != [2]int64{1, 0} || r.pending != 1 || r.agree() {
		t.Errorf("outbox empty: %+v", r)
	}
	// Events waiting in the outbox: a tracker ahead may be waiting for
	// them, and is not judged.
	r = newEventsReport()
	r.outbox = 5
	r.classify(seen, tracked)
	if r.pending != 3 || len(r.ahead) != 0 || len(r.behind) != 1 || len(r.missing) != 2 {
		t.Errorf("outbox not empty: %+v", r)
	}
	var out strings.Builder
	r.print(&out, 1)
	for _, want := range []string{"not compared:   3 notices that changed while compared", "not tracked:    2 notices\n  lost: on the stream up to version 2, not in the tracker\n  … and 1 more\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// Message ids on the events stream are read back as <notice id>.<version>;
// anything else (the pipeline's system events, or a stranger's) is not a
// notice's event.
func FuzzEventID(f *testing.F) {
	for _, s := range []string{"0a7a46d2-831d-5284-8a4b-9428b6a9f074.3", "system.videohost.endpoint_disabled.1764230400000",
		"0a7a46d2-831d-5284-8a4b-9428b6a9f074.0", "0a7a46d2-831d-5284-8a4b-9428b6a9f074.-1", "0a7a46d2-831d-5284-8a4b-9428b6a9f074", "", ".", "x.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, v, ok := eventID(s)
		if !ok {
			return
		}
		n, err := strconv.ParseInt(strings.TrimPrefix(s, id+"."), 10, 64)
		if !strings.HasPrefix(s, id+".") || uuid.Validate(id) != nil || err != nil || n != v || v < 1 {
			t.Fatalf("eventID(%q) = %q, %d", s, id, v)
		}
	})
}

// Once the stream's age limit removes events from its head, notices
// created before its first message are not reported for the events they
// lost that way; younger ones still are.
func TestVerifySetsAsideNoticesOlderThanTheStream(t *testing.T) {
	from := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	r := newEventsReport()
	r.gaps["old-gap"] = streamNotice{max: 4, events: 2, before: 4}
	r.gaps["young-gap"] = streamNotice{max: 4, events: 2, before: 4}
	r.ahead["old-gone"] = [2]int64{5, 0}
	r.ahead["young-gone"] = [2]int64{5, 0}
	created := map[string]time.Time{"old-gap": from.Add(-time.Hour), "old-gone": from.AddDate(0, -1, 0), "young-gap": from.Add(time.Hour), "young-gone": from.Add(time.Minute)}
	lookup := func(ids []string) (map[string]time.Time, error) {
		if len(ids) != 4 {
			t.Errorf("looked up %v, want the four disagreeing notices", ids)
		}
		return created, nil
	}
	// A stream that has lost nothing from its head sets nothing aside.
	if err := r.setAsideAged(lookup); err != nil || r.aged != 0 || len(r.gaps) != 2 || len(r.ahead) != 2 {
		t.Fatalf("whole stream: aged %d, gaps %v, ahead %v (%v)", r.aged, r.gaps, r.ahead, err)
	}
	r.streamFrom = from
	if err := r.setAsideAged(lookup); err != nil {
		t.Fatal(err)
	}
	if r.aged != 2 || len(r.gaps) != 1 || len(r.ahead) != 1 || r.gaps["young-gap"].max != 4 || r.ahead["young-gone"][0] != 5 {
		t.Errorf("aged %d, gaps %v, ahead %v", r.aged, r.gaps, r.ahead)
	}
	var out strings.Builder
	r.print(&out, 20)
	if !strings.Contains(out.String(), "older:          2 notices created before the stream's first event (2026-06-01T00:00:00Z)") {
		t.Errorf("report:\n%s", out.String())
	}
}

// verifyRig drives a takedownd through NATS and reads its tracker, for
// the repair tests.
type verifyRig struct {
	t                 *testing.T
	js                jetstream.JetStream
	store             *tracker.Store
	natsURL, redisURL string
}

func newVerifyRig(t *testing.T, natsURL string, rdb *redis.Client) *verifyRig {
	t.Helper()
	js, err := jetstream.New(testenv.Connect(t, natsURL))
	if err != nil {
		t.Fatal(err)
	}
	store, err := tracker.New(rdb, tracker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &verifyRig{t: t, js: js, store: store, natsURL: natsURL, redisURL: "redis://" + rdb.Options().Addr + "/0"}
}

// submit publishes a removal order to videohost and returns its id.
func (r *verifyRig) submit(ref string) string {
	r.t.Helper()
	n := testenv.Notice("de-bka", ref, "videohost", pipeline.KindRemovalOrder)
	m := nats.NewMsg("takedown.intake.de-bka")
	m.Data = testenv.JSON(n)
	if _, err := r.js.PublishMsg(context.Background(), m, jetstream.WithMsgID(n.ID())); err != nil {
		r.t.Fatal(err)
	}
	return n.ID()
}

// answer publishes videohost's feedback on a notice.
func (r *verifyRig) answer(id string, typ pipeline.FeedbackType) {
	r.t.Helper()
	now := time.Now().UTC()
	f := pipeline.Feedback{Schema: pipeline.FeedbackSchema, NoticeID: id, Provider: "videohost", Type: typ}
	if typ == pipeline.FeedbackRemoved {
		f.ActionAt = &now
	}
	m := nats.NewMsg("takedown.feedback.videohost")
	m.Data = testenv.JSON(f)
	if _, err := r.js.PublishMsg(context.Background(), m, jetstream.WithMsgID(id+"."+string(typ))); err != nil {
		r.t.Fatal(err)
	}
}

// settled waits until the tracker counts want and its events are relayed.
func (r *verifyRig) settled(what string, want map[pipeline.State]int64) {
	r.t.Helper()
	testenv.WaitFor(r.t, 20*time.Second, what, func() bool {
		c, err := r.store.Counts(context.Background())
		if err != nil || c.Outbox != 0 {
			return false
		}
		for st, n := range want {
			if c.ByState[st] != n {
				return false
			}
		}
		return true
	})
}

func (r *verifyRig) verify(extra ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := verify(context.Background(), append([]string{"-nats-url", r.natsURL, "-redis-url", r.redisURL}, extra...), func(string) string { return "" }, &out, &errOut)
	return out.String(), err
}

// sameNotices compares the notices the tracker holds now with before.
func (r *verifyRig) sameNotices(before map[string]tracker.Record) {
	r.t.Helper()
	ids := slices.Collect(maps.Keys(before))
	after, err := r.store.GetMany(context.Background(), ids)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, id := range ids {
		b, a := before[id], after[id]
		if a.Version != b.Version || a.State != b.State || !a.Deadline.Equal(b.Deadline) || !a.DeliveredAt.Equal(b.DeliveredAt) ||
			a.Fingerprint != b.Fingerprint || string(a.Body) != string(b.Body) || !a.CreatedAt.Equal(b.CreatedAt) || !a.ActionAt.Equal(b.ActionAt) {
			r.t.Errorf("%s restored as\n%+v\nwas\n%+v", id, a, b)
		}
	}
}

// Redis loses everything under a running takedownd (its disk is gone, or
// it came back from an empty backup): verify -repair restores every
// notice from the events stream, and the pipeline carries on with them —
// their answers apply, at the next versions, and the stream and the
// tracker agree afterwards.
func TestRepairAfterRedisLostItsData(t *testing.T) {
	ctx := context.Background()
	rdb := testenv.Redis(t)
	d := startDaemon(t, "-redis-url", "redis://"+rdb.Options().Addr+"/0")
	r := newVerifyRig(t, d.natsURL, rdb)
	var ids []string
	for i := range 6 {
		ids = append(ids, r.submit(fmt.Sprintf("REPAIR-%d", i)))
	}
	r.settled("six notices delivered", map[pipeline.State]int64{pipeline.StateDelivered: 6})
	for _, id := range ids[:2] {
		r.answer(id, pipeline.FeedbackAcknowledged)
	}
	r.settled("two acknowledged", map[pipeline.State]int64{pipeline.StateDelivered: 4, pipeline.StateAcknowledged: 2})
	before, err := r.store.GetMany(ctx, ids)
	if err != nil || len(before) != 6 {
		t.Fatalf("%d notices, %v", len(before), err)
	}

	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	out, err := r.verify()
	if !errors.Is(err, errDisagree) || !strings.Contains(out, "not tracked:    6 notices") {
		t.Fatalf("after the loss: %v\n%s", err, out)
	}
	// Four notices per reading of the stream: two readings.
	out, err = r.verify("-repair", "-repair-batch", "4")
	if err != nil || !strings.Contains(out, "restored:       6 notices") {
		t.Fatalf("repair: %v\n%s", err, out)
	}
	r.sameNotices(before)
	if c, err := r.store.Counts(ctx); err != nil || c.ByState[pipeline.StateDelivered] != 4 || c.ByState[pipeline.StateAcknowledged] != 2 {
		t.Errorf("counters after repair: %+v, %v", c, err)
	}
	if out, err := r.verify(); err != nil || !strings.Contains(out, "agreeing:       6 notices") {
		t.Errorf("after repair: %v\n%s", err, out)
	}

	// The pipeline carries on with the restored notices.
	for _, id := range ids {
		r.answer(id, pipeline.FeedbackRemoved)
	}
	r.settled("all six removed", map[pipeline.State]int64{pipeline.StateRemoved: 6})
	if out, err := r.verify(); err != nil || !strings.Contains(out, "agreeing:       6 notices") {
		t.Errorf("after the removals: %v\n%s", err, out)
	}
}

// Redis is restored from an older backup, as the README's operations
// section has it: takedownd stopped, the backup's AOF directory put back,
// verify -repair, takedownd started again. Notices created since the
// backup come back, those that moved on since come forward, and the
// pipeline finishes them all without a version conflict.
func TestRepairAfterRestoringAnOlderRedisBackup(t *testing.T) {
	ctx := context.Background()
	ns := testenv.StartNATS(t)
	srv := testenv.OwnRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	d := startDaemon(t, "-nats-url", ns.URL(), "-redis-url", srv.URL())
	r := newVerifyRig(t, ns.URL(), rdb)
	var ids []string
	for i := range 6 {
		ids = append(ids, r.submit(fmt.Sprintf("BACKUP-%d", i)))
	}
	r.settled("six notices delivered", map[pipeline.State]int64{pipeline.StateDelivered: 6})
	r.answer(ids[0], pipeline.FeedbackAcknowledged)
	r.answer(ids[1], pipeline.FeedbackAcknowledged)
	r.settled("two acknowledged", map[pipeline.State]int64{pipeline.StateDelivered: 4, pipeline.StateAcknowledged: 2})

	// The backup: a copy of the AOF directory (every write is fsynced).
	backup := filepath.Join(t.TempDir(), "appendonlydir")
	if err := os.CopyFS(backup, os.DirFS(srv.DataFile())); err != nil {
		t.Fatal(err)
	}

	// Work goes on after it: a removal, an acknowledgement, two new notices.
	r.answer(ids[0], pipeline.FeedbackRemoved)
	r.answer(ids[2], pipeline.FeedbackAcknowledged)
	ids = append(ids, r.submit("BACKUP-6"), r.submit("BACKUP-7"))
	r.settled("the later work done", map[pipeline.State]int64{pipeline.StateRemoved: 1, pipeline.StateAcknowledged: 2, pipeline.StateDelivered: 5})
	before, err := r.store.GetMany(ctx, ids)
	if err != nil || len(before) != 8 {
		t.Fatalf("%d notices, %v", len(before), err)
	}

	// Redis comes back from the backup, with takedownd stopped.
	d.stop(t)
	srv.Stop()
	putBack(t, srv.DataFile(), backup)
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := r.verify()
	for _, want := range []string{
		"not tracked:    2 notices", "tracker behind: 2 notices",
		ids[0] + ": tracker at version 3, the stream at 4",
		ids[2] + ": tracker at version 2, the stream at 3",
	} {
		if !errors.Is(err, errDisagree) || !strings.Contains(out, want) {
			t.Errorf("restored backup: %v, report lacks %q\n%s", err, want, out)
		}
	}
	out, err = r.verify("-repair")
	if err != nil || !strings.Contains(out, "restored:       4 notices") {
		t.Fatalf("repair: %v\n%s", err, out)
	}
	r.sameNotices(before)

	// takedownd again: every notice finishes, at the next versions.
	startDaemon(t, "-nats-url", ns.URL(), "-redis-url", srv.URL())
	for _, id := range ids[1:] {
		r.answer(id, pipeline.FeedbackRemoved)
	}
	r.settled("all eight removed", map[pipeline.State]int64{pipeline.StateRemoved: 8})
	if out, err := r.verify(); err != nil || !strings.Contains(out, "agreeing:       8 notices") {
		t.Errorf("after the removals: %v\n%s", err, out)
	}
	if parked := testenv.StreamMessages(t, r.js, "TAKEDOWN_PARKED", ">"); len(parked) != 0 {
		t.Errorf("%d messages parked", len(parked))
	}
}

// The NATS server is restored from an older backup of its store, and the
// events stream lacks the events written since: verify -repair publishes
// them again from the tracker, with their ids and in version order, and
// the pipeline carries on.
func TestRepairAfterRestoringAnOlderNATSBackup(t *testing.T) {
	ns := testenv.StartNATS(t)
	rdb := testenv.Redis(t)
	redisURL := "redis://" + rdb.Options().Addr + "/0"
	d := startDaemon(t, "-nats-url", ns.URL(), "-redis-url", redisURL)
	r := newVerifyRig(t, ns.URL(), rdb)
	var ids []string
	for i := range 4 {
		ids = append(ids, r.submit(fmt.Sprintf("NATS-BACKUP-%d", i)))
	}
	r.settled("four notices delivered", map[pipeline.State]int64{pipeline.StateDelivered: 4})

	// The backup: a copy of the store with the server shut down.
	d.stop(t)
	ns.Shutdown()
	backup := filepath.Join(t.TempDir(), "jetstream")
	if err := os.CopyFS(backup, os.DirFS(ns.StoreDir())); err != nil {
		t.Fatal(err)
	}
	ns.Restart(t)
	d = startDaemon(t, "-nats-url", ns.URL(), "-redis-url", redisURL)
	r = newVerifyRig(t, ns.URL(), rdb)

	// Work goes on after it: an acknowledgement, a removal, two new
	// notices.
	r.answer(ids[0], pipeline.FeedbackAcknowledged)
	r.answer(ids[1], pipeline.FeedbackRemoved)
	ids = append(ids, r.submit("NATS-BACKUP-4"), r.submit("NATS-BACKUP-5"))
	r.settled("the later work done", map[pipeline.State]int64{pipeline.StateAcknowledged: 1, pipeline.StateRemoved: 1, pipeline.StateDelivered: 4})

	// NATS comes back from the backup, with takedownd stopped.
	d.stop(t)
	ns.Shutdown()
	putBack(t, ns.StoreDir(), backup)
	ns.Restart(t)
	r = newVerifyRig(t, ns.URL(), rdb)
	out, err := r.verify()
	if !errors.Is(err, errDisagree) || !strings.Contains(out, "events missing: 4 notices") || !strings.Contains(out, "events stream:  8 events") {
		t.Fatalf("restored backup: %v\n%s", err, out)
	}
	out, err = r.verify("-repair")
	if err != nil || !strings.Contains(out, "republished:    6 events of 4 notices, from the tracker") {
		t.Fatalf("repair: %v\n%s", err, out)
	}
	out, err = r.verify()
	if err != nil || !strings.Contains(out, "agreeing:       6 notices") {
		t.Fatalf("after repair: %v\n%s", err, out)
	}
	// The events put back are the ones the relay had published: the new
	// notices' received events carry the notice, versions in order.
	evs := map[string][]pipeline.Event{}
	for _, m := range testenv.StreamMessages(t, r.js, "TAKEDOWN_EVENTS", "takedown.events.>") {
		var ev pipeline.Event
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		if m.Headers().Get(jetstream.MsgIDHeader) != ev.ID {
			t.Errorf("event %s republished with id %q", ev.ID, m.Headers().Get(jetstream.MsgIDHeader))
		}
		evs[ev.NoticeID] = append(evs[ev.NoticeID], ev)
	}
	for _, id := range ids {
		for i, ev := range evs[id] {
			if ev.Version != int64(i+1) {
				t.Errorf("%s: event %d of the stream is version %d", id, i, ev.Version)
			}
		}
	}
	if n := evs[ids[4]]; len(n) != 2 || n[0].Type != pipeline.EventReceived || len(n[0].Notice) == 0 || n[1].DeliveredAt == nil {
		t.Errorf("new notice's events after repair: %+v", n)
	}
	if rm := evs[ids[1]]; len(rm) != 3 || rm[2].Type != pipeline.EventRemoved || rm[2].InTime == nil || rm[2].ActionAt == nil {
		t.Errorf("removed notice's events after repair: %+v", rm)
	}

	// takedownd again: every notice finishes, at the next versions.
	d = startDaemon(t, "-nats-url", ns.URL(), "-redis-url", redisURL)
	for _, id := range append([]string{ids[0]}, ids[2:]...) {
		r.answer(id, pipeline.FeedbackRemoved)
	}
	defer func() {
		if t.Failed() {
			c, _ := r.store.Counts(context.Background())
			t.Logf("counts %+v\n%s", c, d.stderr)
		}
	}()
	r.settled("all six removed", map[pipeline.State]int64{pipeline.StateRemoved: 6})
	if out, err := r.verify(); err != nil || !strings.Contains(out, "agreeing:       6 notices") {
		t.Errorf("after the removals: %v\n%s", err, out)
	}
	if parked := testenv.StreamMessages(t, r.js, "TAKEDOWN_PARKED", ">"); len(parked) != 0 {
		t.Errorf("%d messages parked", len(parked))
	}
}

// putBack replaces the data directory dir with a copy of backup.
func putBack(t *testing.T, dir, backup string) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(dir, os.DirFS(backup)); err != nil {
		t.Fatal(err)
	}
}
