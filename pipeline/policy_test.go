package pipeline_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/takedown-eu/takedown/pipeline"
)

var sortStrings = cmpopts.SortSlices(func(a, b string) bool { return a < b })

var d0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// walk runs the plan from the notice's first follow-up, applying each
// action at its time, and returns "offset action" lines.
func walk(p pipeline.Policy, s pipeline.Snapshot, until time.Duration) []string {
	var out []string
	now := s.CreatedAt
	for i := 0; i < 50; i++ {
		d := p.Plan(s, now)
		if d.Action != pipeline.FollowUpNone {
			out = append(out, now.Sub(d0).String()+" "+string(d.Action))
			s = s.Apply(d.Action, now)
		}
		if d.Next.IsZero() || d.Next.Sub(d0) > until {
			break
		}
		now = d.Next
	}
	return out
}

func TestPlanRemovalOrder(t *testing.T) {
	p := pipeline.DefaultPolicy(pipeline.KindRemovalOrder)
	delivered := pipeline.Snapshot{State: pipeline.StateDelivered, CreatedAt: d0, ClockStart: d0, Deadline: d0.Add(time.Hour),
		Window: time.Hour, Deliveries: 1, LastDelivery: d0}
	got := walk(p, delivered, 3*time.Hour)
	want := []string{
		"10m0s redeliver", "20m0s redeliver", "30m0s redeliver", "30m0s reminder", "40m0s redeliver",
		"51m0s reminder", "1h0m0s escalate", "2h0m0s follow_up", "3h0m0s follow_up",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("unacknowledged order (-want +got):\n%s", diff)
	}
	acked := delivered
	acked.State = pipeline.StateAcknowledged
	got = walk(p, acked, 2*time.Hour)
	want = []string{"30m0s reminder", "51m0s reminder", "1h0m0s escalate", "2h0m0s follow_up"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("acknowledged order (-want +got):\n%s", diff)
	}
}

func TestPlanEscalationWinsOverLateReminders(t *testing.T) {
	p := pipeline.DefaultPolicy(pipeline.KindRemovalOrder)
	// A scheduler that was down for the whole window escalates once and
	// does not send stale reminders afterwards.
	s := pipeline.Snapshot{State: pipeline.StateAcknowledged, ClockStart: d0, Deadline: d0.Add(time.Hour), Window: time.Hour, Deliveries: 1, LastDelivery: d0}
	d := p.Plan(s, d0.Add(5*time.Hour))
	if d.Action != pipeline.FollowUpEscalate || !d.Next.Equal(d0.Add(6*time.Hour)) {
		t.Fatalf("plan after a long outage = %+v", d)
	}
}

func TestPlanUndelivered(t *testing.T) {
	p := pipeline.DefaultPolicy(pipeline.KindRemovalOrder)
	s := pipeline.Snapshot{State: pipeline.StateReceived, CreatedAt: d0}
	got := walk(p, s, time.Hour)
	want := []string{"30s deliver", "1m0s deliver", "1m30s deliver", "2m0s deliver", "2m30s deliver", "3m0s fail"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestPlanBlockedAndTerminal(t *testing.T) {
	p := pipeline.DefaultPolicy(pipeline.KindRemovalOrder)
	blocked := pipeline.Snapshot{State: pipeline.StateBlocked, BlockedAt: d0}
	if got := walk(p, blocked, 13*time.Hour); !cmp.Equal(got, []string{"6h0m0s follow_up", "12h0m0s follow_up"}) {
		t.Errorf("blocked: %v", got)
	}
	for _, st := range []pipeline.State{pipeline.StateRemoved, pipeline.StateDeclined, pipeline.StateWithdrawn, pipeline.StateFailed} {
		d := p.Plan(pipeline.Snapshot{State: st}, d0)
		if d.Action != pipeline.FollowUpNone || !d.Next.IsZero() {
			t.Errorf("%s: plan %+v, want nothing ever", st, d)
		}
	}
	if !slices.Contains(pipeline.States, pipeline.StateFailed) || pipeline.StateFailed.Terminal() {
		t.Error("failed must be a known, open state")
	}
}

func TestPlanWebhookRetrySchedule(t *testing.T) {
	p := pipeline.DefaultPolicy(pipeline.KindRemovalOrder)
	p.RetrySchedule = []pipeline.Duration{pipeline.Duration(10 * time.Second), pipeline.Duration(time.Minute), pipeline.Duration(10 * time.Minute)}
	s := pipeline.Snapshot{ID: pipeline.NoticeID("de-bka", "R"), State: pipeline.StateReceived, CreatedAt: d0, Deliveries: 1, LastDelivery: d0}
	var gaps []time.Duration
	for n := 1; n <= 3; n++ {
		d := p.Plan(s, s.LastDelivery)
		if d.Action != pipeline.FollowUpNone {
			t.Fatalf("attempt %d: %s due at once", n, d.Action)
		}
		gap := d.Next.Sub(s.LastDelivery)
		want := p.RetrySchedule[n-1].D()
		if gap < want*9/10 || gap > want*11/10 {
			t.Errorf("retry %d after %v, want %v ± 10%%", n, gap, want)
		}
		gaps = append(gaps, gap)
		s = s.Apply(pipeline.FollowUpDeliver, d.Next)
	}
	if d := p.Plan(s, s.LastDelivery); d.Action != pipeline.FollowUpFail {
		t.Errorf("after the schedule: %+v, want fail", d)
	}
	// Jitter is deterministic per notice and attempt (planning stays a
	// pure function) and spreads different notices.
	first := pipeline.Snapshot{ID: pipeline.NoticeID("de-bka", "R"), State: pipeline.StateReceived, Deliveries: 1, LastDelivery: d0}
	if p.Plan(first, d0).Next.Sub(d0) != gaps[0] {
		t.Error("jitter is not deterministic")
	}
	spread := map[time.Duration]bool{}
	for i := range 20 {
		o := pipeline.Snapshot{ID: pipeline.NoticeID("de-bka", fmt.Sprint(i)), State: pipeline.StateReceived, Deliveries: 1, LastDelivery: d0}
		spread[p.Plan(o, d0).Next.Sub(d0)] = true
	}
	if len(spread) < 10 {
		t.Errorf("20 notices drew only %d distinct retry delays", len(spread))
	}
	// Retry-After wins over an earlier scheduled retry.
	s2 := pipeline.Snapshot{ID: "x", State: pipeline.StateReceived, Deliveries: 1, LastDelivery: d0, RetryNotBefore: d0.Add(2 * time.Minute)}
	if next := p.Plan(s2, d0).Next; !next.Equal(d0.Add(2 * time.Minute)) {
		t.Errorf("Retry-After ignored: next %v", next)
	}
}
