// Package api is takedown's HTTP API under /v1: issuers submit and follow
// notices, withdraw them and answer clarification requests; providers read
// their notices and post feedback; operators read everything, list and
// replay parked messages and failed notices, and see a cluster summary.
//
// Every request but GET /v1/openapi.json carries a bearer token; the
// directory holds only their SHA-256 digests. Another principal's notice
// answers 404, like a missing one. Errors are application/problem+json (RFC
// 9457) with field-level detail; bodies are size-limited and unknown JSON
// fields refused; each principal has a rate limit (429 with Retry-After).
//
//	srv := api.New(api.Config{Dir: dir, Store: st, Intake: b, Actions: in, Feedback: fb, Parked: b, Events: b})
//	mux.Handle("/v1/", srv.Handler())
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/hex"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/pipeline/worker"
	"github.com/takedown-eu/takedown/tracker"
)

// OpenAPI is the API's OpenAPI 3.1 document, served at /v1/openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Store is what the API reads and repairs in the tracker.
type Store interface {
	Get(ctx context.Context, id string) (tracker.Record, error)
	Timeline(ctx context.Context, id string) ([]pipeline.Event, error)
	Attempts(ctx context.Context, id string) ([]tracker.Attempt, error)
	List(ctx context.Context, q tracker.Query) (tracker.Page, error)
	Counts(ctx context.Context) (tracker.Counts, error)
	Replay(ctx context.Context, id string, now time.Time) (int64, error)
}

// IntakePublisher hands a submitted notice to the intake stream, so it
// takes the same path as one published over NATS.
type IntakePublisher interface {
	PublishIntake(ctx context.Context, issuer, msgID string, body []byte) error
}

// ActionApplier applies issuer actions; *worker.Intake implements it.
type ActionApplier interface {
	ApplyAction(ctx context.Context, source string, a pipeline.Action, principal, msgKey string) error
}

// FeedbackApplier applies provider feedback; *worker.Feedback implements
// it. See worker.Feedback.Apply for the error contract.
type FeedbackApplier interface {
	Apply(ctx context.Context, source string, f pipeline.Feedback, principal, msgKey string) error
}

// ParkedStore lists and replays parked messages; *bus.Bus implements it.
type ParkedStore interface {
	ListParked(ctx context.Context, after uint64, limit int, prefix string) ([]bus.ParkedMessage, error)
	ReplayParked(ctx context.Context, seq uint64) (bus.ParkedMessage, error)
}

// EventFollower streams and reads events; *bus.Bus implements it.
type EventFollower interface {
	Follow(ctx context.Context, filter string, start time.Time, fn func(pipeline.Event) bool) error
	EventsBetween(ctx context.Context, filter string, from, to time.Time) ([]pipeline.Event, error)
}

var (
	_ Store           = (*tracker.Store)(nil)
	_ IntakePublisher = (*bus.Bus)(nil)
	_ ActionApplier   = (*worker.Intake)(nil)
	_ FeedbackApplier = (*worker.Feedback)(nil)
	_ ParkedStore     = (*bus.Bus)(nil)
	_ EventFollower   = (*bus.Bus)(nil)
)

// Config configures the API. Dir, Store and the appliers are required;
// zero limits take the defaults.
type Config struct {
	Dir      *pipeline.Directory
	Store    Store
	Intake   IntakePublisher
	Actions  ActionApplier
	Feedback FeedbackApplier
	Parked   ParkedStore
	Events   EventFollower
	Clock    pipeline.Clock
	Logger   *slog.Logger
	// Prefix is the NATS subject prefix, for event filters. Default "takedown".
	Prefix string
	// Rate and Burst limit requests per principal. Default 20/s, burst 40.
	Rate  float64
	Burst int
}

// Principal is an authenticated caller.
type Principal struct {
	Kind string // "issuer", "provider" or "operator"
	ID   string
}

// Principal kinds.
const (
	KindIssuer   = "issuer"
	KindProvider = "provider"
	KindOperator = "operator"
)

type credential struct {
	digest    []byte
	principal Principal
}

// Server serves the API. Safe for concurrent use.
type Server struct {
	cfg   Config
	creds []credential

	mu       sync.Mutex
	limiters map[Principal]*rate.Limiter
}

// New builds the API from the directory's token digests.
func New(cfg Config) *Server {
	if cfg.Clock == nil {
		cfg.Clock = pipeline.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "takedown"
	}
	if cfg.Rate == 0 {
		cfg.Rate = 20
	}
	if cfg.Burst == 0 {
		cfg.Burst = 40
	}
	s := &Server{cfg: cfg, limiters: map[Principal]*rate.Limiter{}}
	add := func(kind, id string, digests []string) {
		for _, h := range digests {
			d, _ := hex.DecodeString(h) // validated by the directory
			s.creds = append(s.creds, credential{digest: d, principal: Principal{Kind: kind, ID: id}})
		}
	}
	for _, i := range cfg.Dir.Issuers {
		add(KindIssuer, i.ID, i.TokenSHA256)
	}
	for _, p := range cfg.Dir.Providers {
		add(KindProvider, p.ID, p.TokenSHA256)
	}
	for _, o := range cfg.Dir.Operators {
		add(KindOperator, o.ID, o.TokenSHA256)
	}
	return s
}

// Route is one operation of the API.
type Route struct {
	Method, Pattern string
	// Kinds are the principal kinds allowed; empty: no authentication.
	Kinds []string
}

// Routes lists every operation, as served and as documented in OpenAPI.
func (s *Server) Routes() []Route {
	var out []Route
	for _, r := range s.table() {
		out = append(out, r.Route)
	}
	return out
}

type routeEntry struct {
	Route
	h http.HandlerFunc
}

func (s *Server) table() []routeEntry {
	all := []string{KindIssuer, KindProvider, KindOperator}
	return []routeEntry{
		{Route{"GET", "/v1/openapi.json", nil}, s.getOpenAPI},
		{Route{"POST", "/v1/notices", []string{KindIssuer}}, s.submit},
		{Route{"GET", "/v1/notices", all}, s.list},
		{Route{"GET", "/v1/notices/{id}", all}, s.get},
		{Route{"POST", "/v1/notices/{id}/withdraw", []string{KindIssuer}}, s.withdraw},
		{Route{"POST", "/v1/notices/{id}/clarify", []string{KindIssuer}}, s.clarify},
		{Route{"POST", "/v1/notices/{id}/feedback", []string{KindProvider}}, s.postFeedback},
		{Route{"POST", "/v1/notices/{id}/replay", []string{KindOperator}}, s.replay},
		{Route{"GET", "/v1/events", all}, s.events},
		{Route{"GET", "/v1/parked", []string{KindOperator}}, s.listParked},
		{Route{"POST", "/v1/parked/{seq}/replay", []string{KindOperator}}, s.replayParked},
		{Route{"GET", "/v1/summary", []string{KindOperator}}, s.summary},
		{Route{"GET", "/v1/report", all}, s.report},
	}
}

// Handler routes /v1.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.table() {
		h := http.Handler(r.h)
		if len(r.Kinds) > 0 {
			h = s.authenticated(r.Kinds, r.h)
		}
		mux.Handle(r.Method+" "+r.Pattern, h)
	}
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "not-found", "No such resource", "no route for "+r.Method+" "+r.URL.Path, nil)
	})
	return mux
}

// TokenDigest is the hex SHA-256 of a bearer token, as the directory's
// token_sha256 entries hold it.
func TokenDigest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// authenticate finds the principal of a bearer token. Every stored digest
// is compared, in constant time, so the time taken does not tell which.
func (s *Server) authenticate(r *http.Request) (Principal, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return Principal{}, false
	}
	sum := sha256.Sum256([]byte(token))
	var found Principal
	match := 0
	for _, c := range s.creds {
		if subtle.ConstantTimeCompare(sum[:], c.digest) == 1 {
			found, match = c.principal, 1
		}
	}
	return found, match == 1
}

type principalKey struct{}

func principalOf(r *http.Request) Principal { return r.Context().Value(principalKey{}).(Principal) }

func (s *Server) authenticated(kinds []string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.authenticate(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="takedown"`)
			writeProblem(w, http.StatusUnauthorized, "unauthorized", "Missing or invalid bearer token", "", nil)
			return
		}
		if wait, ok := s.allow(p); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			writeProblem(w, http.StatusTooManyRequests, "rate-limited", "Too many requests", "slow down and retry after the given delay", nil)
			return
		}
		allowed := false
		for _, k := range kinds {
			allowed = allowed || k == p.Kind
		}
		if !allowed {
			writeProblem(w, http.StatusForbidden, "forbidden", "Not allowed for this principal", "this operation is for "+strings.Join(kinds, " or ")+"s", nil)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// allow takes one token from the principal's bucket, or says how long to
// wait for one.
func (s *Server) allow(p Principal) (time.Duration, bool) {
	s.mu.Lock()
	l, ok := s.limiters[p]
	if !ok {
		l = rate.NewLimiter(rate.Limit(s.cfg.Rate), s.cfg.Burst)
		s.limiters[p] = l
	}
	s.mu.Unlock()
	r := l.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return max(d, time.Second), false
	}
	return 0, true
}

func (s *Server) getOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(OpenAPI)
}
