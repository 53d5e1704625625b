package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/takedown-eu/takedown/metrics"
	"github.com/takedown-eu/takedown/notifier"
	"github.com/takedown-eu/takedown/pipeline"
)

// deliveryRecorder is the one path by which a notice reaches a provider
// and its receipt reaches the tracker; the intake worker and the scheduler
// both use it.
type deliveryRecorder struct {
	deliver Deliverer
	record  func(ctx context.Context, id string, now time.Time, window time.Duration, next time.Time) (time.Time, error)
	dir     *pipeline.Directory
	metrics *metrics.Metrics
}

// deliver sends the notice and records receipt. It returns nil when the
// notice is delivered (or was already), and an error worth retrying
// otherwise.
func (d *deliveryRecorder) run(ctx context.Context, id, provider string, kind pipeline.Kind, body []byte, attempt int) error {
	channel := "unknown"
	if p, ok := d.dir.Provider(provider); ok {
		channel = string(p.Channel)
	}
	receipt, err := d.deliver.Deliver(ctx, notifier.Delivery{NoticeID: id, Provider: provider, Kind: kind, Body: body, Attempt: attempt})
	if err != nil {
		d.metrics.Deliveries.WithLabelValues(channel, provider, "error").Inc()
		return fmt.Errorf("deliver: %w", err)
	}
	d.metrics.Deliveries.WithLabelValues(channel, provider, "delivered").Inc()
	policy := d.dir.Policy(kind)
	window := d.dir.Window(provider, kind)
	at := receipt.At
	next := policy.Plan(pipeline.Snapshot{
		State: pipeline.StateDelivered, Kind: kind, ClockStart: at, Deadline: at.Add(window),
		Window: window, Deliveries: attempt, LastDelivery: at,
	}, at).Next
	_, err = d.record(ctx, id, at, window, next)
	switch {
	case err == nil:
		d.metrics.Transitions.WithLabelValues(string(pipeline.EventDelivered)).Inc()
		return nil
	case errors.Is(err, pipeline.ErrDuplicate), errors.Is(err, pipeline.ErrIllegalTransition):
		// Delivered already, or withdrawn meanwhile: nothing left to do.
		return nil
	default:
		return fmt.Errorf("record delivery: %w", err)
	}
}
