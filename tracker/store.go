package tracker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/pipeline"
)

// Config configures a Store. The zero value is usable: 16 shards.
type Config struct {
	// Shards is the number of hash-tag shards. It must not change while
	// data exists: a notice's shard is derived from its id. Default 16.
	Shards int
	// NoAutoPipeline runs the scripts on the client itself, one round
	// trip each, instead of through its autopipeliner (which shares round
	// trips among concurrent callers: less CPU under load, a little more
	// latency for a lone caller).
	NoAutoPipeline bool
}

// Store is the Redis tracker. It is safe for concurrent use; it does not
// own the client, so Close the client yourself.
type Store struct {
	rdb redis.UniversalClient
	// ap runs the transition scripts: the client's autopipeliner when it
	// has one, so that scripts called concurrently (many workers, one
	// notice each) share round trips instead of taking one each.
	ap      redis.Scripter
	shards  int
	scripts scripts
	// Notice bodies are stored zstd-compressed: they are most of a
	// notice's memory and read only on delivery and by the API.
	zenc *zstd.Encoder
	zdec *zstd.Decoder
}

// New returns a Store over rdb, which may be a single client, a Sentinel
// failover client or a cluster client.
func New(rdb redis.UniversalClient, cfg Config) (*Store, error) {
	if cfg.Shards == 0 {
		cfg.Shards = 16
	}
	if cfg.Shards < 1 || cfg.Shards > 1024 {
		return nil, fmt.Errorf("tracker: shards must be between 1 and 1024, got %d", cfg.Shards)
	}
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("tracker: %w", err)
	}
	zdec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0))
	if err != nil {
		return nil, fmt.Errorf("tracker: %w", err)
	}
	ap := redis.Scripter(rdb)
	if !cfg.NoAutoPipeline {
		ap = autoPipeliner(rdb)
	}
	return &Store{rdb: rdb, ap: ap, shards: cfg.Shards, scripts: loadScripts(), zenc: zenc, zdec: zdec}, nil
}

// autoPipeliner returns rdb's blocking autopipeliner, which batches the
// commands of concurrent callers into pipelines (each caller still waits
// for its own reply), or rdb itself when it has none. The autopipeliner
// belongs to the client and is closed with it.
func autoPipeliner(rdb redis.UniversalClient) redis.Scripter {
	var (
		ap  *redis.AutoPipeliner
		err error
	)
	switch c := rdb.(type) {
	case *redis.Client:
		ap, err = c.AutoPipeline()
	case *redis.ClusterClient:
		ap, err = c.AutoPipeline()
	default:
		return rdb
	}
	if err != nil {
		return rdb
	}
	return ap
}

// Shards is the configured shard count.
func (s *Store) Shards() int { return s.shards }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

func (s *Store) keysFor(id string) keys { return shardKeys(ShardOf(id, s.shards)) }

// reply is a parsed script reply: a status word and its values.
type reply struct {
	status string
	vals   []any
}

func (r reply) int(i int) int64 {
	if i >= len(r.vals) {
		return 0
	}
	switch v := r.vals[i].(type) {
	case int64:
		return v
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return 0
}

func (r reply) str(i int) string {
	if i >= len(r.vals) {
		return ""
	}
	s, _ := r.vals[i].(string)
	return s
}

func (s *Store) run(ctx context.Context, sc *redis.Script, id string, now time.Time, args ...any) (reply, error) {
	return s.runKeys(ctx, sc, s.keysFor(id).transition(id), id, now, args...)
}

func (s *Store) runKeys(ctx context.Context, sc *redis.Script, keys []string, id string, now time.Time, args ...any) (reply, error) {
	argv := append([]any{id, now.UnixMilli(), now.UTC().Format(time.RFC3339Nano)}, args...)
	res, err := sc.Run(ctx, s.ap, keys, argv...).Slice()
	if err != nil {
		return reply{}, err
	}
	if len(res) == 0 {
		return reply{}, errors.New("tracker: empty script reply")
	}
	st, _ := res[0].(string)
	return reply{status: st, vals: res[1:]}, nil
}

// call runs a transition script and maps its status to the package's
// errors; op names the transition in them.
func (s *Store) call(ctx context.Context, sc *redis.Script, op, id string, now time.Time, args ...any) (reply, error) {
	r, err := s.run(ctx, sc, id, now, args...)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", op, id, err)
	}
	if err := statusErr(r, op+" "+id); err != nil {
		return reply{}, err
	}
	return r, nil
}

// statusErr maps a script status to the package's errors.
func statusErr(r reply, op string) error {
	switch r.status {
	case "ok":
		return nil
	case "dup":
		return fmt.Errorf("%s: notice is %s: %w", op, r.str(0), pipeline.ErrDuplicate)
	case "not_found":
		return fmt.Errorf("%s: %w", op, pipeline.ErrNotFound)
	case "forbidden":
		return fmt.Errorf("%s: %w", op, pipeline.ErrForbidden)
	case "conflict":
		return fmt.Errorf("%s: %w", op, pipeline.ErrConflict)
	case "stale":
		return fmt.Errorf("%s: %w", op, pipeline.ErrStale)
	case "early":
		return fmt.Errorf("%s: %w", op, ErrNotYetDelivered)
	case "illegal":
		return &IllegalTransition{Op: op, State: pipeline.State(r.str(0)), Ground: r.str(1)}
	}
	return fmt.Errorf("%s: unexpected script status %q", op, r.status)
}

// IllegalTransition is a transition the notice's state does not allow.
// It matches pipeline.ErrIllegalTransition.
type IllegalTransition struct {
	Op     string
	State  pipeline.State // the notice's state
	Ground string         // a blocked notice's ground, when it decided
}

func (e *IllegalTransition) Error() string {
	msg := fmt.Sprintf("%s: notice is %s", e.Op, e.State)
	if e.Ground != "" {
		msg += " (ground " + e.Ground + ")"
	}
	return msg + ": " + pipeline.ErrIllegalTransition.Error()
}

func (e *IllegalTransition) Unwrap() error { return pipeline.ErrIllegalTransition }

// ErrNotYetDelivered reports feedback that overtook the delivery record:
// the provider answered before the tracker recorded the delivery. Retry
// shortly; it is not a rejection.
var ErrNotYetDelivered = errors.New("notice not yet recorded as delivered")

// details is the JSON of an event's type-specific fields, or "" when it
// has none.
func details(e pipeline.Event) string {
	if reflect.ValueOf(e).IsZero() {
		return ""
	}
	b, _ := json.Marshal(e) // an Event always marshals
	return string(b)
}

// Create records a new notice as received. body is the notice's JSON as
// json.Marshal writes it (and as it will be delivered). firstFollowUp is when the scheduler should check
// that delivery happened. It returns ErrDuplicate for the same submission
// again and ErrConflict for the same reference with different content.
func (s *Store) Create(ctx context.Context, n *pipeline.Notice, body []byte, now, firstFollowUp time.Time) (int64, error) {
	id := n.ID()
	k := s.keysFor(id)
	keys := append(k.transition(id), k.byIssuer(n.Issuer), k.byProvider(n.Provider))
	r, err := s.runKeys(ctx, s.scripts.create, keys, id, now,
		pipeline.FingerprintOf(body), string(n.Kind), n.Issuer, n.Provider, n.Reference,
		firstFollowUp.UnixMilli(), s.zenc.EncodeAll(body, nil), receivedDetails(body))
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", id, err)
	}
	if err := statusErr(r, "create "+id); err != nil {
		return 0, err
	}
	return r.int(0), nil
}

// receivedPrefix starts the received event's details, which carry the
// notice.
const receivedPrefix = `{"notice":`

// receivedDetails are the received event's details: the notice as
// submitted (already validated JSON).
func receivedDetails(body []byte) string { return receivedPrefix + string(body) + "}" }

// Attempt is one delivery attempt as the tracker records it.
type Attempt struct {
	N       int       `json:"n"`
	At      time.Time `json:"at"`
	Channel string    `json:"channel"`
	// Status is the HTTP status of a webhook attempt (0 when none came).
	Status  int     `json:"status,omitempty"`
	Seconds float64 `json:"seconds"`
	Error   string  `json:"error,omitempty"`
}

func (a *Attempt) json() string {
	if a == nil {
		return ""
	}
	b, _ := json.Marshal(a) // an Attempt always marshals
	return string(b)
}

// Delivered records receipt at the provider's contact point at now and
// starts the window. next is the first follow-up; att, if not nil, is the
// successful attempt.
func (s *Store) Delivered(ctx context.Context, id string, now time.Time, window time.Duration, next time.Time, att *Attempt) (deadline time.Time, err error) {
	r, err := s.call(ctx, s.scripts.deliver, "deliver", id, now, window.Milliseconds(), next.UnixMilli(), "", att.json())
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(r.int(1)).UTC(), nil
}

// AttemptFailed records a failed delivery attempt of a notice not yet
// delivered and when to try again (retryNotBefore: the provider's
// Retry-After, zero for none). It returns ErrDuplicate if the notice was
// delivered meanwhile.
func (s *Store) AttemptFailed(ctx context.Context, id string, now time.Time, att Attempt, next, retryNotBefore time.Time) error {
	nb := int64(0)
	if !retryNotBefore.IsZero() {
		nb = retryNotBefore.UnixMilli()
	}
	_, err := s.call(ctx, s.scripts.attempt, "attempt", id, now, att.json(), next.UnixMilli(), nb)
	return err
}

// Attempts returns a notice's latest delivery attempts, oldest first.
func (s *Store) Attempts(ctx context.Context, id string) ([]Attempt, error) {
	raw, err := s.rdb.LRange(ctx, s.keysFor(id).attempts(id), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("attempts %s: %w", id, err)
	}
	out := make([]Attempt, 0, len(raw))
	for _, r := range raw {
		var a Attempt
		if err := json.Unmarshal([]byte(r), &a); err != nil {
			return nil, fmt.Errorf("attempts %s: %w", id, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// Applied is the outcome of a provider's feedback that changed state.
type Applied struct {
	Version int64
	// Removal details, set for removed and disabled.
	InTime        bool
	TimeToRemoval time.Duration
	Kind          pipeline.Kind
}

// ApplyFeedback applies a provider's feedback. msgKey identifies the
// message carrying it (its stream sequence) so a redelivered message is a
// no-op; pass "" when there is none.
func (s *Store) ApplyFeedback(ctx context.Context, f pipeline.Feedback, msgKey string, now time.Time) (Applied, error) {
	op, id := string(f.Type), f.NoticeID
	var (
		r   reply
		err error
	)
	ev := pipeline.Event{ProviderReference: f.ProviderReference, Explanation: f.Explanation}
	switch f.Type {
	case pipeline.FeedbackAcknowledged:
		r, err = s.call(ctx, s.scripts.acknowledge, op, id, now, f.Provider, msgKey, details(ev))
	case pipeline.FeedbackRemoved, pipeline.FeedbackDisabled:
		ev.Outcome, ev.ActionAt = f.Type, f.ActionAt
		r, err = s.call(ctx, s.scripts.remove, op, id, now, f.Provider, msgKey, f.ActionAt.UnixMilli(), details(ev))
	case pipeline.FeedbackBlocked:
		ev.Ground = f.Ground
		r, err = s.call(ctx, s.scripts.block, op, id, now, f.Provider, msgKey, string(f.Ground), details(ev))
	case pipeline.FeedbackResumed:
		r, err = s.call(ctx, s.scripts.resume, op, id, now, "provider", f.Provider, msgKey, details(ev))
	case pipeline.FeedbackDeclined:
		r, err = s.call(ctx, s.scripts.decline, op, id, now, f.Provider, msgKey, details(ev))
	default:
		return Applied{}, fmt.Errorf("%s %s: unknown feedback type: %w", op, id, pipeline.ErrInvalid)
	}
	if err != nil {
		return Applied{}, err
	}
	a := Applied{Version: r.int(0)}
	if f.Type == pipeline.FeedbackRemoved || f.Type == pipeline.FeedbackDisabled {
		a.InTime = r.int(1) == 1
		a.TimeToRemoval = time.Duration(r.int(2)) * time.Millisecond
		a.Kind = pipeline.Kind(r.str(3))
	}
	return a, nil
}

// ApplyAction applies an issuer's withdrawal or clarification.
func (s *Store) ApplyAction(ctx context.Context, a pipeline.Action, msgKey string, now time.Time) (int64, error) {
	op, id := string(a.Type), a.NoticeID
	var (
		r   reply
		err error
	)
	ev := details(pipeline.Event{Explanation: a.Explanation})
	switch a.Type {
	case pipeline.ActionWithdraw:
		r, err = s.call(ctx, s.scripts.withdraw, op, id, now, a.Issuer, msgKey, ev)
	case pipeline.ActionClarify:
		r, err = s.call(ctx, s.scripts.resume, op, id, now, "issuer", a.Issuer, msgKey, ev)
	default:
		return 0, fmt.Errorf("%s %s: unknown action: %w", op, id, pipeline.ErrInvalid)
	}
	if err != nil {
		return 0, err
	}
	return r.int(0), nil
}

// Replay sends a failed notice through delivery again.
func (s *Store) Replay(ctx context.Context, id string, now time.Time) (int64, error) {
	r, err := s.call(ctx, s.scripts.replay, "replay", id, now, now.UnixMilli(), "")
	if err != nil {
		return 0, err
	}
	return r.int(0), nil
}
