package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/takedown-eu/takedown/metrics"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/tracker"
)

// Intake consumes issuers' intake subjects: it validates each notice,
// records it in the tracker (deduplicated by its derived id), delivers it
// to the provider and starts the clock. Issuer actions (withdraw, clarify)
// travel the same subjects. What cannot be processed is parked with a
// reason, never dropped.
type Intake struct {
	Bus        *bus.Bus
	Store      IntakeStore
	Deliveries *Deliveries
	Dir        *pipeline.Directory
	Clock      pipeline.Clock
	Metrics    *metrics.Metrics
	Logger     *slog.Logger
	Workers    int
	Ready      func() bool
	Consumer   bus.ConsumerConfig
}

// Run consumes until ctx ends, then drains in-flight messages.
func (w *Intake) Run(ctx context.Context) error {
	return consume(ctx, w.Bus, bus.Intake, "intake", w.Consumer, w.Workers, w.Ready, w.Metrics, w.Logger, w.Clock, w.Handle)
}

func (w *Intake) reject(reason string, err error) bus.Outcome {
	w.Metrics.Rejected.WithLabelValues("intake", reason).Inc()
	return bus.Park(reason, err.Error())
}

// Handle processes one intake message.
func (w *Intake) Handle(ctx context.Context, msg jetstream.Msg) bus.Outcome {
	subjectIssuer := w.Bus.SubjectToken(msg.Subject())
	in, err := pipeline.DecodeIntake(msg.Data())
	if err != nil {
		return w.reject("invalid", err)
	}
	if in.Action != nil {
		return w.action(ctx, msg, *in.Action, subjectIssuer)
	}
	n := in.Notice
	if n.Issuer != subjectIssuer {
		return w.reject("issuer_mismatch", fmt.Errorf("notice names issuer %q but was published on %s", n.Issuer, msg.Subject()))
	}
	if _, ok := w.Dir.Issuer(n.Issuer); !ok {
		return w.reject("unknown_issuer", fmt.Errorf("issuer %q is not in the directory", n.Issuer))
	}
	if _, ok := w.Dir.Provider(n.Provider); !ok {
		return w.reject("unknown_provider", fmt.Errorf("provider %q is not in the directory", n.Provider))
	}
	id := n.ID()
	body := n.JSON()
	now := w.Clock.Now()
	rec := tracker.Record{Snapshot: pipeline.Snapshot{ID: id, State: pipeline.StateReceived, Kind: n.Kind, Issuer: n.Issuer, Provider: n.Provider, CreatedAt: now}, Body: body}
	_, err = w.Store.Create(ctx, n, body, now, now.Add(w.Dir.PolicyFor(n.Provider, n.Kind).RetryDeliveryEvery.D()))
	switch {
	case err == nil:
		w.Metrics.NoticesReceived.WithLabelValues(string(n.Kind), n.Issuer).Inc()
		w.Metrics.Transitions.WithLabelValues(string(pipeline.EventReceived)).Inc()
	case errors.Is(err, pipeline.ErrDuplicate):
		w.Metrics.Duplicates.WithLabelValues(n.Issuer).Inc()
		var gerr error
		if rec, gerr = w.Store.Get(ctx, id); gerr != nil {
			return bus.Retry(0, gerr)
		}
		if rec.State != pipeline.StateReceived {
			return bus.Done()
		}
		// Accepted earlier but not yet delivered (a crash in between):
		// finish the job.
	case errors.Is(err, pipeline.ErrConflict):
		w.Logger.Warn("conflicting submission refused; the original notice is untouched",
			"component", "intake", "notice", id, "issuer", n.Issuer, "reference", n.Reference)
		return w.reject("conflict", fmt.Errorf("notice %s (issuer %s, reference %q) exists with different content: %w", id, n.Issuer, n.Reference, err))
	default:
		return bus.Retry(0, err)
	}
	// The notice is recorded and due for the scheduler: whatever becomes of
	// this first attempt (now for nats, soon from the provider's lane for
	// webhooks), the intake message is done.
	recordErr := make(chan error, 1)
	w.Deliveries.start(ctx, target{rec: rec, attempt: rec.Deliveries + 1, recordErr: recordErr})
	select {
	case err := <-recordErr:
		// A synchronous attempt whose outcome could not be recorded (Redis
		// went away): take the message again rather than wait for the
		// scheduler.
		return bus.Retry(0, err)
	default:
		return bus.Done()
	}
}

func (w *Intake) action(ctx context.Context, msg jetstream.Msg, a pipeline.Action, subjectIssuer string) bus.Outcome {
	err := w.ApplyAction(ctx, "intake", a, subjectIssuer, msgKey("i", msg))
	var rej *Rejection
	switch {
	case err == nil, errors.Is(err, pipeline.ErrDuplicate):
		return bus.Done()
	case errors.As(err, &rej):
		return bus.Park(rej.Reason, rej.Error())
	default:
		return bus.Retry(0, err)
	}
}

// ApplyAction applies an issuer's withdrawal or clarification sent by
// principal (the issuer the transport authenticated). The error contract
// is that of Feedback.Apply.
func (w *Intake) ApplyAction(ctx context.Context, source string, a pipeline.Action, principal, msgKey string) error {
	reject := refuser(w.Metrics, source)
	if a.Issuer != principal {
		return reject("issuer_mismatch", fmt.Errorf("action names issuer %q but comes from %q: %w", a.Issuer, principal, pipeline.ErrForbidden))
	}
	if _, ok := w.Dir.Issuer(a.Issuer); !ok {
		return reject("unknown_issuer", fmt.Errorf("issuer %q is not in the directory: %w", a.Issuer, pipeline.ErrUnknownPrincipal))
	}
	_, err := w.Store.ApplyAction(ctx, a, msgKey, w.Clock.Now())
	if err != nil {
		if reason, refused := rejectionReason(err); refused {
			return reject(reason, err)
		}
		return err
	}
	ev := pipeline.EventWithdrawn
	if a.Type == pipeline.ActionClarify {
		ev = pipeline.EventClarified
	}
	w.Metrics.Transitions.WithLabelValues(string(ev)).Inc()
	return nil
}

// rejectionReason maps a tracker error to the reason it is refused for
// good; refused is false for errors worth retrying.
func rejectionReason(err error) (reason string, refused bool) {
	switch {
	case errors.Is(err, tracker.ErrNotYetDelivered):
		return "", false
	case errors.Is(err, pipeline.ErrNotFound):
		return "unknown_notice", true
	case errors.Is(err, pipeline.ErrForbidden):
		return "forbidden", true
	case errors.Is(err, pipeline.ErrIllegalTransition):
		return "illegal_transition", true
	case errors.Is(err, pipeline.ErrInvalid):
		return "invalid", true
	}
	return "", false
}

// msgKey identifies a message by its stream sequence and the time the
// stream stored it, so that the tracker treats its redelivery as a no-op.
// The sequence alone is not enough: a stream restored from an older
// backup numbers new messages with sequences its lost ones had, and a
// notice's next answer could then look like the last one applied.
func msgKey(prefix string, msg jetstream.Msg) string {
	meta, err := msg.Metadata()
	if err != nil {
		return ""
	}
	return prefix + strconv.FormatUint(meta.Sequence.Stream, 36) + "." + strconv.FormatInt(meta.Timestamp.UnixNano(), 36)
}

// consume runs a durable consumer of stream named name (the default
// consumer name, the log component and the metric source) until ctx ends.
func consume(ctx context.Context, b *bus.Bus, stream bus.Stream, name string, cfg bus.ConsumerConfig, workers int,
	ready func() bool, m *metrics.Metrics, logger *slog.Logger, clock pipeline.Clock, h bus.Handler) error {
	cfg.Stream = stream
	if cfg.Name == "" {
		cfg.Name = name
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = 50
	}
	cons, err := b.Consumer(ctx, cfg)
	if err != nil {
		return err
	}
	return b.Run(ctx, cons, bus.RunConfig{
		Stream: stream, Workers: workers, MaxDeliver: cfg.MaxDeliver, Ready: ready, Logger: logger.With("component", name),
		OnPark: func(reason string) { m.Parked.WithLabelValues(name, reason).Inc() },
		Now:    clock.Now,
	}, h)
}
