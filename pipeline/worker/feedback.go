package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/takedown-eu/takedown/metrics"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/tracker"
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
	f, err := pipeline.DecodeFeedback(msg.Data())
	if err != nil {
		w.Metrics.Rejected.WithLabelValues("feedback", "invalid").Inc()
		return bus.Park("invalid", err.Error())
	}
	err = w.apply(ctx, "feedback", f, w.Bus.SubjectToken(msg.Subject()), msgKey("f", msg), true)
	var rej *Rejection
	switch {
	case err == nil, errors.Is(err, pipeline.ErrDuplicate):
		return bus.Done()
	case errors.As(err, &rej):
		return bus.Park(rej.Reason, rej.Error())
	case errors.Is(err, tracker.ErrNotYetDelivered):
		// The provider answered before the delivery record was written,
		// which takes milliseconds: look again soon, then back off.
		return bus.Retry(earlyBackoff(deliveries(msg)), err)
	case errors.Is(err, errMayHaveOvertaken):
		if n := deliveries(msg); n < overtakeTries {
			return bus.Retry(earlyBackoff(n), err)
		}
		w.Metrics.Rejected.WithLabelValues("feedback", "illegal_transition").Inc()
		return bus.Park("illegal_transition", err.Error())
	default:
		return bus.Retry(0, err)
	}
}

// deliveries is how many times msg has been delivered (1 when unknown).
func deliveries(msg jetstream.Msg) int {
	if meta, err := msg.Metadata(); err == nil {
		return int(meta.NumDelivered)
	}
	return 1
}

// earlyBackoff is the retry delay of feedback that overtook its delivery
// record, after n deliveries: 25ms doubling up to 30s.
func earlyBackoff(n int) time.Duration { return bus.BackoffFrom(25*time.Millisecond, n) }

// Feedback workers take a provider's messages concurrently, so a
// "resumed" sent right after its "blocked" can be applied first, when the
// notice is not blocked yet. Refused at once, it would be parked and the
// notice would stay blocked — its clock stopped — until an operator
// replayed it. It is tried overtakeTries times instead (25 ms doubling:
// about 3 s in all), and only then parked as an illegal transition.
const overtakeTries = 8

// errMayHaveOvertaken marks a refusal that may only be early (see
// overtakeTries).
var errMayHaveOvertaken = errors.New("may have overtaken the feedback it answers")

// mayHaveOvertaken reports whether err refused f only because f came
// before the feedback it follows: a provider's "resumed" while the notice
// is still in a state its "blocked" moves it out of.
func mayHaveOvertaken(f pipeline.Feedback, err error) bool {
	var it *tracker.IllegalTransition
	return f.Type == pipeline.FeedbackResumed && errors.As(err, &it) &&
		(it.State == pipeline.StateDelivered || it.State == pipeline.StateAcknowledged)
}

// Rejection is feedback or an action refused for good, with a short reason
// from a bounded set (it labels metrics and parked messages).
type Rejection struct {
	Reason string
	Err    error
}

func (r *Rejection) Error() string { return r.Err.Error() }
func (r *Rejection) Unwrap() error { return r.Err }

// refuser returns the function that counts a refusal from source and
// wraps it as a *Rejection.
func refuser(m *metrics.Metrics, source string) func(reason string, err error) error {
	return func(reason string, err error) error {
		m.Rejected.WithLabelValues(source, reason).Inc()
		return &Rejection{Reason: reason, Err: err}
	}
}

// Apply applies decoded feedback sent by principal (the provider the
// transport authenticated: the NATS subject's, or the HTTP token's).
// source labels the metrics ("feedback", "http"). It returns nil when
// applied, an error matching pipeline.ErrDuplicate when already applied, a
// *Rejection when refused, and any other error when it should be retried.
func (w *Feedback) Apply(ctx context.Context, source string, f pipeline.Feedback, principal, msgKey string) error {
	return w.apply(ctx, source, f, principal, msgKey, false)
}

// apply is Apply; with retryable, feedback that may only have overtaken
// the feedback it answers (mayHaveOvertaken) is returned as
// errMayHaveOvertaken instead of refused, for the caller to try again.
func (w *Feedback) apply(ctx context.Context, source string, f pipeline.Feedback, principal, msgKey string, retryable bool) error {
	reject := refuser(w.Metrics, source)
	if f.Provider != principal {
		return reject("provider_mismatch", fmt.Errorf("feedback names provider %q but comes from %q: %w", f.Provider, principal, pipeline.ErrForbidden))
	}
	if _, ok := w.Dir.Provider(f.Provider); !ok {
		return reject("unknown_provider", fmt.Errorf("provider %q is not in the directory: %w", f.Provider, pipeline.ErrUnknownPrincipal))
	}
	now := w.Clock.Now()
	if f.ActionAt != nil && f.ActionAt.After(now.Add(MaxClockSkew)) {
		return reject("invalid", &pipeline.ValidationError{What: "feedback", Fields: []pipeline.FieldError{{Field: "action_at", Problem: "lies in the future"}}})
	}
	applied, err := w.Store.ApplyFeedback(ctx, f, msgKey, now)
	if err != nil {
		if retryable && mayHaveOvertaken(f, err) {
			return fmt.Errorf("%w: %w", errMayHaveOvertaken, err)
		}
		if reason, refused := rejectionReason(err); refused {
			return reject(reason, err)
		}
		return err
	}
	w.Metrics.Feedback.WithLabelValues(f.Provider, string(f.Type), string(f.Ground)).Inc()
	w.Metrics.Transitions.WithLabelValues(string(feedbackEvent(f))).Inc()
	if f.Type == pipeline.FeedbackRemoved || f.Type == pipeline.FeedbackDisabled {
		w.Metrics.TimeToRemoval.WithLabelValues(string(applied.Kind), f.Provider).Observe(applied.TimeToRemoval.Seconds())
		timeliness := "late"
		if applied.InTime {
			timeliness = "in_time"
		}
		w.Metrics.Removals.WithLabelValues(string(applied.Kind), f.Provider, timeliness).Inc()
	}
	return nil
}

func feedbackEvent(f pipeline.Feedback) pipeline.EventType {
	switch f.Type {
	case pipeline.FeedbackRemoved, pipeline.FeedbackDisabled:
		return pipeline.EventRemoved
	default:
		return pipeline.EventType(f.Type)
	}
}
