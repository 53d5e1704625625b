package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/tracker"
)

// NoticeView is a notice as the API shows it.
type NoticeView struct {
	ID          string            `json:"id"`
	Kind        pipeline.Kind     `json:"kind"`
	Issuer      string            `json:"issuer"`
	Provider    string            `json:"provider"`
	Reference   string            `json:"reference"`
	State       pipeline.State    `json:"state"`
	Version     int64             `json:"version"`
	CreatedAt   time.Time         `json:"created_at"`
	DeliveredAt *time.Time        `json:"delivered_at,omitempty"`
	Deadline    *time.Time        `json:"deadline,omitempty"`
	Overdue     bool              `json:"overdue"`
	Ground      pipeline.Ground   `json:"ground,omitempty"`
	ActionAt    *time.Time        `json:"action_at,omitempty"`
	InTime      *bool             `json:"in_time,omitempty"`
	Notice      json.RawMessage   `json:"notice,omitempty"`
	Timeline    []pipeline.Event  `json:"timeline,omitempty"`
	Attempts    []tracker.Attempt `json:"attempts,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func view(r tracker.Record) NoticeView {
	v := NoticeView{
		ID: r.ID, Kind: r.Kind, Issuer: r.Issuer, Provider: r.Provider, Reference: r.Reference, State: r.State,
		Version: r.Version, CreatedAt: r.CreatedAt, DeliveredAt: timePtr(r.DeliveredAt), Overdue: r.Overdue,
		Ground: r.Ground, ActionAt: timePtr(r.ActionAt),
	}
	if r.Running {
		v.Deadline = timePtr(r.Deadline)
	}
	if r.State == pipeline.StateRemoved {
		in := r.InTime
		v.InTime = &in
	}
	return v
}

// visible reports whether p may see a notice of issuer and provider.
func visible(p Principal, r tracker.Record) bool {
	switch p.Kind {
	case KindOperator:
		return true
	case KindIssuer:
		return r.Issuer == p.ID
	case KindProvider:
		return r.Provider == p.ID
	}
	return false
}

// lookup reads a notice the principal may see, or answers 404.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (tracker.Record, bool) {
	rec, err := s.cfg.Store.Get(r.Context(), r.PathValue("id"))
	if err == nil && !visible(principalOf(r), rec) {
		err = pipeline.ErrNotFound
	}
	if err != nil {
		writeError(w, err)
		return tracker.Record{}, false
	}
	return rec, true
}

// SubmitResult answers a submission.
type SubmitResult struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	body, ok := readBody(w, r, pipeline.MaxNoticeBytes)
	if !ok {
		return
	}
	n, err := pipeline.DecodeNotice(body)
	if err != nil {
		writeError(w, err)
		return
	}
	if n.Issuer != p.ID {
		writeProblem(w, http.StatusForbidden, "forbidden", "Notice for another issuer", "", []pipeline.FieldError{{Field: "issuer", Problem: "is not the authenticated issuer"}})
		return
	}
	if _, ok := s.cfg.Dir.Provider(n.Provider); !ok {
		fieldProblem(w, "provider", "is not in the directory")
		return
	}
	id := n.ID()
	status := "/v1/notices/" + id
	existing, err := s.cfg.Store.Get(r.Context(), id)
	switch {
	case err == nil && existing.Fingerprint == n.Fingerprint():
		w.Header().Set("Location", status)
		writeJSON(w, http.StatusOK, SubmitResult{ID: id, Status: status, Duplicate: true})
		return
	case err == nil:
		writeProblem(w, http.StatusConflict, "conflict", "Reference already used for a different notice",
			"notice "+id+" has the same issuer and reference but different content; the original is unchanged", nil)
		return
	case !errors.Is(err, pipeline.ErrNotFound):
		writeError(w, err)
		return
	}
	if err := s.cfg.Intake.PublishIntake(r.Context(), n.Issuer, id, n.JSON()); err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Location", status)
	writeJSON(w, http.StatusAccepted, SubmitResult{ID: id, Status: status})
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.lookup(w, r)
	if !ok {
		return
	}
	v := view(rec)
	v.Notice = rec.Body
	var err error
	if v.Timeline, err = s.cfg.Store.Timeline(r.Context(), rec.ID); err == nil {
		v.Attempts, err = s.cfg.Store.Attempts(r.Context(), rec.ID)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// ListResult is a page of notices.
type ListResult struct {
	Items      []NoticeView `json:"items"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	v := r.URL.Query()
	q := tracker.Query{Issuer: v.Get("issuer"), Provider: v.Get("provider"), Cursor: v.Get("cursor")}
	var fields []pipeline.FieldError
	bad := func(f, problem string) { fields = append(fields, pipeline.FieldError{Field: f, Problem: problem}) }
	switch p.Kind {
	case KindIssuer:
		if q.Issuer != "" && q.Issuer != p.ID {
			bad("issuer", "an issuer lists only its own notices")
		}
		q.Issuer = p.ID
	case KindProvider:
		if q.Provider != "" && q.Provider != p.ID {
			bad("provider", "a provider lists only its own notices")
		}
		q.Provider = p.ID
	}
	if st := v.Get("state"); st != "" {
		q.State = pipeline.State(st)
		valid := false
		for _, x := range pipeline.States {
			valid = valid || x == q.State
		}
		if !valid {
			bad("state", "is not a state")
		}
	}
	if k := v.Get("kind"); k != "" {
		if q.Kind = pipeline.Kind(k); !q.Kind.Valid() {
			bad("kind", "must be removal_order or referral")
		}
	}
	if o := v.Get("overdue"); o != "" {
		b, err := strconv.ParseBool(o)
		if err != nil {
			bad("overdue", "must be true or false")
		}
		q.Overdue = &b
	}
	for name, dst := range map[string]*time.Time{"from": &q.From, "to": &q.To} {
		if t := v.Get(name); t != "" {
			parsed, err := time.Parse(time.RFC3339Nano, t)
			if err != nil {
				bad(name, "must be an RFC 3339 time")
			}
			*dst = parsed
		}
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			bad("limit", "must be between 1 and 500")
		}
		q.Limit = n
	}
	if len(fields) > 0 {
		writeProblem(w, http.StatusBadRequest, "validation", "Invalid query", "", fields)
		return
	}
	for _, is := range s.cfg.Dir.Issuers {
		q.AllIssuers = append(q.AllIssuers, is.ID)
	}
	page, err := s.cfg.Store.List(r.Context(), q)
	if errors.Is(err, tracker.ErrBadCursor) {
		fieldProblem(w, "cursor", "is not a cursor from a previous page")
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	res := ListResult{Items: make([]NoticeView, 0, len(page.Items)), NextCursor: page.NextCursor}
	for _, rec := range page.Items {
		res.Items = append(res.Items, view(rec))
	}
	writeJSON(w, http.StatusOK, res)
}

// ActionResult answers an action or feedback.
type ActionResult struct {
	NoticeID string `json:"notice_id"`
	Type     string `json:"type"`
	Result   string `json:"result"` // applied or duplicate
}

type actionBody struct {
	Explanation string `json:"explanation"`
}

func (s *Server) withdraw(w http.ResponseWriter, r *http.Request) {
	s.action(w, r, pipeline.ActionWithdraw)
}
func (s *Server) clarify(w http.ResponseWriter, r *http.Request) {
	s.action(w, r, pipeline.ActionClarify)
}

func (s *Server) action(w http.ResponseWriter, r *http.Request, typ pipeline.ActionType) {
	p := principalOf(r)
	body, ok := readBody(w, r, pipeline.MaxActionBytes)
	if !ok {
		return
	}
	var ab actionBody
	if len(body) > 0 {
		dec := json.NewDecoder(bytesReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ab); err != nil {
			fieldProblem(w, "(body)", "must be {\"explanation\": \"…\"}: "+err.Error())
			return
		}
	}
	a := pipeline.Action{Schema: pipeline.ActionSchema, NoticeID: r.PathValue("id"), Issuer: p.ID, Type: typ, Explanation: ab.Explanation}
	if err := a.Validate(); err != nil {
		writeError(w, err)
		return
	}
	s.applied(w, a.NoticeID, string(typ), s.cfg.Actions.ApplyAction(r.Context(), "http", a, p.ID, idempotencyKey(r, p)))
}

func (s *Server) applied(w http.ResponseWriter, id, typ string, err error) {
	result := "applied"
	switch {
	case err == nil:
	case errors.Is(err, pipeline.ErrDuplicate):
		result = "duplicate"
	default:
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ActionResult{NoticeID: id, Type: typ, Result: result})
}

// idempotencyKey turns an Idempotency-Key header into the tracker's
// message key, scoped to the principal.
func idempotencyKey(r *http.Request, p Principal) string {
	key := r.Header.Get("Idempotency-Key")
	if key == "" || len(key) > 128 {
		return ""
	}
	return "h:" + p.ID + ":" + key
}

func (s *Server) postFeedback(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	body, ok := readBody(w, r, pipeline.MaxFeedbackBytes)
	if !ok {
		return
	}
	f, err := pipeline.DecodeFeedback(body)
	if err != nil {
		writeError(w, err)
		return
	}
	if f.NoticeID != r.PathValue("id") {
		fieldProblem(w, "notice_id", "differs from the notice id in the path")
		return
	}
	if len(r.Header.Get("Idempotency-Key")) > 128 {
		fieldProblem(w, "Idempotency-Key", "longer than 128 characters")
		return
	}
	s.applied(w, f.NoticeID, string(f.Type), s.cfg.Feedback.Apply(r.Context(), "http", f, p.ID, idempotencyKey(r, p)))
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	_, err := s.cfg.Store.Replay(r.Context(), id, s.cfg.Clock.Now())
	s.applied(w, id, "replay", err)
}
