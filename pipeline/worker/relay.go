package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/takedown-eu/takedown/metrics"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/tracker"
)

// Relay publishes each shard's outbox to the events stream with
// Nats-Msg-Id "<id>.<version>" and trims an entry only after JetStream
// acknowledged it. A shard is relayed by one relay at a time (a lease in
// Redis), so a notice's events are published in version order; a relay
// that dies mid-batch leaves entries that the next holder publishes again
// and JetStream drops as duplicates.
type Relay struct {
	Store   OutboxStore
	Bus     *bus.Bus
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Interval between polls of an empty outbox. Default 50ms.
	Interval time.Duration
	// Linger is the pause after a round that left no shard with a full
	// batch, so that under a steady trickle each round relays a batch
	// rather than one or two events at a time. It bounds the delay it
	// adds to an event. Default 5ms; negative for none.
	Linger time.Duration
	// Batch is the most events published per shard and round. Default 512.
	Batch int
	// LeaseTTL of a shard's relay lease. Default 10s.
	LeaseTTL time.Duration
	// Owner names this relay in leases. Default a random id.
	Owner string
}

func (r *Relay) defaults() {
	if r.Interval == 0 {
		r.Interval = 50 * time.Millisecond
	}
	if r.Batch == 0 {
		r.Batch = 512
	}
	if r.Linger == 0 {
		r.Linger = 5 * time.Millisecond
	}
	if r.LeaseTTL == 0 {
		r.LeaseTTL = 10 * time.Second
	}
	if r.Owner == "" {
		r.Owner = uuid.NewString()
	}
}

// Run relays until ctx ends, then finishes the round in progress, makes a
// last round so nothing written before shutdown waits for another
// replica, and releases its leases.
func (r *Relay) Run(ctx context.Context) error {
	r.defaults()
	log := r.Logger.With("component", "relay")
	held := make(map[int]time.Time) // shard -> when to renew its lease
	bg := context.WithoutCancel(ctx)
	failing := false
	for {
		n, full, err := r.round(bg, held)
		switch {
		case err != nil && !failing:
			log.Error("relay round failed; events stay in the outbox and are retried", "err", err)
			failing = true
		case err == nil && failing:
			log.Info("relay recovered")
			failing = false
		}
		if ctx.Err() != nil {
			for shard := range held {
				_ = r.Store.ReleaseShard(bg, shard, r.Owner)
			}
			return nil
		}
		if wait := r.pause(n, full, err); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
	}
}

// pause is how long to wait after a round that relayed n events: the
// poll interval after nothing or a failure, nothing when a full batch
// suggests more is waiting, and the linger otherwise.
func (r *Relay) pause(n int, full bool, err error) time.Duration {
	switch {
	case err != nil || n == 0:
		return r.Interval
	case full || r.Linger < 0:
		return 0
	}
	return r.Linger
}

// RunOnce relays what is in every shard's outbox now and returns how many
// events it published.
func (r *Relay) RunOnce(ctx context.Context) (int, error) {
	r.defaults()
	n, _, err := r.round(ctx, map[int]time.Time{})
	return n, err
}

// round relays each held shard's oldest events once; full reports that
// some shard had a whole batch waiting (so more may be there).
func (r *Relay) round(ctx context.Context, held map[int]time.Time) (n int, full bool, err error) {
	var mine []int
	for shard := range r.Store.Shards() {
		if renew, ok := held[shard]; !ok || time.Now().After(renew) {
			ok, err := r.Store.AcquireShard(ctx, shard, r.Owner, r.LeaseTTL)
			if err != nil {
				return 0, false, err
			}
			if !ok {
				delete(held, shard)
				continue
			}
			held[shard] = time.Now().Add(r.LeaseTTL / 3)
		}
		mine = append(mine, shard)
	}
	// One round trip reads every held shard's outbox.
	outboxes, err := r.Store.ReadOutboxes(ctx, mine, r.Batch)
	if err != nil {
		return 0, false, err
	}
	// Every shard's events are published before any acknowledgement is
	// awaited, and the acknowledged prefixes are trimmed in one round
	// trip: a round costs the same few waits however many shards it
	// touches. One deadline covers the whole round, not one per event.
	deadline := time.Now().Add(roundTimeout)
	var pubs []*shardPublish
	for _, shard := range mine {
		if entries := outboxes[shard]; len(entries) > 0 {
			full = full || len(entries) >= r.Batch
			p := r.publish(shard, entries, deadline)
			pubs = append(pubs, p)
			if p.err != nil {
				// The connection takes no more now; the other shards'
				// events wait for the next round.
				break
			}
		}
	}
	if len(pubs) == 0 {
		return 0, full, nil
	}
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	trim := make(map[int][]string, len(pubs))
	var perr error
	for _, p := range pubs {
		if err := p.wait(wctx); err != nil && perr == nil {
			perr = err
		}
		if err := r.checkDuplicates(wctx, p); err != nil && perr == nil {
			perr = err
		}
		if p.done > 0 {
			ids := make([]string, p.done)
			for i := range p.done {
				ids[i] = p.entries[i].StreamID
			}
			trim[p.shard] = ids
		}
		n += p.done
	}
	if err := r.Store.TrimOutboxes(ctx, trim); err != nil {
		return 0, full, err
	}
	r.Metrics.EventsRelayed.Add(float64(n))
	return n, full, perr
}

// checkDuplicates looks at the events JetStream answered as duplicates.
// Normally they are events published again (by a relay that died before
// trimming them, or after a failed round) and the stream holds the same
// event. But if Redis lost transitions that the stream already holds,
// the tracker numbers its next transitions with versions the stream has
// seen, and the stream drops those events as duplicates: such an event is
// parked instead (version_conflict) and logged, as is one whose first
// publication the stream no longer holds (duplicate_of_removed). An
// event that cannot be checked is not trimmed: it and those after it are
// published and checked again next round.
func (r *Relay) checkDuplicates(ctx context.Context, p *shardPublish) error {
	for _, d := range p.dups {
		i, seq := int(d[0]), d[1]
		ev := p.entries[i].Event
		stored, err := r.Bus.StoredEvent(ctx, seq)
		var reason, detail string
		switch {
		case err == nil && stored.Type == ev.Type && stored.State == ev.State && stored.At.Equal(ev.At):
			continue
		case err == nil:
			reason = "version_conflict"
			detail = fmt.Sprintf("the events stream holds %s as %s at %s (sequence %d); this %s at %s was made after Redis lost the stream's later transitions of the notice",
				ev.ID, stored.Type, stored.At.UTC().Format(time.RFC3339Nano), seq, ev.Type, ev.At.UTC().Format(time.RFC3339Nano))
		case errors.Is(err, jetstream.ErrMsgNotFound):
			reason = "duplicate_of_removed"
			detail = fmt.Sprintf("the events stream dropped %s as a duplicate of its message %d, which it no longer holds", ev.ID, seq)
		default:
			p.done = i
			return fmt.Errorf("check duplicate event %s of shard %d: %w", ev.ID, p.shard, err)
		}
		subject := r.Bus.EventSubject(ev.Issuer, ev.Provider, string(ev.Type))
		if err := r.Bus.ParkEvent(ctx, subject, ev, ev.AppendJSON(nil), seq, reason, detail, time.Now()); err != nil {
			p.done = i
			return fmt.Errorf("park event %s of shard %d: %w", ev.ID, p.shard, err)
		}
		r.Metrics.Parked.WithLabelValues("events", reason).Inc()
		r.Logger.Error("event parked: the events stream dropped it as a duplicate of another event or of one it no longer holds; after a Redis data loss, run takedownd verify -repair before takedownd resumes",
			"component", "relay", "event", ev.ID, "type", ev.Type, "reason", reason, "detail", detail)
	}
	return nil
}

// shardPublish is one shard's events of a round on their way to the
// events stream.
type shardPublish struct {
	shard   int
	entries []tracker.OutboxEntry
	futures []jetstream.PubAckFuture
	err     error // why publishing stopped before the last entry
	done    int   // how many entries, from the first, JetStream acknowledged
	// dups are the acknowledged entries JetStream answered as duplicates:
	// their index and the sequence of the message stored with their id.
	dups [][2]uint64
}

// roundTimeout bounds a round: publishing its events and awaiting their
// acknowledgements.
const roundTimeout = 10 * time.Second

// publish sends a shard's events asynchronously, in order, stopping at the
// first that cannot be sent. When as many publishes are outstanding as
// the connection allows (nats.go allows 4,000 by default, fewer than a
// round of 16 shards of 512 events), a publish waits for
// acknowledgements to free room until the round's deadline, rather than
// giving up after nats.go's default 200 ms: a server that acknowledges
// slowly for a moment does not fail the round.
func (r *Relay) publish(shard int, entries []tracker.OutboxEntry, deadline time.Time) *shardPublish {
	js := r.Bus.JetStream()
	p := &shardPublish{shard: shard, entries: entries, futures: make([]jetstream.PubAckFuture, 0, len(entries))}
	for _, e := range entries {
		data := e.Event.AppendJSON(make([]byte, 0, 512+len(e.Event.Notice)))
		m := nats.NewMsg(r.Bus.EventSubject(e.Event.Issuer, e.Event.Provider, string(e.Event.Type)))
		m.Data = data
		stall := max(time.Until(deadline), time.Millisecond)
		f, err := js.PublishMsgAsync(m, jetstream.WithMsgID(e.Event.ID), jetstream.WithStallWait(stall))
		if err != nil {
			p.err = fmt.Errorf("async publish refused: %w", err)
			break
		}
		p.futures = append(p.futures, f)
	}
	return p
}

// wait counts the acknowledged prefix of the shard's events. Only that
// prefix is trimmed: what follows a failure is published again next
// round, in order, and deduplicated.
func (p *shardPublish) wait(ctx context.Context) error {
	for _, f := range p.futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				p.dups = append(p.dups, [2]uint64{uint64(p.done), ack.Sequence})
			}
			p.done++
			continue
		case err := <-f.Err():
			p.err = err
		case <-ctx.Done():
			p.err = ctx.Err()
			if errors.Is(p.err, context.DeadlineExceeded) {
				p.err = fmt.Errorf("no ack from the events stream within %s", roundTimeout)
			}
		}
		break
	}
	if p.err != nil {
		return fmt.Errorf("publish events of shard %d: %w", p.shard, p.err)
	}
	return nil
}
