package worker

import (
	"context"
	"encoding/json"
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
	for _, shard := range mine {
		if entries := outboxes[shard]; len(entries) > 0 {
			full = full || len(entries) >= r.Batch
			done, err := r.relayShard(ctx, shard, entries)
			n += done
			if err != nil {
				return n, full, err
			}
		}
	}
	return n, full, nil
}

func (r *Relay) relayShard(ctx context.Context, shard int, entries []tracker.OutboxEntry) (int, error) {
	js := r.Bus.JetStream()
	futures := make([]jetstream.PubAckFuture, 0, len(entries))
	for _, e := range entries {
		data, err := json.Marshal(e.Event)
		if err != nil {
			return 0, fmt.Errorf("event %s: %w", e.Event.ID, err)
		}
		m := nats.NewMsg(r.Bus.EventSubject(e.Event.Issuer, e.Event.Provider, string(e.Event.Type)))
		m.Data = data
		f, err := js.PublishMsgAsync(m, jetstream.WithMsgID(e.Event.ID))
		if err != nil {
			break
		}
		futures = append(futures, f)
	}
	// Trim only the prefix JetStream acknowledged: what follows a failure
	// is published again next round, in order, and deduplicated.
	done := 0
	var perr error
	// One timer for the whole batch, not one per event.
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
wait:
	for _, f := range futures {
		select {
		case <-f.Ok():
			done++
		case err := <-f.Err():
			perr = err
			break wait
		case <-ctx.Done():
			perr = ctx.Err()
			break wait
		case <-timeout.C:
			perr = fmt.Errorf("no ack from the events stream within 10s")
			break wait
		}
	}
	ids := make([]string, done)
	for i := range done {
		ids[i] = entries[i].StreamID
	}
	if err := r.Store.TrimOutbox(ctx, shard, ids...); err != nil {
		return done, err
	}
	r.Metrics.EventsRelayed.Add(float64(done))
	if perr != nil {
		return done, fmt.Errorf("publish events of shard %d: %w", shard, perr)
	}
	if done < len(entries) {
		return done, fmt.Errorf("publish events of shard %d: async publish refused", shard)
	}
	return done, nil
}
