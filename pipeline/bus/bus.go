// Package bus wraps JetStream for takedown: it creates the streams and
// durable consumers idempotently, names the subjects, publishes with
// Nats-Msg-Id, runs consumers with a bounded worker pool, and parks what
// cannot be processed in a stream where an operator can list and replay it.
//
//	b, err := bus.New(ctx, js, bus.Config{})    // creates/updates streams
//	err = b.Publish(ctx, b.DeliverSubject("videohost"), id, body, nil)
//	err = b.Run(ctx, cons, bus.RunConfig{Workers: 8}, handler)
package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/takedown-eu/takedown/pipeline"
)

// Config configures the streams. Zero values take the documented defaults.
type Config struct {
	// Prefix of every subject. Default "takedown". Stream names are the
	// upper-cased prefix plus _INTAKE, _DELIVER, _FEEDBACK, _EVENTS, _PARKED.
	Prefix string
	// Replicas of every stream: 1 on one machine, 3 in a cluster. Default 1.
	Replicas int
	// DeliverMaxAge keeps delivered notices for providers to read. Default 30 days.
	DeliverMaxAge time.Duration
	// EventsMaxAge keeps the audit log. Default 190 days (TCO Art. 6: six
	// months of preservation, plus margin).
	EventsMaxAge time.Duration
	// DuplicateWindow is how long JetStream remembers Nats-Msg-Id values
	// to drop duplicate publishes. Default DefaultDuplicateWindow.
	DuplicateWindow time.Duration
	// Storage is file (default) or memory.
	Storage jetstream.StorageType
	// PublishTry bounds one try of a publish that carries a message id:
	// a PubAck lost while the connection is re-established is then asked
	// for again — the id makes the repeat harmless — instead of being
	// waited for until the caller's deadline. Default 2s.
	PublishTry time.Duration
}

func (c *Config) defaults() {
	if c.Prefix == "" {
		c.Prefix = "takedown"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DeliverMaxAge == 0 {
		c.DeliverMaxAge = 30 * 24 * time.Hour
	}
	if c.EventsMaxAge == 0 {
		c.EventsMaxAge = 190 * 24 * time.Hour
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.PublishTry == 0 {
		c.PublishTry = 2 * time.Second
	}
}

// DefaultDuplicateWindow is how long the streams remember message ids
// unless configured otherwise: a publish repeated after a lost PubAck or
// an outage of up to this long is still recognised. The server keeps
// every id of the window in memory.
const DefaultDuplicateWindow = 10 * time.Minute

// The duplicate windows the pipeline runs with. Below the minimum, an
// event a relay publishes again after taking a shard over could be stored
// twice; above the maximum, the ids held in memory grow past any use.
const (
	MinDuplicateWindow = time.Minute
	MaxDuplicateWindow = 24 * time.Hour
)

// Bus is the project's view of JetStream. Safe for concurrent use.
type Bus struct {
	js  jetstream.JetStream
	cfg Config
}

// Stream identifies one of the project's streams.
type Stream string

const (
	Intake   Stream = "INTAKE"
	Deliver  Stream = "DELIVER"
	Feedback Stream = "FEEDBACK"
	Events   Stream = "EVENTS"
	Parked   Stream = "PARKED"
)

// New creates or updates the streams and returns the Bus.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Bus, error) {
	cfg.defaults()
	if strings.ContainsAny(cfg.Prefix, ".*> ") {
		return nil, fmt.Errorf("bus: prefix %q must be a single subject token", cfg.Prefix)
	}
	b := &Bus{js: js, cfg: cfg}
	for _, sc := range b.streamConfigs() {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return nil, fmt.Errorf("bus: stream %s: %w", sc.Name, err)
		}
	}
	return b, nil
}

func (b *Bus) streamConfigs() []jetstream.StreamConfig {
	c := b.cfg
	base := func(s Stream, desc string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name: b.StreamName(s), Description: desc,
			Subjects: []string{b.subject(strings.ToLower(string(s)), ">")},
			Replicas: c.Replicas, Storage: c.Storage, Duplicates: c.DuplicateWindow,
			Discard: jetstream.DiscardOld,
		}
	}
	intake := base(Intake, "Notices and issuer actions, one subject per issuer; work queue.")
	intake.Retention = jetstream.WorkQueuePolicy
	deliver := base(Deliver, "Notices delivered to providers, one subject per provider.")
	deliver.MaxAge = c.DeliverMaxAge
	feedback := base(Feedback, "Provider feedback, one subject per provider; work queue.")
	feedback.Retention = jetstream.WorkQueuePolicy
	events := base(Events, "Audit log: every state change and follow-up of every notice.")
	events.MaxAge = c.EventsMaxAge
	parked := base(Parked, "Messages that could not be processed, with the reason; kept until an operator removes them.")
	return []jetstream.StreamConfig{intake, deliver, feedback, events, parked}
}

// JetStream is the underlying JetStream context.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Prefix is the configured subject prefix.
func (b *Bus) Prefix() string { return b.cfg.Prefix }

// StreamName is the JetStream name of s, such as TAKEDOWN_INTAKE.
func (b *Bus) StreamName(s Stream) string { return StreamName(b.cfg.Prefix, s) }

// StreamName is the name of stream s under subject prefix: the prefix in
// upper case, an underscore, the stream's kind.
func StreamName(prefix string, s Stream) string { return strings.ToUpper(prefix) + "_" + string(s) }

func (b *Bus) subject(tokens ...string) string {
	return b.cfg.Prefix + "." + strings.Join(tokens, ".")
}

// IntakeSubject is where issuer publishes notices and actions.
func (b *Bus) IntakeSubject(issuer string) string { return b.subject("intake", issuer) }

// DeliverSubject is where provider reads its notices.
func (b *Bus) DeliverSubject(provider string) string { return b.subject("deliver", provider) }

// FeedbackSubject is where provider publishes feedback.
func (b *Bus) FeedbackSubject(provider string) string { return b.subject("feedback", provider) }

// EventSubject is where an event of one notice is published.
func (b *Bus) EventSubject(issuer, provider, typ string) string {
	return EventSubject(b.cfg.Prefix, issuer, provider, typ)
}

// EventSubject is where an event of one notice is published under
// subject prefix.
func EventSubject(prefix, issuer, provider, typ string) string {
	return prefix + ".events." + issuer + "." + provider + "." + typ
}

// ParkedSubject is where a message from stream s is parked; who is the
// issuer or provider token of its original subject.
func (b *Bus) ParkedSubject(s Stream, who string) string {
	return b.subject("parked", strings.ToLower(string(s)), who)
}

// SubjectToken returns the token after "<prefix>.<kind>." in subject, the
// issuer of an intake subject or the provider of a feedback subject.
func (b *Bus) SubjectToken(subject string) string {
	parts := strings.Split(subject, ".")
	if len(parts) != 3 || parts[0] != b.cfg.Prefix {
		return ""
	}
	return parts[2]
}

// Publish publishes data with Nats-Msg-Id msgID and waits for the
// JetStream ack.
func (b *Bus) Publish(ctx context.Context, subject, msgID string, data []byte, hdr nats.Header) (*jetstream.PubAck, error) {
	m := nats.NewMsg(subject)
	m.Data = data
	if hdr != nil {
		m.Header = hdr
	}
	for {
		tctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTry)
		ack, err := b.js.PublishMsg(tctx, m, jetstream.WithMsgID(msgID))
		cancel()
		if err == nil {
			return ack, nil
		}
		if msgID == "" || ctx.Err() != nil || !retryable(err) {
			return nil, fmt.Errorf("publish %s: %w", subject, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("publish %s: %w", subject, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// retryable reports publish errors that a repeat of the same message may
// cure: no PubAck in time, or the connection away for a moment.
func retryable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrConnectionReconnecting)
}

// StoredAt is when stream s stored its message seq: for a publish that
// JetStream answered as a duplicate, its PubAck's sequence is that of the
// message first stored with the id.
func (b *Bus) StoredAt(ctx context.Context, s Stream, seq uint64) (time.Time, error) {
	m, err := b.stored(ctx, s, seq)
	if err != nil {
		return time.Time{}, err
	}
	return m.Time, nil
}

// stored reads stream s's message seq.
func (b *Bus) stored(ctx context.Context, s Stream, seq uint64) (*jetstream.RawStreamMsg, error) {
	st, err := b.js.Stream(ctx, b.StreamName(s))
	if err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", b.StreamName(s), err)
	}
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("bus: message %d of %s: %w", seq, b.StreamName(s), err)
	}
	return m, nil
}

// Park headers describe why a message was parked.
const (
	HeaderParkReason  = "Takedown-Park-Reason"
	HeaderParkDetail  = "Takedown-Park-Detail"
	HeaderParkSubject = "Takedown-Original-Subject"
	HeaderParkStream  = "Takedown-Original-Stream"
	HeaderParkSeq     = "Takedown-Original-Sequence"
	HeaderParkedAt    = "Takedown-Parked-At"
)

// Park copies msg into the parked stream with the reason, deduplicated by
// the original stream and sequence so a message is parked once.
func (b *Bus) Park(ctx context.Context, s Stream, msg jetstream.Msg, reason, detail string, now time.Time) error {
	meta, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("park: %w", err)
	}
	hdr := nats.Header{}
	for k, v := range msg.Headers() {
		if k != jetstream.MsgIDHeader {
			hdr[k] = v
		}
	}
	who := b.SubjectToken(msg.Subject())
	// The stored time as well as the sequence: a stream recreated, or
	// restored from an older backup, numbers new messages with the
	// sequences of earlier ones.
	return b.park(ctx, s, who, msg.Subject(), msg.Data(), hdr, meta.Stream, meta.Sequence.Stream,
		fmt.Sprintf("park.%s.%d.%d", meta.Stream, meta.Sequence.Stream, meta.Timestamp.UnixNano()), reason, detail, now)
}

// ParkEvent parks an event that the events stream answered as a
// duplicate of its message seq although it does not hold that event
// (reason: another event under the same id, or the message is gone), so
// that it is not dropped unseen. The parked message names the stream's
// message by its sequence.
func (b *Bus) ParkEvent(ctx context.Context, subject string, ev pipeline.Event, data []byte, seq uint64, reason, detail string, now time.Time) error {
	id := fmt.Sprintf("park.event.%s.%d", ev.ID, ev.At.UnixNano())
	return b.park(ctx, Events, ev.Issuer, subject, data, nil, b.StreamName(Events), seq, id, reason, detail, now)
}

// park publishes data to the parked stream with the headers that say
// where it came from and why; id deduplicates it.
func (b *Bus) park(ctx context.Context, s Stream, who, subject string, data []byte, hdr nats.Header, stream string, seq uint64, id, reason, detail string, now time.Time) error {
	if hdr == nil {
		hdr = nats.Header{}
	}
	if len(detail) > 2000 {
		detail = detail[:2000]
	}
	hdr.Set(HeaderParkReason, reason)
	hdr.Set(HeaderParkDetail, detail)
	hdr.Set(HeaderParkSubject, subject)
	hdr.Set(HeaderParkStream, stream)
	hdr.Set(HeaderParkSeq, fmt.Sprint(seq))
	hdr.Set(HeaderParkedAt, now.UTC().Format(time.RFC3339Nano))
	if who == "" {
		who = "_"
	}
	_, err := b.Publish(ctx, b.ParkedSubject(s, who), id, data, hdr)
	return err
}

// StoredEvent reads the event the events stream holds at sequence seq.
func (b *Bus) StoredEvent(ctx context.Context, seq uint64) (pipeline.Event, error) {
	var ev pipeline.Event
	m, err := b.stored(ctx, Events, seq)
	if err != nil {
		return ev, err
	}
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return ev, fmt.Errorf("bus: message %d of %s: %w", seq, b.StreamName(Events), err)
	}
	return ev, nil
}

// ErrClosed is returned by Run when its context ends; it is not a failure.
var ErrClosed = errors.New("bus: consumer stopped")

// SystemSchema is the schema of events that concern no single notice.
const SystemSchema = "takedown.system/v1"

// PublishSystem publishes an operator-visible event that concerns no single
// notice, such as an endpoint disabled, on
// <prefix>.events._.<provider>.<type>.
func (b *Bus) PublishSystem(ctx context.Context, provider, typ, detail string, at time.Time) error {
	data, _ := json.Marshal(map[string]string{ // a map of strings always marshals
		"schema": SystemSchema, "type": typ, "provider": provider, "detail": detail, "at": at.UTC().Format(time.RFC3339Nano),
	})
	_, err := b.Publish(ctx, b.EventSubject("_", provider, typ), fmt.Sprintf("system.%s.%s.%d", provider, typ, at.UnixMilli()), data, nil)
	return err
}
