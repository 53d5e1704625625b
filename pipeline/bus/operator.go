package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/takedown-eu/takedown/pipeline"
)

// PublishIntake publishes a notice or action on issuer's intake subject
// with Nats-Msg-Id msgID, as an issuer's own NATS client would.
func (b *Bus) PublishIntake(ctx context.Context, issuer, msgID string, body []byte) error {
	_, err := b.Publish(ctx, b.IntakeSubject(issuer), msgID, body, nil)
	return err
}

// ParkedMessage is a message in the parked stream.
type ParkedMessage struct {
	Sequence        uint64          `json:"sequence"`
	Subject         string          `json:"subject"`
	OriginalSubject string          `json:"original_subject"`
	Reason          string          `json:"reason"`
	Detail          string          `json:"detail"`
	ParkedAt        time.Time       `json:"parked_at"`
	Data            json.RawMessage `json:"data,omitempty"`
	Text            string          `json:"text,omitempty"` // the body, when it is not JSON
}

// ErrNoParked reports a parked sequence that does not exist.
var ErrNoParked = fmt.Errorf("no such parked message: %w", pipeline.ErrNotFound)

// ListParked returns up to limit parked messages after sequence after,
// oldest first, whose original subject starts with prefix ("" for all).
func (b *Bus) ListParked(ctx context.Context, after uint64, limit int, prefix string) ([]ParkedMessage, error) {
	s, err := b.js.Stream(ctx, b.StreamName(Parked))
	if err != nil {
		return nil, fmt.Errorf("parked: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("parked: %w", err)
	}
	var out []ParkedMessage
	for seq := max(after+1, info.State.FirstSeq); seq <= info.State.LastSeq && len(out) < limit; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted after replay
		}
		if err != nil {
			return nil, fmt.Errorf("parked %d: %w", seq, err)
		}
		p := parkedOf(raw)
		if prefix == "" || strings.HasPrefix(p.OriginalSubject, prefix) {
			out = append(out, p)
		}
	}
	return out, nil
}

func parkedOf(raw *jetstream.RawStreamMsg) ParkedMessage {
	at, _ := time.Parse(time.RFC3339Nano, raw.Header.Get(HeaderParkedAt))
	p := ParkedMessage{
		Sequence: raw.Sequence, Subject: raw.Subject, OriginalSubject: raw.Header.Get(HeaderParkSubject),
		Reason: raw.Header.Get(HeaderParkReason), Detail: raw.Header.Get(HeaderParkDetail), ParkedAt: at,
	}
	if json.Valid(raw.Data) {
		p.Data = raw.Data
	} else {
		p.Text = string(raw.Data)
	}
	return p
}

// ReplayParked publishes a parked message to its original subject again
// (the operator repaired the cause) and removes it from the parked stream.
func (b *Bus) ReplayParked(ctx context.Context, seq uint64) (ParkedMessage, error) {
	s, err := b.js.Stream(ctx, b.StreamName(Parked))
	if err != nil {
		return ParkedMessage{}, fmt.Errorf("parked: %w", err)
	}
	raw, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return ParkedMessage{}, ErrNoParked
	}
	if err != nil {
		return ParkedMessage{}, fmt.Errorf("parked %d: %w", seq, err)
	}
	p := parkedOf(raw)
	hdr := nats.Header{}
	for k, v := range raw.Header {
		if !strings.HasPrefix(k, "Takedown-Park") && !strings.HasPrefix(k, "Takedown-Original") && k != HeaderParkedAt && k != jetstream.MsgIDHeader {
			hdr[k] = v
		}
	}
	// Identified by the parked message's sequence and stored time: a
	// replay repeated after a lost acknowledgement is dropped, a message
	// parked later under a reused sequence (the stream restored from an
	// older backup) is not.
	id := "replay." + strconv.FormatUint(seq, 10) + "." + strconv.FormatInt(raw.Time.UnixNano(), 10)
	if _, err := b.Publish(ctx, p.OriginalSubject, id, raw.Data, hdr); err != nil {
		return ParkedMessage{}, err
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return ParkedMessage{}, fmt.Errorf("parked %d replayed but not removed: %w", seq, err)
	}
	return p, nil
}

// Follow calls fn with every event on subjects matching filter from start
// on, in stream order, until fn returns false or ctx ends.
func (b *Bus) Follow(ctx context.Context, filter string, start time.Time, fn func(pipeline.Event) bool) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverNewPolicy}
	if !start.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := b.js.OrderedConsumer(ctx, b.StreamName(Events), cfg)
	if err != nil {
		return fmt.Errorf("follow events: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("follow events: %w", err)
	}
	defer it.Stop()
	go func() { <-ctx.Done(); it.Stop() }()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return ctx.Err()
			}
			continue
		}
		var e pipeline.Event
		if json.Unmarshal(m.Data(), &e) != nil {
			continue // system events and the like
		}
		if !fn(e) {
			return nil
		}
	}
}

// ParkedCount is the number of messages in the parked stream.
func (b *Bus) ParkedCount(ctx context.Context) (uint64, error) {
	s, err := b.js.Stream(ctx, b.StreamName(Parked))
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// EventsBetween returns the events on subjects matching filter that were
// relayed from from on, up to a few minutes past to (events are relayed
// shortly after they happen); the caller selects by event time.
func (b *Bus) EventsBetween(ctx context.Context, filter string, from, to time.Time) ([]pipeline.Event, error) {
	cons, err := b.js.OrderedConsumer(ctx, b.StreamName(Events), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from,
	})
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	pending := int(info.NumPending)
	horizon := to.Add(5 * time.Minute)
	var out []pipeline.Event
	for read := 0; read < pending; {
		batch, err := cons.Fetch(min(500, pending-read), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if meta, err := m.Metadata(); err == nil && meta.Timestamp.After(horizon) {
				return out, nil
			}
			var e pipeline.Event
			if json.Unmarshal(m.Data(), &e) == nil && e.NoticeID != "" {
				out = append(out, e)
			}
		}
		if n == 0 {
			if err := batch.Error(); err != nil {
				return nil, fmt.Errorf("read events: %w", err)
			}
			break
		}
		read += n
	}
	return out, nil
}
