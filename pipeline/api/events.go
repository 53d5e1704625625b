package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/report"
)

// eventFilter is the subject filter of the events a principal may see.
func (s *Server) eventFilter(p Principal) string {
	switch p.Kind {
	case KindIssuer:
		return s.cfg.Prefix + ".events." + p.ID + ".>"
	case KindProvider:
		return s.cfg.Prefix + ".events.*." + p.ID + ".>"
	}
	return s.cfg.Prefix + ".events.>"
}

// report answers the transparency report of a period, computed from the
// events audit log: operators see everything, issuers and providers their
// own notices.
func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	var fields []pipeline.FieldError
	parse := func(name string) time.Time {
		t, err := time.Parse(time.RFC3339Nano, v.Get(name))
		if err != nil {
			fields = append(fields, pipeline.FieldError{Field: name, Problem: "is required, an RFC 3339 time"})
		}
		return t
	}
	from, to := parse("from"), parse("to")
	if len(fields) == 0 && (!to.After(from) || to.Sub(from) > 400*24*time.Hour) {
		fields = append(fields, pipeline.FieldError{Field: "to", Problem: "must be after from, at most 400 days later"})
	}
	if len(fields) > 0 {
		writeProblem(w, http.StatusBadRequest, "validation", "Invalid query", "", fields)
		return
	}
	events, err := s.cfg.Events.EventsBetween(r.Context(), s.eventFilter(principalOf(r)), from, to)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, report.Build(events, from, to))
}

// events streams events as Server-Sent Events: every event of one notice
// from its creation until it is terminal (?notice=<id>), or the principal's
// events from now on until the client leaves.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	filter := s.eventFilter(p)
	var start time.Time
	notice := r.URL.Query().Get("notice")
	if notice != "" {
		rec, err := s.cfg.Store.Get(r.Context(), notice)
		if err == nil && !visible(p, rec) {
			err = pipeline.ErrNotFound
		}
		if err != nil {
			writeError(w, err)
			return
		}
		start = rec.CreatedAt.Add(-time.Second)
		filter = fmt.Sprintf("%s.events.%s.%s.>", s.cfg.Prefix, rec.Issuer, rec.Provider)
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeProblem(w, http.StatusInternalServerError, "no-streaming", "Streaming unsupported", "", nil)
		return
	}
	// Long-lived: lift the server's write timeout for this response.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	err := s.cfg.Events.Follow(r.Context(), filter, start, func(e pipeline.Event) bool {
		if e.NoticeID == "" || (notice != "" && e.NoticeID != notice) {
			return true
		}
		b, _ := json.Marshal(e) // an Event always marshals
		if _, err := fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", e.ID, e.Type, b); err != nil {
			return false
		}
		flusher.Flush()
		return notice == "" || !e.State.Terminal()
	})
	if err != nil && r.Context().Err() == nil {
		s.cfg.Logger.Warn("event stream ended", "component", "api", "err", err)
	}
}
