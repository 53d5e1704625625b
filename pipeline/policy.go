package pipeline

import (
	"fmt"
	"hash/fnv"
	"time"
)

// Policy is the follow-up plan for one kind of notice.
type Policy struct {
	// Window is the time the provider has from delivery (or from resuming
	// after a block). Removal orders: 1h by law.
	Window Duration `json:"window" yaml:"window"`
	// Reminders are fractions of Window at which a reminder event fires,
	// ascending, each in (0,1).
	Reminders []float64 `json:"reminders" yaml:"reminders"`
	// RedeliverEvery is how long a delivered notice may stay
	// unacknowledged before it is delivered again.
	RedeliverEvery Duration `json:"redeliver_every" yaml:"redeliver_every"`
	// MaxDeliveries bounds delivery attempts. A notice that was never
	// delivered goes to failed after this many; a delivered one stops being
	// redelivered.
	MaxDeliveries int `json:"max_deliveries" yaml:"max_deliveries"`
	// RetryDeliveryEvery spaces delivery attempts of a notice that is not
	// yet delivered (the deliver stream was unreachable, for example).
	RetryDeliveryEvery Duration `json:"retry_delivery_every" yaml:"retry_delivery_every"`
	// FollowUpEvery is the slower cadence after escalation, until the
	// notice reaches a terminal state.
	FollowUpEvery Duration `json:"follow_up_every" yaml:"follow_up_every"`
	// BlockedFollowUpEvery is the cadence of follow-ups while blocked.
	BlockedFollowUpEvery Duration `json:"blocked_follow_up_every" yaml:"blocked_follow_up_every"`
	// RetrySchedule, when set (webhook providers), replaces
	// RetryDeliveryEvery and MaxDeliveries for a notice not yet delivered:
	// retry i waits RetrySchedule[i-1] (with a ±10% jitter), and the notice
	// fails after the last.
	RetrySchedule []Duration `json:"-" yaml:"-"`
}

// DefaultPolicy is the policy of a kind when the directory names none.
func DefaultPolicy(k Kind) Policy {
	p := Policy{
		Window:               Duration(time.Hour),
		Reminders:            []float64{0.5, 0.85},
		RedeliverEvery:       Duration(10 * time.Minute),
		MaxDeliveries:        5,
		RetryDeliveryEvery:   Duration(30 * time.Second),
		FollowUpEvery:        Duration(time.Hour),
		BlockedFollowUpEvery: Duration(6 * time.Hour),
	}
	if k == KindReferral {
		p.Window = Duration(72 * time.Hour)
		p.RedeliverEvery = Duration(time.Hour)
		p.FollowUpEvery = Duration(24 * time.Hour)
		p.BlockedFollowUpEvery = Duration(24 * time.Hour)
	}
	return p
}

func (p Policy) withDefaults(def Policy) Policy {
	if p.Window == 0 {
		p.Window = def.Window
	}
	if p.Reminders == nil {
		p.Reminders = def.Reminders
	}
	if p.RedeliverEvery == 0 {
		p.RedeliverEvery = def.RedeliverEvery
	}
	if p.MaxDeliveries == 0 {
		p.MaxDeliveries = def.MaxDeliveries
	}
	if p.RetryDeliveryEvery == 0 {
		p.RetryDeliveryEvery = def.RetryDeliveryEvery
	}
	if p.FollowUpEvery == 0 {
		p.FollowUpEvery = def.FollowUpEvery
	}
	if p.BlockedFollowUpEvery == 0 {
		p.BlockedFollowUpEvery = def.BlockedFollowUpEvery
	}
	return p
}

func (p Policy) validate(fe *fieldErrors, field string) {
	for name, d := range map[string]Duration{
		"window": p.Window, "redeliver_every": p.RedeliverEvery, "retry_delivery_every": p.RetryDeliveryEvery,
		"follow_up_every": p.FollowUpEvery, "blocked_follow_up_every": p.BlockedFollowUpEvery,
	} {
		if d <= 0 {
			fe.add(field+"."+name, "must be positive")
		}
	}
	prev := 0.0
	for i, r := range p.Reminders {
		if r <= prev || r >= 1 {
			fe.add(fmt.Sprintf("%s.reminders[%d]", field, i), "must be ascending fractions of the window between 0 and 1")
		}
		prev = r
	}
	if p.MaxDeliveries < 1 || p.MaxDeliveries > 100 {
		fe.add(field+".max_deliveries", "must be between 1 and 100")
	}
}

// FollowUp is a scheduler action.
type FollowUp string

const (
	FollowUpNone      FollowUp = ""
	FollowUpDeliver   FollowUp = "deliver"   // first delivery, retried
	FollowUpRedeliver FollowUp = "redeliver" // delivered but not acknowledged
	FollowUpReminder  FollowUp = "reminder"
	FollowUpEscalate  FollowUp = "escalate"
	FollowUpFollowUp  FollowUp = "follow_up"
	FollowUpFail      FollowUp = "fail"
)

// Snapshot is what the scheduler knows of a notice when it plans.
type Snapshot struct {
	ID       string
	Version  int64
	State    State
	Kind     Kind
	Issuer   string
	Provider string
	// CreatedAt is when the tracker first recorded the notice.
	CreatedAt time.Time
	// ClockStart is the start of the running window: delivery, or the last
	// resume or clarification.
	ClockStart time.Time
	Deadline   time.Time
	Window     time.Duration
	// Deliveries counts delivery attempts (successful or not).
	Deliveries   int
	LastDelivery time.Time
	Reminders    int
	Overdue      bool
	FollowUps    int
	LastFollowUp time.Time
	BlockedAt    time.Time
	// RetryNotBefore is the earliest next delivery attempt a provider
	// asked for (Retry-After).
	RetryNotBefore time.Time
}

// Decision is the outcome of planning: the action to take now (maybe none)
// and when to look at the notice next (zero: never, it needs nothing more).
type Decision struct {
	Action FollowUp
	Next   time.Time
}

// Plan decides what is due for s at now under policy p, and when the next
// follow-up falls once that action has been taken. It is a pure function;
// the tracker applies the same field changes as Apply.
func (p Policy) Plan(s Snapshot, now time.Time) Decision {
	act := p.due(s, now)
	if act != FollowUpNone {
		s = s.Apply(act, now)
	}
	return Decision{Action: act, Next: p.next(s)}
}

// Apply returns s as it is after act was taken at now.
func (s Snapshot) Apply(act FollowUp, now time.Time) Snapshot {
	switch act {
	case FollowUpDeliver, FollowUpRedeliver:
		s.Deliveries++
		s.LastDelivery = now
	case FollowUpReminder:
		s.Reminders++
	case FollowUpEscalate:
		s.Overdue = true
		s.LastFollowUp = now
	case FollowUpFollowUp:
		s.FollowUps++
		s.LastFollowUp = now
	case FollowUpFail:
		s.State = StateFailed
	}
	return s
}

type candidate struct {
	at  time.Time
	act FollowUp
}

// candidates lists the follow-ups still ahead of s, most important first
// among those due at the same moment.
func (p Policy) candidates(s Snapshot) []candidate {
	var c []candidate
	switch s.State {
	case StateReceived:
		// The intake worker delivers at once; the scheduler steps in only
		// when that has not happened within RetryDeliveryEvery.
		if s.Deliveries == 0 {
			return []candidate{{s.CreatedAt.Add(p.RetryDeliveryEvery.D()), FollowUpDeliver}}
		}
		var at time.Time
		if len(p.RetrySchedule) > 0 {
			if s.Deliveries > len(p.RetrySchedule) {
				return []candidate{{s.LastDelivery, FollowUpFail}}
			}
			at = s.LastDelivery.Add(jitter(s.ID, s.Deliveries, p.RetrySchedule[s.Deliveries-1].D()))
		} else {
			if s.Deliveries >= p.MaxDeliveries {
				return []candidate{{s.LastDelivery.Add(p.RetryDeliveryEvery.D()), FollowUpFail}}
			}
			at = s.LastDelivery.Add(p.RetryDeliveryEvery.D())
		}
		if s.RetryNotBefore.After(at) {
			at = s.RetryNotBefore // the provider's Retry-After
		}
		return []candidate{{at, FollowUpDeliver}}
	case StateDelivered, StateAcknowledged:
		if !s.Overdue {
			c = append(c, candidate{s.Deadline, FollowUpEscalate})
		} else {
			c = append(c, candidate{s.LastFollowUp.Add(p.FollowUpEvery.D()), FollowUpFollowUp})
		}
		if s.State == StateDelivered && s.Deliveries < p.MaxDeliveries {
			c = append(c, candidate{s.LastDelivery.Add(p.RedeliverEvery.D()), FollowUpRedeliver})
		}
		if !s.Overdue && s.Reminders < len(p.Reminders) {
			frac := p.Reminders[s.Reminders]
			at := s.ClockStart.Add(time.Duration(frac * float64(s.Window)))
			if at.Before(s.Deadline) {
				c = append(c, candidate{at, FollowUpReminder})
			}
		}
	case StateBlocked:
		last := s.BlockedAt
		if s.LastFollowUp.After(last) {
			last = s.LastFollowUp
		}
		c = append(c, candidate{last.Add(p.BlockedFollowUpEvery.D()), FollowUpFollowUp})
	}
	return c
}

func (p Policy) due(s Snapshot, now time.Time) FollowUp {
	for _, c := range p.candidates(s) {
		if !c.at.After(now) {
			return c.act
		}
	}
	return FollowUpNone
}

func (p Policy) next(s Snapshot) time.Time {
	var next time.Time
	for _, c := range p.candidates(s) {
		if next.IsZero() || c.at.Before(next) {
			next = c.at
		}
	}
	return next
}

// Clock tells the time. Inject one wherever a deadline is computed so that
// tests move time instead of sleeping.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns the current UTC time.
func (SystemClock) Now() time.Time { return time.Now().UTC() }

// jitter spreads retries of many notices over ±10% of d, deterministically
// per notice and attempt so that planning stays a pure function.
func jitter(id string, attempt int, d time.Duration) time.Duration {
	h := fnv.New32a()
	h.Write([]byte(id))
	h.Write([]byte{byte(attempt)})
	frac := float64(h.Sum32()%2001)/10000 - 0.1 // [-0.1, +0.1]
	return d + time.Duration(frac*float64(d))
}
