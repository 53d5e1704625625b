package tracker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/takedown-eu/takedown/pipeline"
)

// Rebuilt is a notice as its events say it is: what Restore writes back
// into the tracker after Redis lost the notice or some of its
// transitions.
type Rebuilt struct {
	ID      string
	Version int64
	State   pipeline.State
	// fields are the notice hash's field/value pairs, as the transition
	// scripts write them.
	fields []string
	body   []byte
	// created is the first receipt, the listing indexes' score.
	created time.Time
	// timeline holds the timeline entries of the latest events.
	timeline []string
}

// ErrIncomplete reports events that cannot rebuild a notice: its first
// events are not among them (the stream's age limit removed them, or they
// were deleted), or a version is missing.
var ErrIncomplete = errors.New("the notice's events are incomplete")

// Rebuild folds a notice's events, in version order as the events stream
// holds them, into the notice as the transition scripts left it. Events
// repeated on the stream (re-published after the duplicate window) count
// once. What no event records is not rebuilt: failed delivery attempts
// before a delivery (so the delivery count may be lower), the attempt
// records, the last feedback message applied (a redelivered message is
// then recognised by the notice's state instead) and the count of
// conflicting submissions.
func Rebuild(events []pipeline.Event) (*Rebuilt, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("rebuild: no events: %w", ErrIncomplete)
	}
	id := events[0].NoticeID
	if uuid.Validate(id) != nil {
		return nil, fmt.Errorf("rebuild: %q is not a notice id", id)
	}
	var (
		rb   = &Rebuilt{ID: id}
		f    = map[string]string{}
		evs  []pipeline.Event
		ms   = func(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
		text = func(b bool) string {
			if b {
				return "1"
			}
			return "0"
		}
	)
	for _, ev := range events {
		if ev.NoticeID != id {
			return nil, fmt.Errorf("rebuild %s: event %s is of another notice", id, ev.ID)
		}
		switch {
		case ev.Version <= rb.Version:
			continue // published again after the duplicate window
		case ev.Version != rb.Version+1:
			return nil, fmt.Errorf("rebuild %s: version %d follows %d: %w", id, ev.Version, rb.Version, ErrIncomplete)
		}
		if ev.Version == 1 && (ev.Type != pipeline.EventReceived || len(ev.Notice) == 0) {
			return nil, fmt.Errorf("rebuild %s: version 1 is %q without the notice: %w", id, ev.Type, ErrIncomplete)
		}
		if ev.Version == 1 && (ev.Issuer == "" || ev.Provider == "" || !ev.Kind.Valid()) {
			return nil, fmt.Errorf("rebuild %s: the received event names no issuer, provider or kind", id)
		}
		rb.Version = ev.Version
		evs = append(evs, ev)
		at := ms(ev.At)
		// What every event carries: the state and the fields of the
		// notice as the change left them.
		f["v"] = strconv.FormatInt(ev.Version, 10)
		f["state"] = string(ev.State)
		f["running"] = text(ev.Deadline != nil)
		if ev.Deadline != nil {
			f["deadline"] = ms(*ev.Deadline)
		}
		if ev.Overdue || f["overdue"] != "" {
			f["overdue"] = text(ev.Overdue)
		}
		if ev.DeliveredAt != nil {
			f["delivered_at"] = ms(*ev.DeliveredAt)
		}
		switch ev.Type {
		case pipeline.EventReceived:
			rb.body, rb.created = ev.Notice, ev.At
			f["fp"] = pipeline.FingerprintOf(ev.Notice)
			f["kind"], f["issuer"], f["provider"], f["ref"] = string(ev.Kind), ev.Issuer, ev.Provider, ev.Reference
			f["created"] = at
		case pipeline.EventDelivered:
			if ev.Deadline == nil || ev.DeliveredAt == nil {
				return nil, fmt.Errorf("rebuild %s: delivered event %d without deadline or receipt", id, ev.Version)
			}
			f["clock"], f["last_delivery"], f["reminders"] = f["delivered_at"], f["delivered_at"], "0"
			f["window"] = strconv.FormatInt(ev.Deadline.Sub(*ev.DeliveredAt).Milliseconds(), 10)
			f["deliveries"] = strconv.Itoa(atoi(f["deliveries"]) + 1)
		case pipeline.EventRedelivered:
			f["deliveries"], f["last_delivery"] = strconv.Itoa(ev.Attempt), at
		case pipeline.EventBlocked:
			f["ground"], f["blocked_at"], f["last_followup"] = string(ev.Ground), at, "0"
		case pipeline.EventResumed, pipeline.EventClarified:
			f["clock"], f["reminders"], f["ground"], f["last_followup"] = at, "0", "", "0"
		case pipeline.EventReminder:
			f["reminders"] = strconv.Itoa(ev.Attempt)
		case pipeline.EventEscalated:
			f["last_followup"] = at
		case pipeline.EventFollowUp:
			f["followups"], f["last_followup"] = strconv.Itoa(ev.Attempt), at
		case pipeline.EventRemoved:
			if ev.ActionAt != nil {
				f["action_at"] = ms(*ev.ActionAt)
			}
			if ev.InTime != nil {
				f["in_time"] = text(*ev.InTime)
			}
		case pipeline.EventReplayed:
			f["deliveries"], f["last_delivery"], f["created"] = "0", "0", at
		}
	}
	if rb.Version == 0 {
		return nil, fmt.Errorf("rebuild %s: no event from version 1 on: %w", id, ErrIncomplete)
	}
	rb.State = pipeline.State(f["state"])
	for _, name := range hashFields {
		if v, ok := f[name]; ok {
			rb.fields = append(rb.fields, name, v)
		}
	}
	for _, ev := range evs[max(0, len(evs)-timelineLength):] {
		rb.timeline = append(rb.timeline, timelineEntry(ev))
	}
	return rb, nil
}

// hashFields are the notice hash's fields Rebuild writes, in a fixed
// order.
var hashFields = []string{"v", "state", "fp", "kind", "issuer", "provider", "ref", "created",
	"deadline", "running", "overdue", "delivered_at", "clock", "window", "last_delivery", "deliveries",
	"reminders", "followups", "last_followup", "ground", "blocked_at", "action_at", "in_time"}

// timelineLength is how many events a notice's timeline keeps (record in
// prelude.lua).
const timelineLength = 200

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// timelineEntry packs an event as record (prelude.lua) does for the
// timeline: the outbox form without the fields every event of the notice
// repeats, and without the received event's notice.
func timelineEntry(ev pipeline.Event) string {
	vals := make([]string, len(packedFields))
	set := func(f, v string) { vals[packedIndex[f]] = v }
	set("v", strconv.FormatInt(ev.Version, 10))
	set("t", string(ev.Type))
	set("at", ev.At.UTC().Format(time.RFC3339Nano))
	set("st", string(ev.State))
	set("run", "0")
	set("ov", "0")
	if ev.Deadline != nil {
		set("dl", strconv.FormatInt(ev.Deadline.UnixMilli(), 10))
		set("run", "1")
	}
	if ev.Overdue {
		set("ov", "1")
	}
	if ev.DeliveredAt != nil {
		set("da", strconv.FormatInt(ev.DeliveredAt.UnixMilli(), 10))
	}
	if ev.InTime != nil {
		set("it", "0")
		if *ev.InTime {
			set("it", "1")
		}
	}
	if ev.Seconds != nil {
		set("ms", strconv.FormatInt(int64(math.Round(*ev.Seconds*1000)), 10))
	}
	if ev.Attempt != 0 {
		set("att", strconv.Itoa(ev.Attempt))
	}
	if ev.Type != pipeline.EventReceived && ev.Type != pipeline.EventReplayed {
		// The details: what the fields above and the notice hash do not
		// hold.
		x := pipeline.Event{Outcome: ev.Outcome, ActionAt: ev.ActionAt, Ground: ev.Ground,
			Explanation: ev.Explanation, ProviderReference: ev.ProviderReference}
		set("x", details(x))
	}
	return strings.Join(vals, "\x1f")
}

// Restore writes a rebuilt notice into the tracker if the tracker still
// holds it at version from (0: not at all), and returns ErrStale if the
// notice moved on meanwhile. An open notice is due for follow-up at now,
// so that the scheduler plans its next step from the restored state; a
// notice whose delivery was not recorded is delivered again (providers
// deduplicate by notice id).
func (s *Store) Restore(ctx context.Context, rb *Rebuilt, from int64, now time.Time) error {
	if rb.Version <= from {
		return fmt.Errorf("restore %s: the tracker's version %d is not behind the events' %d", rb.ID, from, rb.Version)
	}
	due := ""
	if !rb.State.Terminal() && rb.State != pipeline.StateFailed {
		due = strconv.FormatInt(now.UnixMilli(), 10)
	}
	k := s.keysFor(rb.ID)
	issuer, provider := field(rb.fields, "issuer"), field(rb.fields, "provider")
	keys := append(k.transition(rb.ID), k.byIssuer(issuer), k.byProvider(provider))
	args := []any{strconv.FormatInt(from, 10), due, s.zenc.EncodeAll(rb.body, nil), rb.created.UnixMilli(), len(rb.fields) / 2}
	for _, v := range rb.fields {
		args = append(args, v)
	}
	for _, e := range rb.timeline {
		args = append(args, e)
	}
	r, err := s.runKeys(ctx, s.scripts.restore, keys, rb.ID, now, args...)
	if err != nil {
		return fmt.Errorf("restore %s: %w", rb.ID, err)
	}
	return statusErr(r, "restore "+rb.ID)
}

func field(pairs []string, name string) string {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] == name {
			return pairs[i+1]
		}
	}
	return ""
}
