package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/takedown-eu/takedown/metrics"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
)

// MaxClockSkew is how far in the future a provider's time of action may
// lie before the feedback is refused.
const MaxClockSkew = 5 * time.Minute

// Feedback consumes providers' feedback subjects and applies each report
// to the tracker. Feedback from the wrong provider, or for an unknown or
// closed notice, is parked with the reason and counted.
type Feedback struct {
	Bus      *bus.Bus
	Store    FeedbackStore
	Dir      *pipeline.Directory
	Clock    pipeline.Clock
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
	Workers  int
	Ready    func() bool
	Consumer bus.ConsumerConfig
}

// Run consumes until ctx ends, then drains in-flight messages.
func (w *Feedback) Run(ctx context.Context) error {
	return consume(ctx, w.Bus, bus.Feedback, "feedback", w.Consumer, w.Workers, w.Ready, w.Metrics, w.Logger, w.Clock, w.Handle)
}

// Handle processes one feedback message.
func (w *Feedback) Handle(ctx context.Context, msg jetstream.Msg) bus.Outcome {
	reject := func(reason string, err error) bus.Outcome {
		w.Metrics.Rejected.WithLabelValues("feedback", reason).Inc()
		return bus.Park(reason, err.Error())
	}
	subjectProvider := w.Bus.SubjectToken(msg.Subject())
	f, err := pipeline.DecodeFeedback(msg.Data())
	if err != nil {
		return reject("invalid", err)
	}
	if f.Provider != subjectProvider {
		return reject("provider_mismatch", fmt.Errorf("feedback names provider %q but was published on %s", f.Provider, msg.Subject()))
	}
	if _, ok := w.Dir.Provider(f.Provider); !ok {
		return reject("unknown_provider", fmt.Errorf("provider %q is not in the directory", f.Provider))
	}
	now := w.Clock.Now()
	if f.ActionAt != nil && f.ActionAt.After(now.Add(MaxClockSkew)) {
		return reject("invalid", &pipeline.ValidationError{What: "feedback", Fields: []pipeline.FieldError{{Field: "action_at", Problem: "lies in the future"}}})
	}
	applied, err := w.Store.ApplyFeedback(ctx, f, msgKey("f", msg), now)
	if out, done := transitionOutcome(w.Metrics, "feedback", err); done {
		return out
	}
	w.Metrics.Feedback.WithLabelValues(f.Provider, string(f.Type)).Inc()
	w.Metrics.Transitions.WithLabelValues(string(feedbackEvent(f))).Inc()
	if f.Type == pipeline.FeedbackRemoved || f.Type == pipeline.FeedbackDisabled {
		w.Metrics.TimeToRemoval.WithLabelValues(string(applied.Kind), f.Provider).Observe(applied.TimeToRemoval.Seconds())
		timeliness := "late"
		if applied.InTime {
			timeliness = "in_time"
		}
		w.Metrics.Removals.WithLabelValues(string(applied.Kind), f.Provider, timeliness).Inc()
	}
	return bus.Done()
}

func feedbackEvent(f pipeline.Feedback) pipeline.EventType {
	switch f.Type {
	case pipeline.FeedbackRemoved, pipeline.FeedbackDisabled:
		return pipeline.EventRemoved
	default:
		return pipeline.EventType(f.Type)
	}
}
