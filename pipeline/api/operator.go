package api

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"

	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
)

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// ParkedList is a page of parked messages.
type ParkedList struct {
	Items []bus.ParkedMessage `json:"items"`
	// Next is the sequence to pass as after for the next page.
	Next uint64 `json:"next,omitempty"`
}

func (s *Server) listParked(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	var after uint64
	if a := v.Get("after"); a != "" {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			fieldProblem(w, "after", "must be a stream sequence")
			return
		}
		after = n
	}
	limit := 100
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			fieldProblem(w, "limit", "must be between 1 and 500")
			return
		}
		limit = n
	}
	prefix := ""
	switch src := v.Get("source"); src {
	case "":
	case "intake", "feedback":
		prefix = s.cfg.Prefix + "." + src + "."
	default:
		fieldProblem(w, "source", "must be intake or feedback")
		return
	}
	items, err := s.cfg.Parked.ListParked(r.Context(), after, limit, prefix)
	if err != nil {
		writeError(w, err)
		return
	}
	res := ParkedList{Items: items}
	if res.Items == nil {
		res.Items = []bus.ParkedMessage{}
	}
	if len(items) == limit {
		res.Next = items[len(items)-1].Sequence
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) replayParked(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		fieldProblem(w, "seq", "must be a stream sequence")
		return
	}
	p, err := s.cfg.Parked.ReplayParked(r.Context(), seq)
	if errors.Is(err, pipeline.ErrNotFound) {
		writeProblem(w, http.StatusNotFound, "not-found", "No such parked message", "", nil)
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sequence": seq, "republished_to": p.OriginalSubject, "result": "replayed"})
}

// Summary is the cluster-wide view for operators.
type Summary struct {
	ByState           map[pipeline.State]int64 `json:"by_state"`
	Open              int64                    `json:"open"`
	OverdueByProvider map[string]int64         `json:"overdue_by_provider"`
	Outbox            int64                    `json:"outbox"`
}

func (s *Server) summary(w http.ResponseWriter, r *http.Request) {
	c, err := s.cfg.Store.Counts(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	sum := Summary{ByState: map[pipeline.State]int64{}, OverdueByProvider: map[string]int64{}, Outbox: c.Outbox}
	for _, st := range pipeline.States {
		sum.ByState[st] = c.ByState[st]
		if !st.Terminal() {
			sum.Open += c.ByState[st]
		}
	}
	for p, n := range c.OverdueByProvider {
		if n != 0 {
			sum.OverdueByProvider[p] = n
		}
	}
	writeJSON(w, http.StatusOK, sum)
}
