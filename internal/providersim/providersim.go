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
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/takedown-eu/takedown/notifier/signature"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
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
	// Webhook providers receive notices as signed POSTs on
	// http://<listener>/hooks/<id> and answer over the HTTP API.
	Webhook *WebhookConfig
	Logger  *slog.Logger
	// Stats, if set, is told of every feedback published.
	Stats func(provider string, t pipeline.FeedbackType)

	wg sync.WaitGroup
}

// WebhookConfig describes the simulated webhook providers.
type WebhookConfig struct {
	Providers []Provider
	// Listener serves the endpoints.
	Listener net.Listener
	// Secrets verify the signatures ("whsec_…").
	Secrets []string
	// APIURL is takedownd's HTTP address, for feedback.
	APIURL string
	// Tokens are the providers' bearer tokens, by provider id.
	Tokens map[string]string
}

// Run serves every simulated provider until ctx ends; answers still
// pending then are dropped (the pipeline follows them up).
func (s *Sim) Run(ctx context.Context) error {
	if s.Prefix == "" {
		s.Prefix = "takedown"
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range s.Providers {
		g.Go(func() error { return s.runProvider(gctx, p) })
	}
	if s.Webhook != nil {
		g.Go(func() error { return s.serveWebhooks(gctx) })
	}
	err := g.Wait()
	s.wg.Wait()
	return err
}

// seenSet remembers which notices a provider has had.
type seenSet struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (s *seenSet) first(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	was := s.seen[id]
	s.seen[id] = true
	return !was
}

type sender func(ctx context.Context, provider, id string, t pipeline.FeedbackType, g pipeline.Ground) error

// answer sends the behaviour's steps after the acknowledgement, in order.
func (s *Sim) answer(ctx context.Context, p Provider, id string, k pipeline.Kind, send sender) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for _, st := range s.plan(p, k) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(st.after):
			}
			if err := send(ctx, p.ID, id, st.typ, st.ground); err != nil {
				return
			}
		}
	}()
}

func (s *Sim) runProvider(ctx context.Context, p Provider) error {
	stream := bus.StreamName(s.Prefix, bus.Deliver)
	cons, err := s.JS.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: "provider-" + p.ID, FilterSubject: s.Prefix + ".deliver." + p.ID,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: 20,
	})
	if err != nil {
		return fmt.Errorf("provider %s: consumer: %w", p.ID, err)
	}
	var seen seenSet
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
		first := seen.first(n.ID)
		if p.Behaviour == Silent {
			_ = msg.Ack()
			return
		}
		// Acknowledge receipt (again, for a redelivery) before taking the
		// message off the stream.
		if err := s.sendNATS(ctx, p.ID, n.ID, pipeline.FeedbackAcknowledged, ""); err != nil {
			_ = msg.Nak()
			return
		}
		_ = msg.Ack()
		if first {
			s.answer(ctx, p, n.ID, n.Kind, s.sendNATS)
		}
	})
	if err != nil {
		return fmt.Errorf("provider %s: consume: %w", p.ID, err)
	}
	<-ctx.Done()
	cc.Stop()
	// The callback may still be starting an answer; Run waits for the
	// answers only once no callback can add one.
	<-cc.Closed()
	return nil
}

func (s *Sim) serveWebhooks(ctx context.Context) error {
	w := s.Webhook
	v, err := signature.NewVerifier(w.Secrets...)
	if err != nil {
		return err
	}
	behaviours := map[string]Provider{}
	seen := map[string]*seenSet{}
	for _, p := range w.Providers {
		behaviours[p.ID], seen[p.ID] = p, &seenSet{}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hooks/{provider}", func(rw http.ResponseWriter, r *http.Request) {
		p, ok := behaviours[r.PathValue("provider")]
		if !ok {
			http.NotFound(rw, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(rw, "unreadable body", http.StatusBadRequest)
			return
		}
		if err := v.Verify(r.Header, body); err != nil {
			s.Logger.Warn("webhook refused", "provider", p.ID, "err", err)
			http.Error(rw, err.Error(), http.StatusUnauthorized)
			return
		}
		var n struct {
			ID   string        `json:"id"`
			Kind pipeline.Kind `json:"kind"`
		}
		if err := json.Unmarshal(body, &n); err != nil || n.ID == "" || n.ID != r.Header.Get(signature.HeaderID) {
			http.Error(rw, "not a notice", http.StatusBadRequest)
			return
		}
		rw.WriteHeader(http.StatusNoContent)
		if p.Behaviour == Silent {
			return
		}
		first := seen[p.ID].first(n.ID)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if s.sendHTTP(ctx, p.ID, n.ID, pipeline.FeedbackAcknowledged, "") == nil && first {
				s.answer(ctx, p, n.ID, n.Kind, s.sendHTTP)
			}
		}()
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(w.Listener) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	case err := <-errc:
		return err
	}
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

func feedback(provider, id string, t pipeline.FeedbackType, g pipeline.Ground, now time.Time) []byte {
	f := pipeline.Feedback{Schema: pipeline.FeedbackSchema, NoticeID: id, Provider: provider, Type: t, Ground: g}
	switch t {
	case pipeline.FeedbackRemoved, pipeline.FeedbackDisabled:
		f.ActionAt = &now
		f.ProviderReference = "SIM-" + id[:8]
	case pipeline.FeedbackBlocked:
		f.Explanation = "simulated outage at the provider"
	}
	data, _ := json.Marshal(f) // a Feedback always marshals
	return data
}

func (s *Sim) sendNATS(ctx context.Context, provider, id string, t pipeline.FeedbackType, g pipeline.Ground) error {
	now := time.Now().UTC()
	data := feedback(provider, id, t, g, now)
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

// sendHTTP posts feedback to the API, retrying while it is unavailable.
func (s *Sim) sendHTTP(ctx context.Context, provider, id string, t pipeline.FeedbackType, g pipeline.Ground) error {
	w := s.Webhook
	data := feedback(provider, id, t, g, time.Now().UTC())
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.APIURL+"/v1/notices/"+id+"/feedback", bytes.NewReader(data))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+w.Tokens[provider])
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", id+"."+string(t))
		resp, err := http.DefaultClient.Do(req)
		wait := min(time.Duration(attempt)*100*time.Millisecond, 2*time.Second)
		if err == nil {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			switch {
			case resp.StatusCode < 300:
				if s.Stats != nil {
					s.Stats(provider, t)
				}
				return nil
			case resp.StatusCode == http.StatusServiceUnavailable, resp.StatusCode == http.StatusTooManyRequests:
				// Come back later, as asked.
				if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
					wait = time.Duration(secs) * time.Second
				}
			default:
				s.Logger.Warn("feedback refused", "provider", provider, "notice", id, "type", t, "status", resp.StatusCode, "body", string(msg))
				return fmt.Errorf("feedback refused: %s", resp.Status)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}
