package tracker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/pipeline"
)

// Timeline returns a notice's events (the latest 200), oldest first. The
// received event does not repeat the notice body; Record.Body has it.
func (s *Store) Timeline(ctx context.Context, id string) ([]pipeline.Event, error) {
	k := s.keysFor(id)
	var lines *redis.StringSliceCmd
	var fixed *redis.SliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		lines = p.LRange(ctx, k.timeline(id), 0, -1)
		fixed = p.HMGet(ctx, k.notice(id), "issuer", "provider", "kind", "ref")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("timeline %s: %w", id, err)
	}
	raw := lines.Val()
	var constant [5]string // as constantFields
	constant[0] = id
	for i := range 4 {
		constant[i+1], _ = fixed.Val()[i].(string)
	}
	out := make([]pipeline.Event, 0, len(raw))
	for _, r := range raw {
		ev, err := timelineEvent(r, constant)
		if err != nil {
			return nil, fmt.Errorf("timeline %s: %w", id, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// constantFields are the event fields a timeline entry leaves out, since
// every event of the notice repeats them: id, issuer, provider, kind,
// reference.
var constantFields = [5]string{"n", "is", "pr", "k", "ref"}

// timelineEvent reads one timeline entry: the packed outbox form without
// the constant fields (given, in the order of constantFields), or the JSON
// object of entries written before that form, which leaves out empty and
// default fields.
func timelineEvent(entry string, constant [5]string) (pipeline.Event, error) {
	if !strings.HasPrefix(entry, "{") {
		vals := strings.SplitN(entry, "\x1f", len(packedFields))
		if len(vals) != len(packedFields) {
			return pipeline.Event{}, fmt.Errorf("packed entry has %d values, want %d", len(vals), len(packedFields))
		}
		for i, f := range constantFields {
			vals[packedIndex[f]] = constant[i]
		}
		return outboxEvent(redis.XMessage{Values: map[string]any{"e": strings.Join(vals, "\x1f")}})
	}
	dec := json.NewDecoder(strings.NewReader(entry))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return pipeline.Event{}, err
	}
	vals := make(map[string]any, len(obj)+len(constant))
	for i, f := range constantFields {
		vals[f] = constant[i]
	}
	for k, v := range obj {
		vals[k] = fmt.Sprint(v)
	}
	return outboxEvent(redis.XMessage{Values: vals})
}

// Query selects notices for a listing. Issuer and Provider scope it (a
// principal sees only its own); the other fields filter.
type Query struct {
	Issuer   string
	Provider string
	State    pipeline.State
	Kind     pipeline.Kind
	Overdue  *bool
	// From and To bound the creation time (inclusive, exclusive).
	From, To time.Time
	// AllIssuers lists every issuer, for a listing scoped by neither
	// issuer nor provider (operators): the per-issuer indexes are merged.
	AllIssuers []string
	// Limit is the page size: default 50, at most 500.
	Limit int
	// Cursor continues a previous page ("" for the first).
	Cursor string
}

// Page is one page of a listing, newest first.
type Page struct {
	Items      []Record
	NextCursor string
}

// ErrBadCursor reports a cursor this store did not issue.
var ErrBadCursor = fmt.Errorf("bad cursor: %w", pipeline.ErrInvalid)

type cursor struct {
	ms int64
	id string
}

func (c cursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.ms, 10) + ":" + c.id))
}

func parseCursor(s string) (cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, ErrBadCursor
	}
	ms, id, ok := strings.Cut(string(b), ":")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil {
		return cursor{}, ErrBadCursor
	}
	return cursor{n, id}, nil
}

// before orders entries newest first: (ms, id) descending.
func (c cursor) before(o cursor) bool { return c.ms > o.ms || (c.ms == o.ms && c.id > o.id) }

// List pages through notices newest first, merging the shards' creation
// indexes and filtering on the notices' current fields.
func (s *Store) List(ctx context.Context, q Query) (Page, error) {
	if q.Limit <= 0 {
		q.Limit = 50
	}
	q.Limit = min(q.Limit, 500)
	var after *cursor
	if q.Cursor != "" {
		c, err := parseCursor(q.Cursor)
		if err != nil {
			return Page{}, err
		}
		after = &c
	}
	// The indexes to merge: one per shard, or for an unscoped listing one
	// per issuer and shard.
	var sources []string
	for i := range s.shards {
		k := shardKeys(i)
		switch {
		case q.Issuer != "":
			sources = append(sources, k.byIssuer(q.Issuer))
		case q.Provider != "":
			sources = append(sources, k.byProvider(q.Provider))
		default:
			for _, is := range q.AllIssuers {
				sources = append(sources, k.byIssuer(is))
			}
		}
	}
	maxScore := "+inf"
	if !q.To.IsZero() {
		maxScore = "(" + strconv.FormatInt(q.To.UnixMilli(), 10)
	}
	if after != nil {
		maxScore = strconv.FormatInt(after.ms, 10)
	}
	minScore := "-inf"
	if !q.From.IsZero() {
		minScore = strconv.FormatInt(q.From.UnixMilli(), 10)
	}
	var page Page
	var last cursor // index position of the last entry looked at
	batch := int64(q.Limit + 1)
	offsets := make([]int64, len(sources))
	exhausted := make([]bool, len(sources))
	lastFetched := make([]int64, len(sources))
	pending := []cursor{}
	done := func() bool { return allTrue(exhausted) && len(pending) == 0 }
	for rounds := 0; rounds < 20 && !done(); rounds++ {
		// Fetch the next batch of each index.
		cmds := make([]*redis.ZSliceCmd, len(sources))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, key := range sources {
				if !exhausted[i] {
					cmds[i] = p.ZRevRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Max: maxScore, Min: minScore, Offset: offsets[i], Count: batch})
				}
			}
			return nil
		})
		if err != nil {
			return Page{}, fmt.Errorf("list: %w", err)
		}
		for i, c := range cmds {
			if c == nil {
				continue
			}
			zs := c.Val()
			offsets[i] += int64(len(zs))
			if int64(len(zs)) < batch {
				exhausted[i] = true
			}
			for _, z := range zs {
				e := cursor{int64(z.Score), z.Member.(string)}
				lastFetched[i] = e.ms
				if after == nil || after.before(e) {
					pending = append(pending, e)
				}
			}
		}
		slices.SortFunc(pending, func(a, b cursor) int {
			if a.before(b) {
				return -1
			}
			if b.before(a) {
				return 1
			}
			return 0
		})
		// Entries are final only down to where an index not yet read to
		// its end might still hold newer ones.
		safe := len(pending)
		for i := range sources {
			if !exhausted[i] {
				for j, e := range pending {
					if e.ms <= lastFetched[i] {
						safe = min(safe, j)
						break
					}
				}
			}
		}
		ids := make([]string, 0, safe)
		for _, e := range pending[:safe] {
			ids = append(ids, e.id)
		}
		recs, err := s.getMany(ctx, ids, false)
		if err != nil {
			return Page{}, err
		}
		for _, e := range pending[:safe] {
			rec, ok := recs[e.id]
			if ok && q.matches(rec) {
				if len(page.Items) == q.Limit {
					page.NextCursor = last.String()
					return page, nil
				}
				page.Items = append(page.Items, rec)
			}
			last = e
		}
		pending = pending[safe:]
	}
	// A full page, or a search cut short by its round limit, continues
	// from the last entry looked at.
	if !done() && (len(page.Items) == q.Limit || last != (cursor{})) {
		page.NextCursor = last.String()
	}
	return page, nil
}

func allTrue(b []bool) bool {
	for _, v := range b {
		if !v {
			return false
		}
	}
	return true
}

func (q Query) matches(r Record) bool {
	return (q.Issuer == "" || r.Issuer == q.Issuer) &&
		(q.Provider == "" || r.Provider == q.Provider) &&
		(q.State == "" || r.State == q.State) &&
		(q.Kind == "" || r.Kind == q.Kind) &&
		(q.Overdue == nil || r.Overdue == *q.Overdue)
}
