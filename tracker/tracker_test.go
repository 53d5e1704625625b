package tracker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/tracker"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func newStore(t *testing.T) (*tracker.Store, *redis.Client) {
	t.Helper()
	rdb := testenv.Redis(t)
	st, err := tracker.New(rdb, tracker.Config{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	return st, rdb
}

// created stores a notice and returns its id.
func created(t *testing.T, st *tracker.Store, n pipeline.Notice) string {
	t.Helper()
	if _, err := st.Create(context.Background(), &n, testenv.JSON(n), t0, t0.Add(30*time.Second)); err != nil {
		t.Fatalf("create: %v", err)
	}
	return n.ID()
}

func delivered(t *testing.T, st *tracker.Store, id string, at time.Time) {
	t.Helper()
	if _, err := st.Delivered(context.Background(), id, at, time.Hour, at.Add(30*time.Minute), nil); err != nil {
		t.Fatalf("deliver: %v", err)
	}
}

func fb(id, provider string, typ pipeline.FeedbackType) pipeline.Feedback {
	f := pipeline.Feedback{Schema: pipeline.FeedbackSchema, NoticeID: id, Provider: provider, Type: typ}
	switch typ {
	case pipeline.FeedbackRemoved, pipeline.FeedbackDisabled:
		f.ActionAt = testenv.Time(t0.Add(20 * time.Minute))
	case pipeline.FeedbackBlocked:
		f.Ground, f.Explanation = pipeline.GroundInsufficientInfo, "which account?"
	}
	return f
}

func TestCreateDuplicateConflict(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	n := testenv.Notice("de-bka", "REF-1", "videohost", pipeline.KindRemovalOrder)
	id := created(t, st, n)

	_, err := st.Create(ctx, &n, testenv.JSON(n), t0, t0)
	if !errors.Is(err, pipeline.ErrDuplicate) {
		t.Fatalf("same submission again: got %v, want ErrDuplicate", err)
	}
	changed := n
	changed.Content = []pipeline.ContentItem{{URL: "https://other.example/x"}}
	_, err = st.Create(ctx, &changed, testenv.JSON(changed), t0, t0)
	if !errors.Is(err, pipeline.ErrConflict) {
		t.Fatalf("changed content: got %v, want ErrConflict", err)
	}
	rec, err := st.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Fingerprint != n.Fingerprint() || rec.Version != 1 || rec.Conflicts != 1 || string(rec.Body) != string(testenv.JSON(n)) {
		t.Fatalf("original changed by conflict: %+v", rec)
	}
}

func TestTransitions(t *testing.T) {
	ctx := context.Background()
	type step struct {
		apply     func(st *tracker.Store, id string) error
		wantErr   error
		wantState pipeline.State
	}
	feedback := func(typ pipeline.FeedbackType) func(*tracker.Store, string) error {
		return func(st *tracker.Store, id string) error {
			_, err := st.ApplyFeedback(ctx, fb(id, "videohost", typ), "", t0.Add(10*time.Minute))
			return err
		}
	}
	feedbackAs := func(provider string, typ pipeline.FeedbackType) func(*tracker.Store, string) error {
		return func(st *tracker.Store, id string) error {
			_, err := st.ApplyFeedback(ctx, fb(id, provider, typ), "", t0.Add(10*time.Minute))
			return err
		}
	}
	action := func(issuer string, typ pipeline.ActionType) func(*tracker.Store, string) error {
		return func(st *tracker.Store, id string) error {
			_, err := st.ApplyAction(ctx, pipeline.Action{Schema: pipeline.ActionSchema, NoticeID: id, Issuer: issuer, Type: typ, Explanation: "the account is 'x'"}, "", t0.Add(15*time.Minute))
			return err
		}
	}
	blockWith := func(g pipeline.Ground) func(*tracker.Store, string) error {
		return func(st *tracker.Store, id string) error {
			f := fb(id, "videohost", pipeline.FeedbackBlocked)
			f.Ground = g
			_, err := st.ApplyFeedback(ctx, f, "", t0.Add(10*time.Minute))
			return err
		}
	}
	tests := []struct {
		name        string
		kind        pipeline.Kind
		undelivered bool
		steps       []step
	}{
		{name: "ack then remove", steps: []step{
			{feedback(pipeline.FeedbackAcknowledged), nil, pipeline.StateAcknowledged},
			{feedback(pipeline.FeedbackAcknowledged), pipeline.ErrDuplicate, pipeline.StateAcknowledged},
			{feedback(pipeline.FeedbackRemoved), nil, pipeline.StateRemoved},
			{feedback(pipeline.FeedbackRemoved), pipeline.ErrDuplicate, pipeline.StateRemoved},
			// Overtaken by the removal (feedback is taken concurrently):
			// nothing to do, nothing to refuse.
			{feedback(pipeline.FeedbackAcknowledged), pipeline.ErrDuplicate, pipeline.StateRemoved},
		}},
		{name: "removal overtakes the acknowledgement", steps: []step{
			{feedback(pipeline.FeedbackRemoved), nil, pipeline.StateRemoved},
			{feedback(pipeline.FeedbackAcknowledged), pipeline.ErrDuplicate, pipeline.StateRemoved},
		}},
		{name: "disabled without ack", steps: []step{
			{feedback(pipeline.FeedbackDisabled), nil, pipeline.StateRemoved},
		}},
		{name: "blocked insufficient info then clarified then removed", steps: []step{
			{feedback(pipeline.FeedbackBlocked), nil, pipeline.StateBlocked},
			{feedback(pipeline.FeedbackResumed), pipeline.ErrIllegalTransition, pipeline.StateBlocked},
			{action("other-iru", pipeline.ActionClarify), pipeline.ErrForbidden, pipeline.StateBlocked},
			{action("de-bka", pipeline.ActionClarify), nil, pipeline.StateAcknowledged},
			{feedback(pipeline.FeedbackRemoved), nil, pipeline.StateRemoved},
		}},
		{name: "force majeure then resumed", steps: []step{
			{blockWith(pipeline.GroundForceMajeure), nil, pipeline.StateBlocked},
			{action("de-bka", pipeline.ActionClarify), pipeline.ErrIllegalTransition, pipeline.StateBlocked},
			{feedback(pipeline.FeedbackResumed), nil, pipeline.StateAcknowledged},
			{feedback(pipeline.FeedbackResumed), pipeline.ErrIllegalTransition, pipeline.StateAcknowledged},
		}},
		{name: "withdrawn then removal refused", steps: []step{
			{action("de-bka", pipeline.ActionWithdraw), nil, pipeline.StateWithdrawn},
			{action("de-bka", pipeline.ActionWithdraw), pipeline.ErrDuplicate, pipeline.StateWithdrawn},
			{feedback(pipeline.FeedbackRemoved), pipeline.ErrIllegalTransition, pipeline.StateWithdrawn},
			{feedback(pipeline.FeedbackAcknowledged), pipeline.ErrDuplicate, pipeline.StateWithdrawn},
		}},
		{name: "withdraw by another issuer", steps: []step{
			{action("fr-pharos", pipeline.ActionWithdraw), pipeline.ErrForbidden, pipeline.StateDelivered},
		}},
		{name: "feedback from another provider", steps: []step{
			{feedbackAs("otherhost", pipeline.FeedbackRemoved), pipeline.ErrForbidden, pipeline.StateDelivered},
		}},
		{name: "removal order cannot be declined", steps: []step{
			{feedback(pipeline.FeedbackDeclined), pipeline.ErrIllegalTransition, pipeline.StateDelivered},
		}},
		{name: "referral declined", kind: pipeline.KindReferral, steps: []step{
			{feedback(pipeline.FeedbackAcknowledged), nil, pipeline.StateAcknowledged},
			{feedback(pipeline.FeedbackDeclined), nil, pipeline.StateDeclined},
			{action("de-bka", pipeline.ActionWithdraw), pipeline.ErrIllegalTransition, pipeline.StateDeclined},
			{feedback(pipeline.FeedbackAcknowledged), pipeline.ErrDuplicate, pipeline.StateDeclined},
		}},
		{name: "feedback before delivery is recorded", undelivered: true, steps: []step{
			{feedback(pipeline.FeedbackAcknowledged), tracker.ErrNotYetDelivered, pipeline.StateReceived},
			{action("de-bka", pipeline.ActionWithdraw), nil, pipeline.StateWithdrawn},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := newStore(t)
			kind := tt.kind
			if kind == "" {
				kind = pipeline.KindRemovalOrder
			}
			id := created(t, st, testenv.Notice("de-bka", "REF-"+tt.name, "videohost", kind))
			if !tt.undelivered {
				delivered(t, st, id, t0)
			}
			for i, s := range tt.steps {
				err := s.apply(st, id)
				if (tt.steps[i].wantErr == nil) != (err == nil) || (s.wantErr != nil && !errors.Is(err, s.wantErr)) {
					t.Fatalf("step %d: got error %v, want %v", i, err, s.wantErr)
				}
				rec, err := st.Get(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if rec.State != s.wantState {
					t.Fatalf("step %d: state %s, want %s", i, rec.State, s.wantState)
				}
			}
		})
	}
}

func TestUnknownNotice(t *testing.T) {
	st, _ := newStore(t)
	_, err := st.ApplyFeedback(context.Background(), fb(pipeline.NoticeID("x", "y"), "videohost", pipeline.FeedbackRemoved), "", t0)
	if !errors.Is(err, pipeline.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
}

func TestRedeliveredMessageIsNoop(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	id := created(t, st, testenv.Notice("de-bka", "REF-seq", "videohost", pipeline.KindRemovalOrder))
	delivered(t, st, id, t0)
	f := fb(id, "videohost", pipeline.FeedbackBlocked)
	f.Ground = pipeline.GroundForceMajeure
	if _, err := st.ApplyFeedback(ctx, f, "feedback:7", t0); err != nil {
		t.Fatal(err)
	}
	res := fb(id, "videohost", pipeline.FeedbackResumed)
	if _, err := st.ApplyFeedback(ctx, res, "feedback:8", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// The resume message delivered again must not be parked as illegal.
	if _, err := st.ApplyFeedback(ctx, res, "feedback:8", t0.Add(2*time.Minute)); !errors.Is(err, pipeline.ErrDuplicate) {
		t.Fatalf("redelivered resume: got %v, want ErrDuplicate", err)
	}
}

func TestRemovalTiming(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	for _, tt := range []struct {
		after  time.Duration
		inTime bool
	}{{59 * time.Minute, true}, {60 * time.Minute, true}, {61 * time.Minute, false}} {
		id := created(t, st, testenv.Notice("de-bka", "REF-time-"+tt.after.String(), "videohost", pipeline.KindRemovalOrder))
		delivered(t, st, id, t0)
		f := fb(id, "videohost", pipeline.FeedbackRemoved)
		f.ActionAt = testenv.Time(t0.Add(tt.after))
		a, err := st.ApplyFeedback(ctx, f, "", t0.Add(tt.after))
		if err != nil {
			t.Fatal(err)
		}
		if a.InTime != tt.inTime || a.TimeToRemoval != tt.after || a.Kind != pipeline.KindRemovalOrder {
			t.Errorf("removal after %v: %+v, want in time %v", tt.after, a, tt.inTime)
		}
	}
}

func TestBlockedClockRestartsFromResume(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	id := created(t, st, testenv.Notice("de-bka", "REF-clock", "videohost", pipeline.KindRemovalOrder))
	delivered(t, st, id, t0)
	f := fb(id, "videohost", pipeline.FeedbackBlocked)
	f.Ground = pipeline.GroundForceMajeure
	if _, err := st.ApplyFeedback(ctx, f, "", t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	rec, _ := st.Get(ctx, id)
	if rec.Running {
		t.Fatal("clock still running while blocked")
	}
	resumeAt := t0.Add(3 * time.Hour)
	if _, err := st.ApplyFeedback(ctx, fb(id, "videohost", pipeline.FeedbackResumed), "", resumeAt); err != nil {
		t.Fatal(err)
	}
	rec, _ = st.Get(ctx, id)
	if !rec.Running || !rec.Deadline.Equal(resumeAt.Add(time.Hour)) || !rec.ClockStart.Equal(resumeAt) {
		t.Fatalf("after resume: running %v deadline %v clock %v, want deadline %v", rec.Running, rec.Deadline, rec.ClockStart, resumeAt.Add(time.Hour))
	}
	// Removal 50 minutes after resuming is in time, although it is hours
	// after the first delivery.
	rm := fb(id, "videohost", pipeline.FeedbackRemoved)
	rm.ActionAt = testenv.Time(resumeAt.Add(50 * time.Minute))
	a, err := st.ApplyFeedback(ctx, rm, "", resumeAt.Add(50*time.Minute))
	if err != nil || !a.InTime {
		t.Fatalf("removal after resume: %+v %v, want in time", a, err)
	}
}

func TestCountsAndOutbox(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	a := created(t, st, testenv.Notice("de-bka", "REF-a", "videohost", pipeline.KindRemovalOrder))
	nb := testenv.Notice("de-bka", "REF-b", "videohost", pipeline.KindRemovalOrder)
	b := created(t, st, nb)
	delivered(t, st, a, t0)
	if _, err := st.ApplyFeedback(ctx, fb(a, "videohost", pipeline.FeedbackRemoved), "", t0.Add(20*time.Minute)); err != nil {
		t.Fatal(err)
	}
	c, err := st.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[pipeline.State]int64{pipeline.StateReceived: 1, pipeline.StateDelivered: 0, pipeline.StateRemoved: 1}
	if diff := cmp.Diff(want, c.ByState); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if c.Outbox != 4 {
		t.Errorf("outbox holds %d events, want 4", c.Outbox)
	}
	// Events of notice a come out of its shard in version order.
	var got []string
	for shard := range st.Shards() {
		entries, err := st.ReadOutbox(ctx, shard, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Event.NoticeID == a {
				got = append(got, e.Event.ID+" "+string(e.Event.Type)+" "+string(e.Event.State))
			}
			if e.Event.NoticeID == b && e.Event.Type == pipeline.EventReceived && string(e.Event.Notice) != string(testenv.JSON(nb)) {
				t.Errorf("received event's notice is %s, want the body as created", e.Event.Notice)
			}
		}
	}
	wantEvents := []string{a + ".1 received received", a + ".2 delivered delivered", a + ".3 removed removed"}
	if diff := cmp.Diff(wantEvents, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestRelayLeaseIsExclusive(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	if ok, err := st.AcquireShard(ctx, 1, "a", time.Minute); !ok || err != nil {
		t.Fatalf("a: %v %v", ok, err)
	}
	if ok, _ := st.AcquireShard(ctx, 1, "b", time.Minute); ok {
		t.Fatal("b took a held lease")
	}
	if ok, _ := st.AcquireShard(ctx, 1, "a", time.Minute); !ok {
		t.Fatal("a could not renew its lease")
	}
	if err := st.ReleaseShard(ctx, 1, "b"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := st.AcquireShard(ctx, 1, "b", time.Minute); ok {
		t.Fatal("b released a lease it did not hold")
	}
	if err := st.ReleaseShard(ctx, 1, "a"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := st.AcquireShard(ctx, 1, "b", time.Minute); !ok {
		t.Fatal("b could not take a released lease")
	}
}

// Entries written one field per value, as before the packed form, are
// still read: an upgrade does not strand what waits in the outbox.
func TestOutboxReadsBothEntryForms(t *testing.T) {
	ctx := context.Background()
	st, rdb := newStore(t)
	n := testenv.Notice("de-bka", "REF-forms", "videohost", pipeline.KindRemovalOrder)
	id := created(t, st, n)
	delivered(t, st, id, t0)
	shard := tracker.ShardOf(id, st.Shards())
	outbox := tracker.TransitionKeys(id, st.Shards())[3]
	dl := strconv.FormatInt(t0.Add(time.Hour).UnixMilli(), 10)
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: outbox, Values: []any{
		"n", id, "v", 3, "t", "removed", "at", "2026-11-27T10:20:00Z", "st", "removed", "is", "de-bka", "pr", "videohost",
		"k", "removal_order", "ref", "REF-forms", "dl", dl, "run", "0", "ov", "0", "da", strconv.FormatInt(t0.UnixMilli(), 10),
		"x", `{"outcome":"removed"}`, "it", "1", "ms", "1200000",
	}}).Err(); err != nil {
		t.Fatal(err)
	}
	entries, err := st.ReadOutbox(ctx, shard, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []pipeline.Event
	for _, e := range entries {
		if e.Event.NoticeID == id {
			got = append(got, e.Event)
		}
	}
	if len(got) != 3 {
		t.Fatalf("read %d events of the notice, want received, delivered (packed) and removed (field by field)", len(got))
	}
	dlAt, inTime, secs := t0.Add(time.Hour), true, 1200.0
	want := []pipeline.Event{
		{Type: pipeline.EventReceived, Version: 1, State: pipeline.StateReceived, Notice: json.RawMessage(testenv.JSON(n))},
		{Type: pipeline.EventDelivered, Version: 2, State: pipeline.StateDelivered, Deadline: &dlAt, DeliveredAt: testenv.Time(t0)},
		{Type: pipeline.EventRemoved, Version: 3, State: pipeline.StateRemoved, DeliveredAt: testenv.Time(t0), Outcome: pipeline.FeedbackRemoved, InTime: &inTime, Seconds: &secs},
	}
	for i := range want {
		w := &want[i]
		w.Schema, w.NoticeID, w.ID = pipeline.EventSchema, id, pipeline.EventID(id, w.Version)
		w.Issuer, w.Provider, w.Kind, w.Reference = "de-bka", "videohost", pipeline.KindRemovalOrder, "REF-forms"
		w.At = got[i].At
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if !got[2].At.Equal(time.Date(2026, 11, 27, 10, 20, 0, 0, time.UTC)) {
		t.Errorf("removed at %v", got[2].At)
	}
}

// Scripts share round trips through the client's autopipeliner (its own
// pipeline connections) unless the store is told not to.
func TestScriptsGoThroughTheAutoPipelinerUnlessTurnedOff(t *testing.T) {
	for _, off := range []bool{false, true} {
		rdb := testenv.Redis(t)
		st, err := tracker.New(rdb, tracker.Config{Shards: 4, NoAutoPipeline: off})
		if err != nil {
			t.Fatal(err)
		}
		n := testenv.Notice("de-bka", fmt.Sprintf("REF-ap-%v", off), "videohost", pipeline.KindRemovalOrder)
		id := created(t, st, n)
		delivered(t, st, id, t0)
		// Read before Get, which pipelines its reads by itself.
		pp := rdb.PoolStats().PipelineStats
		used := pp != nil && pp.Hits+pp.Misses > 0
		if used == off {
			t.Errorf("NoAutoPipeline=%v: pipeline connections used by the scripts: %v", off, used)
		}
		if rec, err := st.Get(context.Background(), id); err != nil || rec.State != pipeline.StateDelivered {
			t.Fatalf("NoAutoPipeline=%v: %+v %v", off, rec, err)
		}
	}
}

func TestVersionsListsEveryNoticeOnce(t *testing.T) {
	st, rdb := newStore(t)
	ctx := context.Background()
	want := map[string]int64{}
	// More notices than one scan batch, at different versions.
	for i := range 1200 {
		id := created(t, st, testenv.Notice("de-bka", fmt.Sprintf("V-%04d", i), "videohost", pipeline.KindRemovalOrder))
		want[id] = 1
		if i%3 == 0 {
			delivered(t, st, id, t0)
			want[id] = 2
		}
	}
	// Keys that are not notice hashes are not notices.
	if err := rdb.Set(ctx, "td:{0}:n", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	err := st.Versions(ctx, func(id string, v int64) error {
		if _, dup := got[id]; dup {
			t.Errorf("notice %s listed twice", id)
		}
		got[id] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d notices listed, want %d", len(got), len(want))
	}
	for id, v := range want {
		if got[id] != v {
			t.Errorf("notice %s: version %d, want %d", id, got[id], v)
		}
	}
	stop := errors.New("stop")
	if err := st.Versions(ctx, func(string, int64) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("fn's error: got %v, want it returned", err)
	}
	ids := []string{pipeline.NoticeID("de-bka", "no-such-notice")}
	for id := range want {
		ids = append(ids, id)
	}
	created, err := st.CreatedAt(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(created) != len(want) {
		t.Fatalf("created times of %d notices, want %d", len(created), len(want))
	}
	for id, at := range created {
		if !at.Equal(t0) {
			t.Errorf("notice %s created %s, want %s", id, at, t0)
		}
	}
}
