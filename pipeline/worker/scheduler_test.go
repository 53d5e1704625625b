package worker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/tracker"
)

func countType(evs []pipeline.Event, t pipeline.EventType) int {
	n := 0
	for _, e := range evs {
		if e.Type == t {
			n++
		}
	}
	return n
}

func TestDeadlinePassesAndEscalatesOnce(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.start(nil)
	id := h.submit(testenv.Notice("de-bka", "REF-deadline", "videohost", pipeline.KindRemovalOrder))
	h.waitState(id, pipeline.StateDelivered)
	h.feedback(simple(id, "videohost", pipeline.FeedbackAcknowledged))
	h.waitState(id, pipeline.StateAcknowledged)

	a, b := h.scheduler("a"), h.scheduler("b")
	step := func(to time.Duration) {
		t.Helper()
		h.clock.Set(t0.Add(to))
		// Two schedulers race for the same work on every step.
		var wg sync.WaitGroup
		for _, s := range []interface {
			RunOnce(context.Context) (int, error)
		}{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.RunOnce(ctx); err != nil {
					t.Errorf("scheduler: %v", err)
				}
			}()
		}
		wg.Wait()
	}
	step(29 * time.Minute) // nothing due yet
	step(30 * time.Minute) // 50 %: first reminder
	step(51 * time.Minute) // 85 %: second reminder
	step(59 * time.Minute)
	step(60 * time.Minute) // deadline: escalation
	step(60 * time.Minute)
	step(90 * time.Minute)
	step(120 * time.Minute) // an hour after escalation: follow-up
	step(121 * time.Minute)

	rec, _ := h.store.Get(ctx, id)
	if !rec.Overdue {
		t.Fatal("notice not flagged overdue after its deadline")
	}
	c, err := h.store.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.OverdueByProvider["videohost"] != 1 {
		t.Errorf("overdue gauge = %v, want 1 for videohost", c.OverdueByProvider)
	}
	evs := h.waitEvents(id, 7)
	want := []string{"received", "delivered", "acknowledged", "reminder", "reminder", "escalated", "follow_up"}
	if diff := cmp.Diff(want, eventTypes(evs)); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	if !evs[5].At.Equal(t0.Add(time.Hour)) || !evs[5].Overdue {
		t.Errorf("escalation %+v, want at the deadline with overdue set", evs[5])
	}
	if got := testutil.ToFloat64(h.metrics.FollowUps.WithLabelValues("escalate")); got != 1 {
		t.Errorf("escalations counted = %v, want 1", got)
	}

	// A late removal closes the notice and clears the overdue gauge.
	h.feedback(removed(id, "videohost", t0.Add(2*time.Hour)))
	h.waitState(id, pipeline.StateRemoved)
	c, _ = h.store.Counts(ctx)
	if c.OverdueByProvider["videohost"] != 0 {
		t.Errorf("overdue after removal = %v", c.OverdueByProvider)
	}
	evs = h.waitEvents(id, 8)
	if last := evs[7]; last.InTime == nil || *last.InTime {
		t.Errorf("late removal event %+v, want in_time false", last)
	}
}

func TestUnacknowledgedNoticeIsRedelivered(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.start(nil)
	id := h.submit(testenv.Notice("de-bka", "REF-redeliver", "videohost", pipeline.KindRemovalOrder))
	h.waitState(id, pipeline.StateDelivered)
	s := h.scheduler("a")
	h.clock.Set(t0.Add(10 * time.Minute)) // default redelivery interval
	if _, err := s.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := h.streamMsgs(bus.Deliver, h.bus.DeliverSubject("videohost"))
	if len(msgs) != 2 || msgs[1].Headers().Get("Nats-Msg-Id") != id+".d2" {
		t.Fatalf("deliver subject: %d messages, want the notice twice", len(msgs))
	}
	h.waitEvents(id, 3)
}

func TestKilledSchedulersClaimComesBack(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.start(nil)
	id := h.submit(testenv.Notice("de-bka", "REF-killed", "videohost", pipeline.KindRemovalOrder))
	h.waitState(id, pipeline.StateDelivered)
	h.feedback(simple(id, "videohost", pipeline.FeedbackAcknowledged))
	h.waitState(id, pipeline.StateAcknowledged)
	// Reminders out of the way.
	for _, at := range []time.Duration{30 * time.Minute, 51 * time.Minute} {
		h.clock.Set(t0.Add(at))
		if _, err := h.scheduler("a").RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Scheduler "dead" claims the escalation at the deadline and dies
	// before firing it.
	h.clock.Set(t0.Add(time.Hour))
	shard := tracker.ShardOf(id, h.store.Shards())
	ids, err := h.store.Claim(ctx, shard, h.clock.Now(), h.clock.Now().Add(30*time.Second), 10, "dead:1")
	if err != nil || len(ids) != 1 {
		t.Fatalf("claim: %v %v", ids, err)
	}
	rec, _ := h.store.Get(ctx, id)

	live := h.scheduler("live")
	if n, _ := live.RunOnce(ctx); n != 0 {
		t.Fatalf("claimed work fired by another scheduler during the lease (%d)", n)
	}
	h.clock.Advance(31 * time.Second)
	if n, err := live.RunOnce(ctx); err != nil || n != 1 {
		t.Fatalf("after the lease: fired %d (%v), want the escalation", n, err)
	}
	// The dead scheduler wakes up and tries to fire with its old claim.
	_, err = h.store.FollowUp(ctx, id, "dead:1", rec.Version, "escalate", h.clock.Now(), h.clock.Now().Add(time.Hour), pipeline.Event{}, nil)
	if !errors.Is(err, pipeline.ErrStale) {
		t.Fatalf("stale claim: got %v, want ErrStale", err)
	}
	if n, _ := live.RunOnce(ctx); n != 0 {
		t.Fatalf("escalation fired again (%d)", n)
	}
	evs := h.waitEvents(id, 6)
	if got := countType(evs, pipeline.EventEscalated); got != 1 {
		t.Fatalf("escalated %d times, want once: %v", got, eventTypes(evs))
	}
}

func TestUndeliverableNoticeFailsAndIsReplayable(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	// No workers: the notice is recorded but never delivered, as if the
	// intake worker died after creating it.
	n := testenv.Notice("de-bka", "REF-fail", "videohost", pipeline.KindRemovalOrder)
	body := testenv.JSON(n)
	if _, err := h.store.Create(ctx, &n, body, t0, t0.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	// The deliver stream is gone, so every delivery attempt fails.
	if err := h.js.DeleteStream(ctx, h.bus.StreamName(bus.Deliver)); err != nil {
		t.Fatal(err)
	}
	s := h.scheduler("a")
	for i := 1; i <= 6; i++ {
		h.clock.Advance(30 * time.Second)
		if _, err := s.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rec, _ := h.store.Get(ctx, n.ID())
	if rec.State != pipeline.StateFailed || rec.Deliveries != 5 {
		t.Fatalf("after exhausted delivery: state %s, %d attempts; want failed after 5", rec.State, rec.Deliveries)
	}
	// The operator repairs the stream and replays the notice.
	if _, err := h.store.Replay(ctx, n.ID(), h.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.New(ctx, h.js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	// A replayed notice is retried like a new one: within one retry
	// interval.
	h.clock.Advance(30 * time.Second)
	if _, err := s.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if st := h.state(n.ID()); st != pipeline.StateDelivered {
		t.Fatalf("after replay: %s, want delivered", st)
	}
}

// A due entry whose notice is gone from Redis (deleted, or lost with data
// Redis lost) is dropped by the first pass that claims it, instead of
// coming back with every lease.
func TestDueEntryOfAGoneNoticeIsDropped(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	n := testenv.Notice("de-bka", "REF-gone", "videohost", pipeline.KindRemovalOrder)
	if _, err := h.store.Create(ctx, &n, testenv.JSON(n), t0, t0.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("td:{%d}:", tracker.ShardOf(n.ID(), h.store.Shards()))
	if err := h.rdb.Del(ctx, prefix+"n:"+n.ID()).Err(); err != nil {
		t.Fatal(err)
	}
	h.clock.Set(t0.Add(time.Minute))
	if _, err := h.scheduler("a").RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.rdb.ZScore(ctx, prefix+"due", n.ID()).Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("due entry of the gone notice: %v, want none", err)
	}
	if held, _ := h.rdb.HExists(ctx, prefix+"claims", n.ID()).Result(); held {
		t.Error("claim of the gone notice kept")
	}
}
