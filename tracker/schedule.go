package tracker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/pipeline"
)

// Claim takes up to limit notices of one shard whose follow-up is due at
// now, under a lease that ends at leaseEnd. Only the holder of token may
// fire them; if it does not before the lease ends, they come back.
func (s *Store) Claim(ctx context.Context, shard int, now, leaseEnd time.Time, limit int, token string) ([]string, error) {
	k := shardKeys(shard)
	ids, err := s.scripts.claim.Run(ctx, s.rdb, []string{k.due(), k.claims()},
		now.UnixMilli(), leaseEnd.UnixMilli(), limit, token).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("claim shard %d: %w", shard, err)
	}
	return ids, nil
}

// Record is a notice as the tracker holds it.
type Record struct {
	pipeline.Snapshot
	Reference   string
	Fingerprint string
	// Body is the notice's JSON as delivered.
	Body        []byte
	DeliveredAt time.Time
	Running     bool
	Ground      pipeline.Ground
	ActionAt    time.Time
	InTime      bool
	Conflicts   int
}

// Get reads one notice.
func (s *Store) Get(ctx context.Context, id string) (Record, error) {
	recs, err := s.getMany(ctx, []string{id}, true)
	if err != nil {
		return Record{}, fmt.Errorf("get %s: %w", id, err)
	}
	rec, ok := recs[id]
	if !ok {
		return Record{}, fmt.Errorf("get %s: %w", id, pipeline.ErrNotFound)
	}
	return rec, nil
}

// GetMany reads several notices, with their bodies, in one round trip;
// missing ones are left out of the result.
func (s *Store) GetMany(ctx context.Context, ids []string) (map[string]Record, error) {
	return s.getMany(ctx, ids, true)
}

func (s *Store) getMany(ctx context.Context, ids []string, withBody bool) (map[string]Record, error) {
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	bodies := make([]*redis.StringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			k := s.keysFor(id)
			cmds[i] = p.HGetAll(ctx, k.notice(id))
			if withBody {
				bodies[i] = p.Get(ctx, k.body(id))
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("get %d notices: %w", len(ids), err)
	}
	out := make(map[string]Record, len(ids))
	for i, c := range cmds {
		if m := c.Val(); len(m) > 0 {
			rec := parseRecord(m)
			rec.ID = ids[i] // the key names it; the hash does not repeat it
			if withBody {
				body, err := s.zdec.DecodeAll([]byte(bodies[i].Val()), nil)
				if err != nil {
					return nil, fmt.Errorf("body of %s: %w", ids[i], err)
				}
				rec.Body = body
			}
			out[ids[i]] = rec
		}
	}
	return out, nil
}

func parseRecord(m map[string]string) Record {
	ms := func(f string) time.Time {
		n, _ := strconv.ParseInt(m[f], 10, 64)
		if n == 0 {
			return time.Time{}
		}
		return time.UnixMilli(n).UTC()
	}
	n := func(f string) int64 { v, _ := strconv.ParseInt(m[f], 10, 64); return v }
	return Record{
		Snapshot: pipeline.Snapshot{
			Version: n("v"), State: pipeline.State(m["state"]), Kind: pipeline.Kind(m["kind"]),
			Issuer: m["issuer"], Provider: m["provider"], CreatedAt: ms("created"),
			ClockStart: ms("clock"), Deadline: ms("deadline"), Window: time.Duration(n("window")) * time.Millisecond,
			Deliveries: int(n("deliveries")), LastDelivery: ms("last_delivery"), Reminders: int(n("reminders")),
			Overdue: m["overdue"] == "1", FollowUps: int(n("followups")), LastFollowUp: ms("last_followup"),
			BlockedAt: ms("blocked_at"), RetryNotBefore: ms("retry_nb"),
		},
		Reference: m["ref"], Fingerprint: m["fp"],
		DeliveredAt: ms("delivered_at"), Running: m["running"] == "1", Ground: pipeline.Ground(m["ground"]),
		ActionAt: ms("action_at"), InTime: m["in_time"] == "1", Conflicts: int(n("conflicts")),
	}
}

// FollowUp fires a planned follow-up under the claim token, if the notice
// is still at version, and sets its next follow-up (zero: none). act is one
// of the pipeline.FollowUp actions other than deliver and fail, or
// "attempt" for a delivery attempt that failed, or "none".
// att, if not nil, is the delivery attempt of a redeliver or attempt.
func (s *Store) FollowUp(ctx context.Context, id, token string, version int64, act string, now, next time.Time, ev pipeline.Event, att *Attempt) (int64, error) {
	nextMS := int64(0)
	if !next.IsZero() {
		nextMS = next.UnixMilli()
	}
	r, err := s.call(ctx, s.scripts.followup, "follow-up "+act, id, now, token, version, act, nextMS, details(ev), att.json())
	if err != nil {
		return 0, err
	}
	return r.int(0), nil
}

// Fail moves a never-delivered notice to failed under the claim token, or
// with token "" without a claim (a permanent delivery failure). att, if not
// nil, is the attempt that failed.
func (s *Store) Fail(ctx context.Context, id, token string, version int64, now time.Time, reason string, att *Attempt) (int64, error) {
	v := ""
	if token != "" {
		v = strconv.FormatInt(version, 10)
	}
	r, err := s.call(ctx, s.scripts.fail, "fail", id, now, token, v, details(pipeline.Event{Explanation: reason}), att.json())
	if err != nil {
		return 0, err
	}
	return r.int(0), nil
}

// Counts are cluster-wide gauges read from the per-shard counters.
type Counts struct {
	// ByState counts notices per state (terminal states included).
	ByState map[pipeline.State]int64
	// OverdueByProvider counts open notices past their deadline.
	OverdueByProvider map[string]int64
	// Overdue counts them by kind and provider.
	Overdue map[OverdueKey]int64
	// Outbox is the number of events not yet relayed.
	Outbox int64
}

// OverdueKey groups overdue notices.
type OverdueKey struct {
	Kind     pipeline.Kind
	Provider string
}

// Counts sums the per-shard counters in one round trip.
func (s *Store) Counts(ctx context.Context) (Counts, error) {
	states := make([]*redis.MapStringStringCmd, s.shards)
	overdue := make([]*redis.MapStringStringCmd, s.shards)
	outbox := make([]*redis.IntCmd, s.shards)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range s.shards {
			k := shardKeys(i)
			states[i] = p.HGetAll(ctx, k.counts())
			overdue[i] = p.HGetAll(ctx, k.overdue())
			outbox[i] = p.XLen(ctx, k.outbox())
		}
		return nil
	})
	if err != nil {
		return Counts{}, fmt.Errorf("counts: %w", err)
	}
	c := Counts{ByState: map[pipeline.State]int64{}, OverdueByProvider: map[string]int64{}, Overdue: map[OverdueKey]int64{}}
	for i := range s.shards {
		for st, v := range states[i].Val() {
			n, _ := strconv.ParseInt(v, 10, 64)
			c.ByState[pipeline.State(st)] += n
		}
		for f, v := range overdue[i].Val() {
			n, _ := strconv.ParseInt(v, 10, 64)
			kind, provider, _ := strings.Cut(f, ":")
			c.OverdueByProvider[provider] += n
			c.Overdue[OverdueKey{pipeline.Kind(kind), provider}] += n
		}
		c.Outbox += outbox[i].Val()
	}
	return c, nil
}

// endpointsKey holds disabled webhook endpoints: provider -> JSON reason.
const endpointsKey = "td:{endpoints}:disabled"

// DisabledEndpoint says why and since when a provider's endpoint is off.
type DisabledEndpoint struct {
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"`
}

// DisableEndpoint turns a provider's webhook endpoint off (it answered 410
// Gone). Deliveries to it fail until an operator enables it again.
func (s *Store) DisableEndpoint(ctx context.Context, provider string, d DisabledEndpoint) error {
	b, _ := json.Marshal(d) // always marshals
	return s.rdb.HSet(ctx, endpointsKey, provider, b).Err()
}

// EnableEndpoint turns a provider's webhook endpoint back on.
func (s *Store) EnableEndpoint(ctx context.Context, provider string) error {
	return s.rdb.HDel(ctx, endpointsKey, provider).Err()
}

// EndpointDisabled reports whether a provider's endpoint is off, and why.
func (s *Store) EndpointDisabled(ctx context.Context, provider string) (*DisabledEndpoint, error) {
	v, err := s.rdb.HGet(ctx, endpointsKey, provider).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", provider, err)
	}
	var d DisabledEndpoint
	if err := json.Unmarshal([]byte(v), &d); err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", provider, err)
	}
	return &d, nil
}
