package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/worker"
	"github.com/takedown-eu/takedown/tracker"
)

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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fieldProblem(w http.ResponseWriter, field, problem string) {
	writeProblem(w, http.StatusBadRequest, "validation", "Invalid request", "", []pipeline.FieldError{{Field: field, Problem: problem}})
}

// readBody reads a request body up to limit bytes, answering 413 beyond.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeProblem(w, http.StatusRequestEntityTooLarge, "too-large", "Request body too large", "", nil)
		return nil, false
	case err != nil:
		writeProblem(w, http.StatusBadRequest, "bad-request", "Unreadable body", err.Error(), nil)
		return nil, false
	}
	return body, true
}

// writeError maps the pipeline's errors to problem responses. Another
// principal's notice answers 404 like a missing one: existence is not
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
	case errors.As(err, &rej) && rej.Reason == "issuer_mismatch":
		writeProblem(w, http.StatusForbidden, "forbidden", "Action for another issuer", "", []pipeline.FieldError{{Field: "issuer", Problem: "is not the authenticated issuer"}})
	case errors.Is(err, pipeline.ErrNotFound), errors.Is(err, pipeline.ErrForbidden), errors.Is(err, pipeline.ErrUnknownPrincipal):
		writeProblem(w, http.StatusNotFound, "not-found", "Notice not found", "", nil)
	case errors.Is(err, pipeline.ErrIllegalTransition):
		writeProblem(w, http.StatusConflict, "illegal-transition", "Not allowed in the notice's state", err.Error(), nil)
	case errors.Is(err, pipeline.ErrInvalid):
		writeProblem(w, http.StatusBadRequest, "validation", "Invalid request", err.Error(), nil)
	case errors.Is(err, tracker.ErrNotYetDelivered):
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusServiceUnavailable, "not-yet-delivered", "Delivery not yet recorded; retry shortly", "", nil)
	default:
		w.Header().Set("Retry-After", "5")
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "Temporarily unavailable; retry later", "", nil)
	}
}
