package worker_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/notifier"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
)

func TestRemovalOrderEndToEnd(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	n := testenv.Notice("de-bka", "BKA-TCO-2026-000123", "videohost", pipeline.KindRemovalOrder)
	id := h.submit(n)
	h.waitState(id, pipeline.StateDelivered)

	// The provider finds the notice on its deliver subject.
	msgs := h.streamMsgs(bus.Deliver, h.bus.DeliverSubject("videohost"))
	if len(msgs) != 1 {
		t.Fatalf("deliver subject holds %d messages, want 1", len(msgs))
	}
	got, err := pipeline.DecodeNotice(msgs[0].Data())
	if err != nil {
		t.Fatalf("delivered body: %v", err)
	}
	if diff := cmp.Diff(n, got); diff != "" {
		t.Errorf("delivered notice (-want +got):\n%s", diff)
	}
	if h := msgs[0].Headers(); h.Get("Nats-Msg-Id") != id || h.Get(notifier.HeaderNoticeID) != id {
		t.Errorf("deliver headers %v", h)
	}
	rec, _ := h.store.Get(context.Background(), id)
	if !rec.DeliveredAt.Equal(t0) || !rec.Deadline.Equal(t0.Add(time.Hour)) {
		t.Errorf("delivered at %v deadline %v, want %v and one hour later", rec.DeliveredAt, rec.Deadline, t0)
	}

	h.clock.Advance(time.Minute)
	h.feedback(simple(id, "videohost", pipeline.FeedbackAcknowledged))
	h.waitState(id, pipeline.StateAcknowledged)
	h.clock.Advance(20 * time.Minute)
	h.feedback(removed(id, "videohost", t0.Add(21*time.Minute)))
	h.waitState(id, pipeline.StateRemoved)

	evs := h.waitEvents(id, 4)
	want := []string{"received", "delivered", "acknowledged", "removed"}
	if diff := cmp.Diff(want, eventTypes(evs)); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	for i, e := range evs {
		if e.Version != int64(i+1) || e.ID != pipeline.EventID(id, int64(i+1)) || e.Issuer != "de-bka" || e.Provider != "videohost" {
			t.Errorf("event %d: %+v", i, e)
		}
	}
	last := evs[3]
	if last.InTime == nil || !*last.InTime || last.Seconds == nil || *last.Seconds != 21*60 || last.Outcome != pipeline.FeedbackRemoved {
		t.Errorf("removal event %+v", last)
	}
	if len(evs[0].Notice) == 0 {
		t.Error("received event carries no notice")
	}
	if got := testutil.ToFloat64(h.metrics.Removals.WithLabelValues("removal_order", "videohost", "in_time")); got != 1 {
		t.Errorf("in-time removals = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(h.metrics.TimeToRemoval); got != 1 {
		t.Errorf("time-to-removal series = %d, want 1", got)
	}
}

func TestDuplicateAndConflictingSubmissions(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	n := testenv.Notice("de-bka", "REF-dup", "videohost", pipeline.KindRemovalOrder)
	id := h.submit(n)
	h.waitState(id, pipeline.StateDelivered)
	// The same notice again, under another message id so that JetStream's
	// own deduplication does not hide it from the pipeline.
	h.publish(h.bus.IntakeSubject("de-bka"), "retry-1", n)
	testenv.WaitFor(t, 10*time.Second, "duplicate counted", func() bool {
		return testutil.ToFloat64(h.metrics.Duplicates.WithLabelValues("de-bka")) == 1
	})
	conflicting := n
	conflicting.Content = []pipeline.ContentItem{{URL: "https://elsewhere.example/x"}}
	h.publish(h.bus.IntakeSubject("de-bka"), "retry-2", conflicting)
	testenv.WaitFor(t, 10*time.Second, "conflict parked", func() bool {
		return testutil.ToFloat64(h.metrics.Rejected.WithLabelValues("intake", "conflict")) == 1
	})
	parked := h.parkedMsgs(h.bus.Prefix()+".parked.intake.de-bka", 1)
	if len(parked) != 1 || parked[0].Headers().Get(bus.HeaderParkReason) != "conflict" ||
		!strings.Contains(parked[0].Headers().Get(bus.HeaderParkDetail), id) {
		t.Fatalf("parked: %d messages, headers %v", len(parked), parked[0].Headers())
	}
	if got := len(h.streamMsgs(bus.Deliver, h.bus.DeliverSubject("videohost"))); got != 1 {
		t.Errorf("provider received %d copies, want 1", got)
	}
	rec, _ := h.store.Get(context.Background(), id)
	if rec.Fingerprint != n.Fingerprint() || rec.State != pipeline.StateDelivered {
		t.Errorf("original changed: %+v", rec)
	}
	if got := testutil.ToFloat64(h.metrics.NoticesReceived.WithLabelValues("removal_order", "de-bka")); got != 1 {
		t.Errorf("received = %v, want 1", got)
	}
}

func TestRejectedInputsAreParkedWithReason(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	n := testenv.Notice("de-bka", "REF-ok", "videohost", pipeline.KindRemovalOrder)
	id := h.submit(n)
	h.waitState(id, pipeline.StateDelivered)

	wrongIssuer := testenv.Notice("fr-pharos", "REF-x", "videohost", pipeline.KindRemovalOrder)
	unknownProvider := testenv.Notice("de-bka", "REF-y", "nosuchhost", pipeline.KindRemovalOrder)
	unknownIssuer := testenv.Notice("xx-unknown", "REF-z", "videohost", pipeline.KindRemovalOrder)
	h.publish(h.bus.IntakeSubject("de-bka"), "", []byte(`{"schema":"takedown.notice/v1","kind":"removal_order","issuer":"de-bka"`))
	h.publish(h.bus.IntakeSubject("de-bka"), "", wrongIssuer)
	h.publish(h.bus.IntakeSubject("de-bka"), "", unknownProvider)
	h.publish(h.bus.IntakeSubject("xx-unknown"), "", unknownIssuer)
	h.feedback(simple(id, "filedrop", pipeline.FeedbackAcknowledged))                         // not its notice
	h.publish(h.bus.FeedbackSubject("filedrop"), "", simple(id, "videohost", "acknowledged")) // subject and body disagree
	h.feedback(removed(pipeline.NoticeID("de-bka", "never"), "videohost", t0))                // unknown notice
	h.publish(h.bus.FeedbackSubject("videohost"), "", []byte(`{"schema":"takedown.feedback/v1","notice_id":"`+id+`","provider":"videohost","type":"removed"}`))

	want := map[string]float64{
		"intake/invalid": 1, "intake/issuer_mismatch": 1, "intake/unknown_provider": 1, "intake/unknown_issuer": 1,
		"feedback/forbidden": 1, "feedback/provider_mismatch": 1, "feedback/unknown_notice": 1, "feedback/invalid": 1,
	}
	got := map[string]float64{}
	testenv.WaitFor(t, 10*time.Second, "all rejections counted", func() bool {
		for k := range want {
			src, reason, _ := strings.Cut(k, "/")
			got[k] = testutil.ToFloat64(h.metrics.Rejected.WithLabelValues(src, reason))
		}
		return cmp.Equal(want, got)
	})
	parked := h.parkedMsgs(h.bus.Prefix()+".parked.>", len(want))
	if len(parked) != len(want) {
		t.Fatalf("parked %d messages, want %d", len(parked), len(want))
	}
	for _, m := range parked {
		if m.Headers().Get(bus.HeaderParkReason) == "invalid" && strings.HasPrefix(m.Subject(), "takedown.parked.feedback") &&
			!strings.Contains(m.Headers().Get(bus.HeaderParkDetail), "action_at") {
			t.Errorf("invalid feedback parked without naming the field: %q", m.Headers().Get(bus.HeaderParkDetail))
		}
	}
	if st := h.state(id); st != pipeline.StateDelivered {
		t.Errorf("state after rejected feedback = %s, want delivered", st)
	}
}

func TestBlockedResumedWithdrawn(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	a := h.submit(testenv.Notice("de-bka", "REF-block", "videohost", pipeline.KindRemovalOrder))
	b := h.submit(testenv.Notice("de-bka", "REF-withdraw", "videohost", pipeline.KindRemovalOrder))
	h.waitState(a, pipeline.StateDelivered)
	h.waitState(b, pipeline.StateDelivered)

	blocked := simple(a, "videohost", pipeline.FeedbackBlocked)
	blocked.Ground, blocked.Explanation = pipeline.GroundInsufficientInfo, "which account?"
	h.feedback(blocked)
	h.waitState(a, pipeline.StateBlocked)
	h.clock.Advance(2 * time.Hour)
	clarify := pipeline.Action{Schema: pipeline.ActionSchema, NoticeID: a, Issuer: "de-bka", Type: pipeline.ActionClarify, Explanation: "account 'x'"}
	h.publish(h.bus.IntakeSubject("de-bka"), "", clarify)
	h.waitState(a, pipeline.StateAcknowledged)
	rec, _ := h.store.Get(context.Background(), a)
	if !rec.Deadline.Equal(t0.Add(3 * time.Hour)) {
		t.Errorf("deadline after clarification = %v, want %v", rec.Deadline, t0.Add(3*time.Hour))
	}

	withdraw := pipeline.Action{Schema: pipeline.ActionSchema, NoticeID: b, Issuer: "de-bka", Type: pipeline.ActionWithdraw}
	h.publish(h.bus.IntakeSubject("de-bka"), "", withdraw)
	h.waitState(b, pipeline.StateWithdrawn)
	h.feedback(removed(b, "videohost", t0))
	testenv.WaitFor(t, 10*time.Second, "removal of a withdrawn notice refused", func() bool {
		return testutil.ToFloat64(h.metrics.Rejected.WithLabelValues("feedback", "illegal_transition")) == 1
	})
	evs := h.waitEvents(a, 4)
	if diff := cmp.Diff([]string{"received", "delivered", "blocked", "clarified"}, eventTypes(evs)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if evs[2].Ground != pipeline.GroundInsufficientInfo || evs[2].Deadline != nil {
		t.Errorf("blocked event: %+v", evs[2])
	}
	var body map[string]any
	_ = json.Unmarshal(evs[0].Notice, &body)
	if body["reference"] != "REF-block" {
		t.Errorf("received event notice: %v", body)
	}
}

func TestFeedbackOvertakingItsDeliveryRecordIsApplied(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.start(nil)
	// The notice is recorded but its delivery not yet: the provider's
	// removal arrives first and must be retried, not refused.
	n := testenv.Notice("de-bka", "REF-early", "videohost", pipeline.KindRemovalOrder)
	if _, err := h.store.Create(ctx, &n, testenv.JSON(n), t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	h.feedback(removed(n.ID(), "videohost", t0.Add(time.Second)))
	testenv.WaitFor(t, 10*time.Second, "the early removal retried", func() bool {
		return testutil.ToFloat64(h.metrics.Removals.WithLabelValues("removal_order", "videohost", "in_time")) == 0 && h.state(n.ID()) == pipeline.StateReceived
	})
	if _, err := h.store.Delivered(ctx, n.ID(), t0, time.Hour, t0.Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	h.waitState(n.ID(), pipeline.StateRemoved)
	if got := len(h.streamMsgs(bus.Parked, "takedown.parked.>")); got != 0 {
		t.Fatalf("%d messages parked", got)
	}
}

// Feedback workers take a provider's messages concurrently, so its
// "removed" can be applied before its "acknowledged". The late
// acknowledgement changes nothing and is not refused: refusing it would
// park a well-behaved provider's message and page an operator.
func TestAcknowledgementOvertakenByRemovalIsNotRefused(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	id := h.deliveredOrder("BKA-OVERTAKEN-1")
	h.feedback(removed(id, "videohost", t0))
	h.waitState(id, pipeline.StateRemoved)
	h.feedback(simple(id, "videohost", pipeline.FeedbackAcknowledged))
	ctx := context.Background()
	testenv.WaitFor(t, 10*time.Second, "the acknowledgement taken off the feedback stream", func() bool {
		st, err := h.js.Stream(ctx, h.bus.StreamName(bus.Feedback))
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs == 0
	})
	if got := testutil.ToFloat64(h.metrics.Rejected.WithLabelValues("feedback", "illegal_transition")); got != 0 {
		t.Errorf("late acknowledgement refused (%v rejections)", got)
	}
	st, err := h.js.Stream(ctx, h.bus.StreamName(bus.Parked))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Errorf("parked stream holds %d messages (%v), want none", info.State.Msgs, err)
	}
	if got := h.state(id); got != pipeline.StateRemoved {
		t.Errorf("state %s, want removed", got)
	}
	if diff := cmp.Diff([]string{"received", "delivered", "removed"}, eventTypes(h.waitEvents(id, 3))); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// feedbackDeliveries is how many feedback messages the feedback consumers
// have been handed, redeliveries included.
func (h *harness) feedbackDeliveries() uint64 {
	h.t.Helper()
	ctx := context.Background()
	st, err := h.js.Stream(ctx, h.bus.StreamName(bus.Feedback))
	if err != nil {
		h.t.Fatal(err)
	}
	var n uint64
	cl := st.ListConsumers(ctx)
	for ci := range cl.Info() {
		n += ci.Delivered.Consumer
	}
	if err := cl.Err(); err != nil {
		h.t.Fatal(err)
	}
	return n
}

// A provider's "resumed" applied before its "blocked" (feedback workers
// take a provider's messages concurrently) is tried again shortly instead
// of refused: once the block is applied, the resume is too, and the clock
// runs again.
func TestResumedOvertakingBlockedIsAppliedAfterIt(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	id := h.deliveredOrder("BKA-RESUME-FIRST")
	before := h.feedbackDeliveries()
	h.feedback(simple(id, "videohost", pipeline.FeedbackResumed))
	// The resume has been tried and refused for now at least once when it
	// is handed out a second time.
	testenv.WaitFor(t, 10*time.Second, "the resume handed out again", func() bool { return h.feedbackDeliveries() >= before+2 })
	if got := h.state(id); got != pipeline.StateDelivered {
		t.Fatalf("state %s after the early resume, want delivered", got)
	}
	blocked := simple(id, "videohost", pipeline.FeedbackBlocked)
	blocked.Ground, blocked.Explanation = pipeline.GroundForceMajeure, "data centre flooded"
	h.feedback(blocked)
	if diff := cmp.Diff([]string{"received", "delivered", "blocked", "resumed"}, eventTypes(h.waitEvents(id, 4))); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	h.waitState(id, pipeline.StateAcknowledged)
	if rec, err := h.store.Get(context.Background(), id); err != nil || rec.Deadline.IsZero() {
		t.Errorf("after the resume the clock runs again: deadline %v (%v)", rec.Deadline, err)
	}
	if got := testutil.ToFloat64(h.metrics.Rejected.WithLabelValues("feedback", "illegal_transition")); got != 0 {
		t.Errorf("the early resume was refused (%v rejections)", got)
	}
}

// A "resumed" for a notice that was never blocked is still refused and
// parked, once the tries for an overtaken block are used up.
func TestResumedWithoutBlockIsParked(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	id := h.deliveredOrder("BKA-RESUME-NEVER")
	h.feedback(simple(id, "videohost", pipeline.FeedbackResumed))
	msgs := h.parkedMsgs(h.bus.Prefix()+".parked.>", 1)
	if got := msgs[0].Headers().Get(bus.HeaderParkReason); got != "illegal_transition" {
		t.Errorf("parked with reason %q, want illegal_transition", got)
	}
	if got := testutil.ToFloat64(h.metrics.Rejected.WithLabelValues("feedback", "illegal_transition")); got != 1 {
		t.Errorf("%v rejections counted, want 1 (one per message, not per try)", got)
	}
	if got := h.state(id); got != pipeline.StateDelivered {
		t.Errorf("state %s, want delivered", got)
	}
}
