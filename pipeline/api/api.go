// Package api is takedown's HTTP API under /v1. Providers on webhooks
// answer through it: POST /v1/notices/{id}/feedback with their bearer
// token, the same body, validation and transitions as feedback over NATS.
//
// Errors are application/problem+json (RFC 9457) with field-level detail;
// request bodies are size-limited and unknown JSON fields refused.
//
//	srv := api.New(api.Config{Dir: dir, Feedback: fw, Logger: log})
//	mux.Handle("/v1/", srv.Handler())
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/worker"
	"github.com/takedown-eu/takedown/tracker"
)

// FeedbackApplier applies provider feedback; *worker.Feedback implements
// it. See worker.Feedback.Apply for the error contract.
type FeedbackApplier interface {
	Apply(ctx context.Context, source string, f pipeline.Feedback, principal, msgKey string) error
}

var _ FeedbackApplier = (*worker.Feedback)(nil)

// Config configures the API.
type Config struct {
	Dir      *pipeline.Directory
	Feedback FeedbackApplier
	Logger   *slog.Logger
}

// Principal is an authenticated caller.
type Principal struct {
	Kind string // "provider"
	ID   string
}

type credential struct {
	digest    []byte
	principal Principal
}

// Server serves the API. Safe for concurrent use.
type Server struct {
	cfg   Config
	creds []credential
}

// New builds the API from the directory's token digests.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg}
	for _, p := range cfg.Dir.Providers {
		for _, h := range p.TokenSHA256 {
			d, _ := hex.DecodeString(h) // validated by the directory
			s.creds = append(s.creds, credential{digest: d, principal: Principal{Kind: "provider", ID: p.ID}})
		}
	}
	return s
}

// Handler routes /v1.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/notices/{id}/feedback", s.authenticated("provider", s.postFeedback))
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

func (s *Server) authenticated(kind string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.authenticate(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="takedown"`)
			writeProblem(w, http.StatusUnauthorized, "unauthorized", "Missing or invalid bearer token", "", nil)
			return
		}
		if p.Kind != kind {
			writeProblem(w, http.StatusForbidden, "forbidden", "Not allowed for this principal", "this route is for "+kind+"s", nil)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

func (s *Server) postFeedback(w http.ResponseWriter, r *http.Request) {
	p := r.Context().Value(principalKey{}).(Principal)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, pipeline.MaxFeedbackBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeProblem(w, http.StatusRequestEntityTooLarge, "too-large", "Request body too large", "feedback bodies are limited to 16 KiB", nil)
		return
	}
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "bad-request", "Unreadable body", err.Error(), nil)
		return
	}
	f, err := pipeline.DecodeFeedback(body)
	if err != nil {
		writeError(w, err)
		return
	}
	if id := r.PathValue("id"); f.NoticeID != id {
		writeProblem(w, http.StatusBadRequest, "validation", "Invalid feedback", "", []pipeline.FieldError{{Field: "notice_id", Problem: "differs from the notice id in the path"}})
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > 128 {
		writeProblem(w, http.StatusBadRequest, "validation", "Invalid header", "", []pipeline.FieldError{{Field: "Idempotency-Key", Problem: "longer than 128 characters"}})
		return
	}
	if key != "" {
		key = "h:" + p.ID + ":" + key
	}
	err = s.cfg.Feedback.Apply(r.Context(), "http", f, p.ID, key)
	result := "applied"
	switch {
	case err == nil:
	case errors.Is(err, pipeline.ErrDuplicate):
		result = "duplicate"
	default:
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"notice_id": f.NoticeID, "type": string(f.Type), "result": result})
}

// writeError maps the pipeline's errors to problem responses. Another
// provider's notice answers 404 like a missing one: existence is not
// leaked.
func writeError(w http.ResponseWriter, err error) {
	var verr *pipeline.ValidationError
	var rej *worker.Rejection
	switch {
	case errors.As(err, &verr):
		writeProblem(w, http.StatusBadRequest, "validation", "Invalid "+verr.What, "", verr.Fields)
	case errors.Is(err, pipeline.ErrTooLarge):
		writeProblem(w, http.StatusRequestEntityTooLarge, "too-large", "Request body too large", err.Error(), nil)
	case errors.As(err, &rej) && rej.Reason == "provider_mismatch":
		writeProblem(w, http.StatusForbidden, "forbidden", "Feedback for another provider", "", []pipeline.FieldError{{Field: "provider", Problem: "is not the authenticated provider"}})
	case errors.Is(err, pipeline.ErrNotFound), errors.Is(err, pipeline.ErrForbidden), errors.Is(err, pipeline.ErrUnknownPrincipal):
		writeProblem(w, http.StatusNotFound, "not-found", "Notice not found", "", nil)
	case errors.Is(err, pipeline.ErrIllegalTransition):
		writeProblem(w, http.StatusConflict, "illegal-transition", "Not allowed in the notice's state", err.Error(), nil)
	case errors.Is(err, tracker.ErrNotYetDelivered):
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusServiceUnavailable, "not-yet-delivered", "Delivery not yet recorded; retry shortly", "", nil)
	default:
		w.Header().Set("Retry-After", "5")
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "Temporarily unavailable; retry later", "", nil)
	}
}

// Problem is an RFC 9457 problem document with field-level errors.
type Problem struct {
	Type   string                `json:"type"`
	Title  string                `json:"title"`
	Status int                   `json:"status"`
	Detail string                `json:"detail,omitempty"`
	Errors []pipeline.FieldError `json:"errors,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, typ, title, detail string, fields []pipeline.FieldError) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Problem{Type: "urn:takedown:problem:" + typ, Title: title, Status: status, Detail: detail, Errors: fields})
}
