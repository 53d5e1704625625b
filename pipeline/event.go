package pipeline

import (
	"encoding/json"
	"strconv"
	"time"
)

// State is where a notice stands. See design §5 for the graph.
type State string

const (
	StateReceived     State = "received"
	StateDelivered    State = "delivered"
	StateAcknowledged State = "acknowledged"
	StateBlocked      State = "blocked"
	StateRemoved      State = "removed"
	StateDeclined     State = "declined"
	StateWithdrawn    State = "withdrawn"
	// StateFailed: delivery was exhausted. The notice is parked, open and
	// replayable; it is never dropped.
	StateFailed State = "failed"
)

// States lists every state, in a fixed order.
var States = []State{StateReceived, StateDelivered, StateAcknowledged, StateBlocked, StateRemoved, StateDeclined, StateWithdrawn, StateFailed}

// Terminal reports whether no further transition can leave s.
func (s State) Terminal() bool {
	return s == StateRemoved || s == StateDeclined || s == StateWithdrawn
}

// EventType names what happened to a notice.
type EventType string

const (
	EventReceived     EventType = "received"
	EventDelivered    EventType = "delivered"
	EventRedelivered  EventType = "redelivered"
	EventAcknowledged EventType = "acknowledged"
	EventRemoved      EventType = "removed"
	EventBlocked      EventType = "blocked"
	EventResumed      EventType = "resumed"
	EventClarified    EventType = "clarified"
	EventDeclined     EventType = "declined"
	EventWithdrawn    EventType = "withdrawn"
	EventFailed       EventType = "failed"
	EventReminder     EventType = "reminder"
	EventEscalated    EventType = "escalated"
	EventFollowUp     EventType = "follow_up"
	EventReplayed     EventType = "replayed"
)

// Event is the audit record of one change to a notice. Version increases by
// one per event; "<notice_id>.<version>" is its id and its Nats-Msg-Id.
type Event struct {
	Schema   string    `json:"schema"`
	ID       string    `json:"id"`
	NoticeID string    `json:"notice_id"`
	Version  int64     `json:"version"`
	Type     EventType `json:"type"`
	At       time.Time `json:"at"`
	State    State     `json:"state"`
	Issuer   string    `json:"issuer"`
	Provider string    `json:"provider"`
	Kind     Kind      `json:"kind"`
	// Reference is the issuer's reference number.
	Reference string     `json:"reference,omitempty"`
	Deadline  *time.Time `json:"deadline,omitempty"`
	Overdue   bool       `json:"overdue,omitempty"`
	// DeliveredAt is the receipt at the provider's contact point.
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	// Outcome, ActionAt, InTime and Seconds describe a removal: the
	// measure (removed or disabled), the provider's time of action, whether
	// it met the deadline, and seconds from delivery to action.
	Outcome           FeedbackType `json:"outcome,omitempty"`
	ActionAt          *time.Time   `json:"action_at,omitempty"`
	InTime            *bool        `json:"in_time,omitempty"`
	Seconds           *float64     `json:"seconds,omitempty"`
	Ground            Ground       `json:"ground,omitempty"`
	Explanation       string       `json:"explanation,omitempty"`
	ProviderReference string       `json:"provider_reference,omitempty"`
	// Attempt counts deliveries (redelivered) or follow-ups (reminder,
	// follow_up).
	Attempt int `json:"attempt,omitempty"`
	// Notice is the full notice, on the received event only, so that the
	// events stream alone can rebuild the tracker.
	Notice json.RawMessage `json:"notice,omitempty"`
}

// EventID is "<notice_id>.<version>".
func EventID(noticeID string, version int64) string {
	return noticeID + "." + strconv.FormatInt(version, 10)
}
