package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/takedown-eu/takedown/pipeline"
)

// events streams events as Server-Sent Events: every event of one notice
// from its creation until it is terminal (?notice=<id>), or the principal's
// events from now on until the client leaves.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	filter := s.cfg.Prefix + ".events.>"
	switch p.Kind {
	case KindIssuer:
		filter = s.cfg.Prefix + ".events." + p.ID + ".>"
	case KindProvider:
		filter = s.cfg.Prefix + ".events.*." + p.ID + ".>"
	}
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
