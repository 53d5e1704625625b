// Package notifier delivers notices to providers over their channel and
// reports the time of receipt at the provider's contact point, which starts
// the legal clock.
//
// The nats channel publishes the notice to takedown.deliver.<provider>;
// the JetStream ack is receipt. Each provider reads its subject with its
// own durable consumer.
//
//	n := notifier.New(dir, map[pipeline.Channel]notifier.Channel{
//		pipeline.ChannelNATS: notifier.NewNATS(b, clock),
//	})
//	receipt, err := n.Deliver(ctx, notifier.Delivery{...})
package notifier

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
)

// Delivery is one attempt to deliver a notice.
type Delivery struct {
	NoticeID string
	Provider string
	Kind     pipeline.Kind
	// Body is the notice JSON as the provider receives it.
	Body []byte
	// Attempt counts from 1; a redelivery has a higher attempt.
	Attempt int
}

// Receipt is proof of delivery.
type Receipt struct {
	// At is the time of receipt at the provider's contact point.
	At time.Time
	// Status is the HTTP status of a webhook answer.
	Status int
	// Latency of the attempt.
	Latency time.Duration
}

// Channel delivers notices over one transport. Implementations are safe
// for concurrent use; Deliver returns only after receipt is certain, and an
// error means the provider may not have received the notice (so it is
// retried: providers deduplicate by notice id).
type Channel interface {
	Deliver(ctx context.Context, d Delivery) (Receipt, error)
}

// ErrNoChannel reports a provider whose channel is not configured.
var ErrNoChannel = errors.New("notifier: no channel for provider")

// Notifier routes each delivery to its provider's channel.
type Notifier struct {
	dir      *pipeline.Directory
	channels map[pipeline.Channel]Channel
	lanes    map[pipeline.Channel]*Lanes
}

var _ Channel = (*Notifier)(nil)

// New returns a Notifier over the directory's providers. Deliveries of
// channels that have lanes are dispatched asynchronously through them.
func New(dir *pipeline.Directory, channels map[pipeline.Channel]Channel) *Notifier {
	return &Notifier{dir: dir, channels: channels, lanes: map[pipeline.Channel]*Lanes{}}
}

// WithLanes dispatches deliveries of channel c through lanes.
func (n *Notifier) WithLanes(c pipeline.Channel, lanes *Lanes) *Notifier {
	n.lanes[c] = lanes
	return n
}

// Channel names the delivery channel of provider ("unknown" if none).
func (n *Notifier) Channel(provider string) string {
	if p, ok := n.dir.Provider(provider); ok {
		return string(p.Channel)
	}
	return "unknown"
}

// Dispatch delivers d and calls done with the outcome: at once for
// synchronous channels (nats), later from the provider's lane for
// channels with lanes (webhook). It returns false if the delivery could not
// even be queued; done is then not called.
func (n *Notifier) Dispatch(ctx context.Context, d Delivery, done Done) bool {
	if p, ok := n.dir.Provider(d.Provider); ok {
		if l, ok := n.lanes[p.Channel]; ok {
			return l.Submit(d, done)
		}
	}
	done(n.Deliver(ctx, d))
	return true
}

// Close stops the lanes, waiting for attempts in flight until ctx ends.
func (n *Notifier) Close(ctx context.Context) error {
	var errs []error
	for _, l := range n.lanes {
		errs = append(errs, l.Close(ctx))
	}
	return errors.Join(errs...)
}

// Deliver delivers d over its provider's channel.
func (n *Notifier) Deliver(ctx context.Context, d Delivery) (Receipt, error) {
	p, ok := n.dir.Provider(d.Provider)
	if !ok {
		return Receipt{}, fmt.Errorf("deliver %s: provider %q: %w", d.NoticeID, d.Provider, pipeline.ErrUnknownPrincipal)
	}
	ch, ok := n.channels[p.Channel]
	if !ok {
		return Receipt{}, fmt.Errorf("deliver %s: channel %q: %w", d.NoticeID, p.Channel, ErrNoChannel)
	}
	return ch.Deliver(ctx, d)
}

// Headers on every message of a deliver subject.
const (
	HeaderNoticeID = "Takedown-Notice-Id"
	HeaderKind     = "Takedown-Kind"
	HeaderAttempt  = "Takedown-Attempt"
)

// NATS delivers to the provider's JetStream deliver subject.
type NATS struct {
	bus   *bus.Bus
	clock pipeline.Clock
}

var _ Channel = (*NATS)(nil)

// NewNATS returns the nats channel.
func NewNATS(b *bus.Bus, clock pipeline.Clock) *NATS { return &NATS{bus: b, clock: clock} }

// DeliverMsgID is the Nats-Msg-Id of a delivery: the notice id for the
// first attempt, so a retried first delivery is deduplicated, and
// "<id>.d<attempt>" for redeliveries, which must reach the provider again.
func DeliverMsgID(id string, attempt int) string {
	if attempt <= 1 {
		return id
	}
	return id + ".d" + strconv.Itoa(attempt)
}

// Deliver publishes the notice and waits for the JetStream ack.
func (c *NATS) Deliver(ctx context.Context, d Delivery) (Receipt, error) {
	hdr := nats.Header{}
	hdr.Set(HeaderNoticeID, d.NoticeID)
	hdr.Set(HeaderKind, string(d.Kind))
	hdr.Set(HeaderAttempt, strconv.Itoa(max(d.Attempt, 1)))
	start := time.Now()
	ack, err := c.bus.Publish(ctx, c.bus.DeliverSubject(d.Provider), DeliverMsgID(d.NoticeID, d.Attempt), d.Body, hdr)
	if err != nil {
		return Receipt{Latency: time.Since(start)}, fmt.Errorf("deliver %s to %s: %w", d.NoticeID, d.Provider, err)
	}
	at := c.clock.Now()
	if ack.Duplicate {
		// This attempt was stored before, and the provider could read it
		// from then: the pipeline stopped between storing it and
		// recording the delivery, and takes the attempt again. The
		// receipt that starts the clock is the first storing, not now.
		// (If its time cannot be read, now errs only in the provider's
		// favour.)
		if stored, err := c.bus.StoredAt(ctx, bus.Deliver, ack.Sequence); err == nil && stored.Before(at) {
			at = stored
		}
	}
	return Receipt{At: at, Latency: time.Since(start)}, nil
}
