package tracker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/pipeline"
)

// OutboxEntry is one event waiting in a shard's outbox.
type OutboxEntry struct {
	StreamID string // the Redis stream entry id, for Trim
	Event    pipeline.Event
}

// ReadOutbox returns up to limit of the oldest events of one shard, in the
// order they were written.
func (s *Store) ReadOutbox(ctx context.Context, shard, limit int) ([]OutboxEntry, error) {
	msgs, err := s.rdb.XRangeN(ctx, shardKeys(shard).outbox(), "-", "+", int64(limit)).Result()
	if err != nil {
		return nil, fmt.Errorf("read outbox %d: %w", shard, err)
	}
	out := make([]OutboxEntry, 0, len(msgs))
	for _, m := range msgs {
		ev, err := outboxEvent(m)
		if err != nil {
			return nil, fmt.Errorf("outbox %d entry %s: %w", shard, m.ID, err)
		}
		out = append(out, OutboxEntry{StreamID: m.ID, Event: ev})
	}
	return out, nil
}

// ReadOutboxes reads up to limit of the oldest events of each shard in one
// round trip; shards with no events are left out of the result.
func (s *Store) ReadOutboxes(ctx context.Context, shards []int, limit int) (map[int][]OutboxEntry, error) {
	cmds := make([]*redis.XMessageSliceCmd, len(shards))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, sh := range shards {
			cmds[i] = p.XRangeN(ctx, shardKeys(sh).outbox(), "-", "+", int64(limit))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read outboxes: %w", err)
	}
	out := make(map[int][]OutboxEntry, len(shards))
	for i, c := range cmds {
		msgs := c.Val()
		if len(msgs) == 0 {
			continue
		}
		// Sized once: an entry holds a whole event, and growing the
		// slice by appending copied each one several times.
		entries := make([]OutboxEntry, 0, len(msgs))
		for _, m := range msgs {
			ev, err := outboxEvent(m)
			if err != nil {
				return nil, fmt.Errorf("outbox %d entry %s: %w", shards[i], m.ID, err)
			}
			entries = append(entries, OutboxEntry{StreamID: m.ID, Event: ev})
		}
		out[shards[i]] = entries
	}
	return out, nil
}

// TrimOutboxes deletes relayed entries, given by shard, in one round trip.
func (s *Store) TrimOutboxes(ctx context.Context, ids map[int][]string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for shard, sids := range ids {
			if len(sids) > 0 {
				p.XDel(ctx, shardKeys(shard).outbox(), sids...)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("trim outboxes: %w", err)
	}
	return nil
}

// packedFields are the values of a packed outbox entry ("e"), in the
// order emit in scripts/prelude.lua writes them; the details come last.
var packedFields = []string{"n", "v", "t", "at", "st", "is", "pr", "k", "ref", "dl", "run", "ov", "da", "it", "ms", "att", "x"}

var packedIndex = func() map[string]int {
	m := make(map[string]int, len(packedFields))
	for i, f := range packedFields {
		m[f] = i
	}
	return m
}()

func outboxEvent(m redis.XMessage) (pipeline.Event, error) {
	str := func(f string) string { s, _ := m.Values[f].(string); return s }
	if packed, ok := m.Values["e"].(string); ok {
		vals := strings.SplitN(packed, "\x1f", len(packedFields))
		if len(vals) != len(packedFields) {
			return pipeline.Event{}, fmt.Errorf("packed entry has %d values, want %d", len(vals), len(packedFields))
		}
		str = func(f string) string { return vals[packedIndex[f]] }
	}
	// Entries written field by field (before the packed form) read the
	// same way.
	var ev pipeline.Event
	if x := str("x"); x != "" {
		// The received event's details are the notice as Create wrote
		// them (receivedDetails); taking the body as it stands spares
		// decoding and copying the whole notice for every new notice.
		if body, ok := strings.CutPrefix(x, receivedPrefix); ok && strings.HasSuffix(body, "}") && str("t") == string(pipeline.EventReceived) {
			ev.Notice = json.RawMessage(body[:len(body)-1])
		} else if err := json.Unmarshal([]byte(x), &ev); err != nil {
			return ev, fmt.Errorf("details: %w", err)
		}
	}
	v, err := strconv.ParseInt(str("v"), 10, 64)
	if err != nil {
		return ev, fmt.Errorf("version %q: %w", str("v"), err)
	}
	at, err := time.Parse(time.RFC3339Nano, str("at"))
	if err != nil {
		return ev, fmt.Errorf("time %q: %w", str("at"), err)
	}
	ev.Schema = pipeline.EventSchema
	ev.NoticeID = str("n")
	ev.Version = v
	ev.ID = pipeline.EventID(ev.NoticeID, v)
	ev.Type = pipeline.EventType(str("t"))
	ev.At = at
	ev.State = pipeline.State(str("st"))
	ev.Issuer, ev.Provider, ev.Kind, ev.Reference = str("is"), str("pr"), pipeline.Kind(str("k")), str("ref")
	ev.Overdue = str("ov") == "1"
	if str("run") == "1" {
		ev.Deadline = msTime(str("dl"))
	}
	ev.DeliveredAt = msTime(str("da"))
	if it := str("it"); it != "" {
		b := it == "1"
		ev.InTime = &b
	}
	if ms := str("ms"); ms != "" {
		n, _ := strconv.ParseInt(ms, 10, 64)
		sec := float64(n) / 1000
		ev.Seconds = &sec
	}
	if att := str("att"); att != "" {
		ev.Attempt, _ = strconv.Atoi(att)
	}
	return ev, nil
}

func msTime(s string) *time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return nil
	}
	t := time.UnixMilli(n).UTC()
	return &t
}

// AcquireShard takes or renews the relay lease of one shard for owner.
// Only the lease holder relays a shard, so its events leave in order.
func (s *Store) AcquireShard(ctx context.Context, shard int, owner string, ttl time.Duration) (bool, error) {
	key := shardKeys(shard).relay()
	ok, err := s.rdb.SetNX(ctx, key, owner, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("relay lease %d: %w", shard, err)
	}
	if ok {
		return true, nil
	}
	renewed, err := s.scripts.renew.Run(ctx, s.rdb, []string{key}, owner, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("relay lease %d: %w", shard, err)
	}
	return renewed == 1, nil
}

// ReleaseShard gives the relay lease up if owner holds it.
func (s *Store) ReleaseShard(ctx context.Context, shard int, owner string) error {
	return s.scripts.release.Run(ctx, s.rdb, []string{shardKeys(shard).relay()}, owner).Err()
}
