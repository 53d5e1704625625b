package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Outcome tells Run what to do with a message after its handler ran.
type Outcome struct {
	kind   outcomeKind
	reason string
	detail string
	delay  time.Duration
}

type outcomeKind int

const (
	outcomeAck outcomeKind = iota
	outcomeRetry
	outcomePark
)

// Done acknowledges the message: it was processed (or was a harmless
// duplicate).
func Done() Outcome { return Outcome{kind: outcomeAck} }

// Retry asks for redelivery after delay (zero: a backoff by attempt) because
// of a passing failure. On the consumer's last delivery the message is
// parked with reason "exhausted" instead of being dropped.
func Retry(delay time.Duration, cause error) Outcome {
	return Outcome{kind: outcomeRetry, delay: delay, detail: cause.Error()}
}

// Park moves the message to the parked stream with a reason (a short
// bounded word, used as a metric label) and a human-readable detail.
func Park(reason, detail string) Outcome {
	return Outcome{kind: outcomePark, reason: reason, detail: detail}
}

// Handler processes one message under its own deadline.
type Handler func(ctx context.Context, msg jetstream.Msg) Outcome

// ConsumerConfig describes a durable pull consumer.
type ConsumerConfig struct {
	Name   string
	Stream Stream
	// Filter is a subject filter; default: the whole stream.
	Filter string
	// MaxDeliver bounds deliveries of one message. Default 50.
	MaxDeliver int
	// AckWait is how long a delivered message may stay unacknowledged
	// before JetStream redelivers it. Default 30s.
	AckWait time.Duration
	// MaxAckPending bounds messages in flight across all replicas.
	// Default 1000.
	MaxAckPending int
}

// Consumer creates or updates a durable pull consumer with explicit acks.
func (b *Bus) Consumer(ctx context.Context, cfg ConsumerConfig) (jetstream.Consumer, error) {
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = 50
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.MaxAckPending == 0 {
		cfg.MaxAckPending = 1000
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, b.StreamName(cfg.Stream), jetstream.ConsumerConfig{
		Durable: cfg.Name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: cfg.AckWait,
		MaxDeliver: cfg.MaxDeliver, MaxAckPending: cfg.MaxAckPending, FilterSubject: cfg.Filter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: consumer %s on %s: %w", cfg.Name, b.StreamName(cfg.Stream), err)
	}
	return cons, nil
}

// RunConfig configures Run.
type RunConfig struct {
	// Stream the consumer reads, for parking. Required.
	Stream Stream
	// Workers handle messages concurrently. Default 4.
	Workers int
	// MaxDeliver must equal the consumer's, so the last delivery parks
	// instead of retrying. Default 50.
	MaxDeliver int
	// HandleTimeout bounds one message's handling. Default 30s.
	HandleTimeout time.Duration
	// Ready, if set, reports whether the dependencies a handler needs are
	// up. While it is false, messages wait (kept in progress) instead of
	// burning their deliveries.
	Ready func() bool
	// OnPark is told of each parked message's reason (for metrics).
	OnPark func(reason string)
	Logger *slog.Logger
	// Now is the clock for the park time stamp. Default time.Now.
	Now func() time.Time
}

// Run consumes cons until ctx ends, then stops fetching, finishes the
// messages already fetched and returns nil. It returns an error only if
// consuming cannot start.
func (b *Bus) Run(ctx context.Context, cons jetstream.Consumer, cfg RunConfig, h Handler) error {
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = 50
	}
	if cfg.HandleTimeout == 0 {
		cfg.HandleTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * cfg.Workers))
	if err != nil {
		return fmt.Errorf("bus: consume: %w", err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			it.Drain()
		case <-stop:
		}
	}()
	// Long-lived workers rather than a goroutine per message: each
	// worker's stack grows once, not once per message.
	msgs := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for msg := range msgs {
				b.handle(ctx, msg, cfg, h)
			}
		}()
	}
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			break
		}
		if err != nil {
			// Missed heartbeats and the like while NATS is away: the
			// iterator recovers by itself.
			cfg.Logger.Debug("consumer iterator", "err", err)
			if ctx.Err() != nil {
				it.Stop()
				break
			}
			// Do not spin while the connection is away.
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		msgs <- msg
	}
	close(msgs)
	wg.Wait()
	return nil
}

func (b *Bus) handle(ctx context.Context, msg jetstream.Msg, cfg RunConfig, h Handler) {
	// The logger is made only when there is something to log: most
	// messages are acknowledged without a word, and With formats its
	// attributes at once.
	log := func() *slog.Logger { return cfg.Logger.With("subject", msg.Subject()) }
	if cfg.Ready != nil {
		for !cfg.Ready() {
			// Hold the message while a dependency is down rather than
			// burn its deliveries; on shutdown leave it for redelivery.
			if ctx.Err() != nil {
				return
			}
			_ = msg.InProgress()
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.HandleTimeout)
	defer cancel()
	out := h(hctx, msg)
	if out.kind == outcomeAck {
		if err := msg.Ack(); err != nil {
			log().Warn("ack failed; the message will be redelivered and handled as a duplicate", "err", err)
		}
		return
	}
	meta, _ := msg.Metadata()
	if out.kind == outcomeRetry {
		if meta == nil || int(meta.NumDelivered) < cfg.MaxDeliver {
			delay := out.delay
			if delay == 0 && meta != nil {
				delay = Backoff(int(meta.NumDelivered))
			}
			// The first retries are routine (feedback overtaking its
			// delivery record, a brief outage); later ones deserve notice.
			level := slog.LevelDebug
			if deliveries(meta) > 3 {
				level = slog.LevelWarn
			}
			if cfg.Logger.Enabled(ctx, level) {
				log().Log(ctx, level, "retrying message", "delivery", deliveries(meta), "in", delay, "cause", out.detail)
			}
			if err := msg.NakWithDelay(delay); err != nil {
				log().Warn("nak failed; redelivery after the ack wait", "err", err)
			}
			return
		}
		out = Park("exhausted", fmt.Sprintf("gave up after %d deliveries: %s", meta.NumDelivered, out.detail))
	}
	if err := b.Park(hctx, cfg.Stream, msg, out.reason, out.detail, cfg.Now()); err != nil {
		log().Error("cannot park message; it stays in its stream for redelivery", "reason", out.reason, "err", err)
		_ = msg.NakWithDelay(Backoff(deliveries(meta)))
		return
	}
	log().Info("message parked", "reason", out.reason, "detail", out.detail)
	if cfg.OnPark != nil {
		cfg.OnPark(out.reason)
	}
	if err := msg.Ack(); err != nil {
		log().Warn("ack after park failed; the message may be parked twice (deduplicated)", "err", err)
	}
}

func deliveries(meta *jetstream.MsgMetadata) int {
	if meta == nil {
		return 0
	}
	return int(meta.NumDelivered)
}

// Backoff is the redelivery delay after n deliveries: 250ms doubling up to
// 30s.
func Backoff(n int) time.Duration { return BackoffFrom(250*time.Millisecond, n) }

// BackoffFrom is a redelivery delay after n deliveries starting at base and
// doubling up to 30s, for causes known to pass sooner than most.
func BackoffFrom(base time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}
