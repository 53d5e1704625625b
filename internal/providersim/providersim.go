// Package providersim simulates hosting providers for the demo, the tests
// and load runs. Each simulated provider reads its deliver subject with its
// own durable consumer, as a real provider would, and answers on its
// feedback subject according to a behaviour:
//
//	prompt    acknowledges and removes after Delay (default at once)
//	slow      acknowledges, removes after Delay (meant to be within the window)
//	late      acknowledges, removes after Delay (meant to miss the deadline)
//	blocking  acknowledges, blocks (force majeure), resumes after Delay,
//	          removes after another Delay
//	declining acknowledges and declines referrals (removes orders)
//	silent    never answers
//
//	sim := &providersim.Sim{JS: js, Prefix: "takedown", Providers: []providersim.Provider{{ID: "videohost", Behaviour: providersim.Prompt}}}
//	err := sim.Run(ctx)
package providersim

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/takedown-eu/takedown/pipeline"
)

// Behaviour is how a simulated provider answers.
type Behaviour string

const (
	Prompt    Behaviour = "prompt"
	Slow      Behaviour = "slow"
	Late      Behaviour = "late"
	Blocking  Behaviour = "blocking"
	Declining Behaviour = "declining"
	Silent    Behaviour = "silent"
)

// Behaviours lists every behaviour.
var Behaviours = []Behaviour{Prompt, Slow, Late, Blocking, Declining, Silent}

// Provider is one simulated provider.
type Provider struct {
	ID        string
	Behaviour Behaviour
	// Delay before the behaviour's next step.
	Delay time.Duration
}

// ParseProvider reads "id=behaviour" or "id=behaviour:delay".
func ParseProvider(s string) (Provider, error) {
	id, rest, ok := strings.Cut(s, "=")
	if !ok || !pipeline.ValidSlug(id) {
		return Provider{}, fmt.Errorf("provider %q: want id=behaviour[:delay]", s)
	}
	b, delay, _ := strings.Cut(rest, ":")
	p := Provider{ID: id, Behaviour: Behaviour(b)}
	valid := false
	for _, x := range Behaviours {
		valid = valid || x == p.Behaviour
	}
	if !valid {
		return Provider{}, fmt.Errorf("provider %q: behaviour %q is not one of prompt, slow, late, blocking, declining, silent", s, b)
	}
	if delay != "" {
		d, err := time.ParseDuration(delay)
		if err != nil || d < 0 {
			return Provider{}, fmt.Errorf("provider %q: delay %q is not a duration", s, delay)
		}
		p.Delay = d
	}
	return p, nil
}

// Sim runs simulated providers.
type Sim struct {
	JS        jetstream.JetStream
	Prefix    string // default "takedown"
	Providers []Provider
	Logger    *slog.Logger
	// Stats, if set, is told of every feedback published.
	Stats func(provider string, t pipeline.FeedbackType)
}

// Run consumes every provider's deliver subject until ctx ends; pending
// timed answers are dropped at shutdown (the pipeline follows them up).
func (s *Sim) Run(ctx context.Context) error {
	if s.Prefix == "" {
		s.Prefix = "takedown"
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	g, ctx := errgroup.WithContext(ctx)
	for _, p := range s.Providers {
		g.Go(func() error { return s.runProvider(ctx, p) })
	}
	return g.Wait()
}

func (s *Sim) runProvider(ctx context.Context, p Provider) error {
	stream := strings.ToUpper(s.Prefix) + "_DELIVER"
	cons, err := s.JS.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: "provider-" + p.ID, FilterSubject: s.Prefix + ".deliver." + p.ID,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: 20,
	})
	if err != nil {
		return fmt.Errorf("provider %s: consumer: %w", p.ID, err)
	}
	var (
		mu     sync.Mutex
		seen   = map[string]bool{}
		timers []*time.Timer
	)
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		var n struct {
			ID   string        `json:"id"`
			Kind pipeline.Kind `json:"kind"`
		}
		if err := json.Unmarshal(msg.Data(), &n); err != nil || n.ID == "" {
			s.Logger.Warn("undecodable notice", "provider", p.ID, "err", err)
			_ = msg.Term()
			return
		}
		mu.Lock()
		again := seen[n.ID]
		seen[n.ID] = true
		mu.Unlock()
		if p.Behaviour == Silent {
			_ = msg.Ack()
			return
		}
		if again { // a redelivery: say again that we have it
			s.send(ctx, p.ID, n.ID, pipeline.FeedbackAcknowledged, "")
			_ = msg.Ack()
			return
		}
		if err := s.send(ctx, p.ID, n.ID, pipeline.FeedbackAcknowledged, ""); err != nil {
			_ = msg.Nak()
			return
		}
		_ = msg.Ack()
		steps := s.plan(p, n.Kind)
		var at time.Duration
		for _, st := range steps {
			at += st.after
			mu.Lock()
			timers = append(timers, time.AfterFunc(at, func() { _ = s.send(ctx, p.ID, n.ID, st.typ, st.ground) }))
			mu.Unlock()
		}
	})
	if err != nil {
		return fmt.Errorf("provider %s: consume: %w", p.ID, err)
	}
	<-ctx.Done()
	cc.Stop()
	mu.Lock()
	for _, t := range timers {
		t.Stop()
	}
	mu.Unlock()
	return nil
}

type step struct {
	after  time.Duration
	typ    pipeline.FeedbackType
	ground pipeline.Ground
}

func (s *Sim) plan(p Provider, k pipeline.Kind) []step {
	switch p.Behaviour {
	case Blocking:
		return []step{
			{0, pipeline.FeedbackBlocked, pipeline.GroundForceMajeure},
			{p.Delay, pipeline.FeedbackResumed, ""},
			{p.Delay, pipeline.FeedbackRemoved, ""},
		}
	case Declining:
		if k == pipeline.KindReferral {
			return []step{{p.Delay, pipeline.FeedbackDeclined, ""}}
		}
	}
	return []step{{p.Delay, pipeline.FeedbackRemoved, ""}}
}

func (s *Sim) send(ctx context.Context, provider, id string, t pipeline.FeedbackType, g pipeline.Ground) error {
	f := pipeline.Feedback{Schema: pipeline.FeedbackSchema, NoticeID: id, Provider: provider, Type: t, Ground: g}
	now := time.Now().UTC()
	switch t {
	case pipeline.FeedbackRemoved, pipeline.FeedbackDisabled:
		f.ActionAt = &now
		f.ProviderReference = "SIM-" + id[:8]
	case pipeline.FeedbackBlocked:
		f.Explanation = "simulated outage at the provider"
	}
	data, _ := json.Marshal(f) // a Feedback always marshals
	m := nats.NewMsg(s.Prefix + ".feedback." + provider)
	m.Data = data
	ack := string(t)
	if t == pipeline.FeedbackAcknowledged {
		ack += "." + now.Format("150405.000")
	}
	// A real provider must not lose its answer while NATS is away: retry
	// until it is accepted (the message id makes retries harmless).
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.JS.PublishMsg(pctx, m, jetstream.WithMsgID(id+"."+ack))
		cancel()
		if err == nil {
			break
		}
		if attempt == 1 {
			s.Logger.Warn("feedback not published yet; retrying", "provider", provider, "notice", id, "type", t, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(attempt)*250*time.Millisecond, 2*time.Second)):
		}
	}
	if s.Stats != nil {
		s.Stats(provider, t)
	}
	return nil
}
