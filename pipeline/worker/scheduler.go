package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/takedown-eu/takedown/metrics"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/tracker"
)

// Scheduler fires each notice's follow-ups when they fall due: delivery
// retries, redelivery while unacknowledged, reminders, escalation at the
// deadline (setting overdue) and slower follow-ups until a terminal state.
// Several schedulers may run: each claims due work under a lease, and only
// the latest claimant of a notice can fire it.
type Scheduler struct {
	Store      ScheduleStore
	Deliveries *Deliveries
	Dir        *pipeline.Directory
	Clock      pipeline.Clock
	Metrics    *metrics.Metrics
	Logger     *slog.Logger
	// Interval between passes. Default 1s.
	Interval time.Duration
	// Lease is how long claimed work stays hidden from other schedulers.
	// Default 30s.
	Lease time.Duration
	// Batch is how many notices one claim takes. Default 256.
	Batch int
	// Owner names this scheduler in claim tokens. Default a random id.
	Owner string
}

func (s *Scheduler) defaults() {
	if s.Interval == 0 {
		s.Interval = time.Second
	}
	if s.Lease == 0 {
		s.Lease = 30 * time.Second
	}
	if s.Batch == 0 {
		s.Batch = 256
	}
	if s.Owner == "" {
		s.Owner = uuid.NewString()
	}
}

// Run makes a pass every Interval until ctx ends. A pass in progress
// finishes before Run returns.
func (s *Scheduler) Run(ctx context.Context) error {
	s.defaults()
	log := s.Logger.With("component", "scheduler")
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	failing := false
	for {
		_, err := s.RunOnce(context.WithoutCancel(ctx))
		switch {
		case err != nil && !failing:
			log.Error("scheduler pass failed; retrying every interval", "err", err)
			failing = true
		case err == nil && failing:
			log.Info("scheduler passes succeed again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RunOnce claims and fires everything due now on every shard and returns
// how many follow-ups it fired.
func (s *Scheduler) RunOnce(ctx context.Context) (int, error) {
	s.defaults()
	fired := 0
	var errs []error
	for shard := range s.Store.Shards() {
		for {
			n, claimed, err := s.pass(ctx, shard)
			fired += n
			if err != nil {
				errs = append(errs, err)
				break
			}
			if claimed < s.Batch {
				break
			}
		}
	}
	return fired, errors.Join(errs...)
}

func (s *Scheduler) pass(ctx context.Context, shard int) (fired, claimed int, err error) {
	now := s.Clock.Now()
	token := s.Owner + ":" + uuid.NewString()
	ids, err := s.Store.Claim(ctx, shard, now, now.Add(s.Lease), s.Batch, token)
	if err != nil || len(ids) == 0 {
		return 0, 0, err
	}
	recs, err := s.Store.GetMany(ctx, ids)
	if err != nil {
		return 0, len(ids), err // the lease brings them back
	}
	for _, id := range ids {
		rec, ok := recs[id]
		if !ok {
			// Due, but the notice is gone (deleted from Redis, or lost
			// with data Redis lost): the follow-up script drops its due
			// entry and claim, which would otherwise come back with every
			// lease. (Stale: restored meanwhile; the next pass plans it.)
			_, err := s.Store.FollowUp(ctx, id, token, 0, "none", now, time.Time{}, pipeline.Event{}, nil)
			if err != nil && !errors.Is(err, pipeline.ErrNotFound) && !errors.Is(err, pipeline.ErrStale) {
				s.Logger.Warn("cannot drop the due entry of a notice that is gone; retried when its lease ends", "component", "scheduler", "notice", id, "err", err)
			}
			continue
		}
		did, err := s.fire(ctx, rec, token, now)
		if errors.Is(err, pipeline.ErrNotFound) {
			continue // gone meanwhile; the script dropped its due entry
		}
		if err != nil {
			s.Logger.Warn("follow-up failed; retried when its lease ends", "component", "scheduler", "notice", id, "err", err)
			continue
		}
		if did {
			fired++
		}
	}
	return fired, len(ids), nil
}

// fire plans and applies one notice's follow-up. It re-reads and re-plans
// when the notice changed since the claim.
func (s *Scheduler) fire(ctx context.Context, rec tracker.Record, token string, now time.Time) (bool, error) {
	for try := 0; try < 3; try++ {
		did, err := s.fireOnce(ctx, rec, token, now)
		if !errors.Is(err, pipeline.ErrStale) {
			return did, err
		}
		recs, gerr := s.Store.GetMany(ctx, []string{rec.ID})
		if gerr != nil {
			return false, gerr
		}
		var ok bool
		if rec, ok = recs[rec.ID]; !ok {
			return false, nil
		}
	}
	// Another scheduler holds the claim now, or the notice keeps changing:
	// leave it to the lease.
	return false, nil
}

func (s *Scheduler) fireOnce(ctx context.Context, rec tracker.Record, token string, now time.Time) (bool, error) {
	policy := s.Dir.PolicyFor(rec.Provider, rec.Kind)
	d := policy.Plan(rec.Snapshot, now)
	act := string(d.Action)
	switch d.Action {
	case pipeline.FollowUpNone:
		act = "none"
	case pipeline.FollowUpDeliver:
		// The outcome is recorded when the attempt finishes; until then the
		// claim's lease keeps other schedulers off.
		if s.Deliveries.start(ctx, target{rec: rec, attempt: rec.Deliveries + 1}) {
			s.Metrics.FollowUps.WithLabelValues(act).Inc()
			return true, nil
		}
		return false, nil
	case pipeline.FollowUpRedeliver:
		if s.Deliveries.start(ctx, target{rec: rec, attempt: rec.Deliveries + 1, redeliver: true, token: token, next: d.Next}) {
			return true, nil
		}
		return false, nil
	case pipeline.FollowUpFail:
		_, err := s.Store.Fail(ctx, rec.ID, token, rec.Version, now,
			fmt.Sprintf("delivery failed %d times", rec.Deliveries), nil)
		if err != nil {
			return false, err
		}
		s.Logger.Error("delivery exhausted; notice parked as failed", "component", "scheduler", "notice", rec.ID, "provider", rec.Provider)
		s.Metrics.FollowUps.WithLabelValues(act).Inc()
		s.Metrics.Transitions.WithLabelValues(string(pipeline.EventFailed)).Inc()
		return true, nil
	}
	if _, err := s.Store.FollowUp(ctx, rec.ID, token, rec.Version, act, now, d.Next, pipeline.Event{}, nil); err != nil {
		return false, err
	}
	if act == "none" {
		return false, nil
	}
	s.Metrics.FollowUps.WithLabelValues(act).Inc()
	s.Metrics.Transitions.WithLabelValues(string(followUpEvent(d.Action))).Inc()
	return true, nil
}

func followUpEvent(a pipeline.FollowUp) pipeline.EventType {
	switch a {
	case pipeline.FollowUpRedeliver:
		return pipeline.EventRedelivered
	case pipeline.FollowUpReminder:
		return pipeline.EventReminder
	case pipeline.FollowUpEscalate:
		return pipeline.EventEscalated
	default:
		return pipeline.EventFollowUp
	}
}
