package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/takedown-eu/takedown/metrics"
	"github.com/takedown-eu/takedown/notifier"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/tracker"
)

// Deliveries is the one path by which a notice reaches its provider and
// each attempt's outcome reaches the tracker; the intake worker and the
// scheduler share it. Outcomes arrive asynchronously for channels with
// lanes (webhook) and at once for nats.
type Deliveries struct {
	Dispatch Dispatcher
	Store    DeliveryStore
	Dir      *pipeline.Directory
	Clock    pipeline.Clock
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
	// System publishes operator-visible events that concern no notice
	// (an endpoint disabled). May be nil.
	System SystemEvents
}

// target is one delivery attempt to make.
type target struct {
	rec     tracker.Record // what the tracker knew when the attempt began
	attempt int
	// Redeliveries of a delivered notice carry the scheduler's claim.
	redeliver bool
	token     string
	next      time.Time
	// recordErr, if set, receives (without blocking) an error recording
	// the outcome: the intake worker retries its message on it when the
	// attempt ran synchronously.
	recordErr chan<- error
}

// start dispatches the attempt; false means it could not even be queued
// (the provider's queue is full) and is left to the scheduler.
func (d *Deliveries) start(ctx context.Context, t target) bool {
	del := notifier.Delivery{NoticeID: t.rec.ID, Provider: t.rec.Provider, Kind: t.rec.Kind, Body: t.rec.Body, Attempt: t.attempt}
	ok := d.Dispatch.Dispatch(ctx, del, func(r notifier.Receipt, err error) { d.finish(t, r, err) })
	if !ok {
		d.Metrics.Deliveries.WithLabelValues(d.Dispatch.Channel(t.rec.Provider), t.rec.Provider, "queue_full").Inc()
	}
	return ok
}

// finish records an attempt's outcome. Errors recording it are logged: the
// notice stays due in the tracker and is taken up again by the scheduler.
func (d *Deliveries) finish(t target, r notifier.Receipt, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, provider := t.rec.ID, t.rec.Provider
	ch := d.Dispatch.Channel(provider)
	now := d.Clock.Now()
	att := &tracker.Attempt{N: t.attempt, At: now, Channel: ch, Status: r.Status, Seconds: r.Latency.Seconds()}
	if r.Latency > 0 {
		d.Metrics.AttemptSeconds.WithLabelValues(ch, provider).Observe(r.Latency.Seconds())
	}
	log := d.Logger.With("component", "delivery", "notice", id, "provider", provider, "attempt", t.attempt)
	if err == nil {
		d.Metrics.Deliveries.WithLabelValues(ch, provider, "delivered").Inc()
		if t.redeliver {
			if _, ferr := d.Store.FollowUp(ctx, id, t.token, t.rec.Version, string(pipeline.FollowUpRedeliver), now, t.next, pipeline.Event{}, att); ferr == nil {
				d.Metrics.FollowUps.WithLabelValues(string(pipeline.FollowUpRedeliver)).Inc()
				d.Metrics.Transitions.WithLabelValues(string(pipeline.EventRedelivered)).Inc()
			} else if !errors.Is(ferr, pipeline.ErrStale) {
				log.Warn("redelivery not recorded", "err", ferr)
			}
			return
		}
		policy := d.Dir.PolicyFor(provider, t.rec.Kind)
		window := policy.Window.D()
		next := policy.Plan(pipeline.Snapshot{
			ID: id, State: pipeline.StateDelivered, Kind: t.rec.Kind, ClockStart: r.At, Deadline: r.At.Add(window),
			Window: window, Deliveries: t.attempt, LastDelivery: r.At,
		}, r.At).Next
		_, derr := d.Store.Delivered(ctx, id, r.At, window, next, att)
		switch {
		case derr == nil:
			d.Metrics.Transitions.WithLabelValues(string(pipeline.EventDelivered)).Inc()
		case errors.Is(derr, pipeline.ErrDuplicate), errors.Is(derr, pipeline.ErrIllegalTransition):
			// Delivered already by another attempt, or withdrawn meanwhile.
		default:
			log.Warn("delivery not recorded; it is delivered again", "err", derr)
			t.report(derr)
		}
		return
	}

	ae := notifier.Classify(err)
	att.Error = ae.Error()
	outcome := "retry"
	switch {
	case errors.Is(err, notifier.ErrCircuitOpen):
		outcome = "circuit_open"
	case ae.Gone:
		outcome = "gone"
	case ae.Permanent:
		outcome = "failed"
	}
	d.Metrics.Deliveries.WithLabelValues(ch, provider, outcome).Inc()
	if t.redeliver {
		if _, ferr := d.Store.FollowUp(ctx, id, t.token, t.rec.Version, "attempt", now, t.next, pipeline.Event{}, att); ferr != nil && !errors.Is(ferr, pipeline.ErrStale) {
			log.Warn("failed redelivery not recorded", "err", ferr)
		}
		return
	}
	if ae.Gone {
		d.disableEndpoint(ctx, provider, att.Error, now, log)
	}
	if ae.Permanent {
		if _, ferr := d.Store.Fail(ctx, id, "", 0, now, "delivery refused: "+att.Error, att); ferr == nil {
			log.Error("delivery refused for good; notice parked as failed", "err", att.Error)
			d.Metrics.Transitions.WithLabelValues(string(pipeline.EventFailed)).Inc()
		} else if !errors.Is(ferr, pipeline.ErrIllegalTransition) {
			log.Warn("failure not recorded", "err", ferr)
		}
		return
	}
	snap := t.rec.Snapshot
	snap.State, snap.Deliveries, snap.LastDelivery = pipeline.StateReceived, t.attempt, now
	var notBefore time.Time
	if ae.RetryAfter > 0 {
		notBefore = now.Add(ae.RetryAfter)
		snap.RetryNotBefore = notBefore
	}
	next := d.Dir.PolicyFor(provider, t.rec.Kind).Plan(snap, now).Next
	if next.IsZero() || next.Before(now) {
		next = now
	}
	log.Debug("delivery attempt failed; retry scheduled", "err", att.Error, "next", next)
	if aerr := d.Store.AttemptFailed(ctx, id, now, *att, next, notBefore); aerr != nil && !errors.Is(aerr, pipeline.ErrDuplicate) {
		log.Warn("failed attempt not recorded", "err", aerr)
		t.report(aerr)
	}
}

func (t target) report(err error) {
	if t.recordErr != nil {
		select {
		case t.recordErr <- err:
		default:
		}
	}
}

func (d *Deliveries) disableEndpoint(ctx context.Context, provider, reason string, now time.Time, log *slog.Logger) {
	log.Error("webhook endpoint answered 410 Gone: disabled until an operator enables it", "reason", reason)
	d.Metrics.EndpointsDisabled.WithLabelValues(provider).Inc()
	if err := d.Store.DisableEndpoint(ctx, provider, tracker.DisabledEndpoint{Since: now, Reason: reason}); err != nil {
		log.Error("cannot record the disabled endpoint", "err", err)
	}
	if d.System != nil {
		if err := d.System.PublishSystem(ctx, provider, "endpoint_disabled", reason, now); err != nil {
			log.Error("cannot publish the endpoint_disabled event", "err", err)
		}
	}
}

// SystemEvents publishes operator-visible events that concern no single
// notice. *bus.Bus implements it.
type SystemEvents interface {
	PublishSystem(ctx context.Context, provider, typ, detail string, at time.Time) error
}
