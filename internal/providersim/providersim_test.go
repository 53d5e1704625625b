package providersim_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/takedown-eu/takedown/internal/providersim"
	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
)

func TestParseProvider(t *testing.T) {
	p, err := providersim.ParseProvider("videohost=slow:20s")
	if err != nil || p.ID != "videohost" || p.Behaviour != providersim.Slow || p.Delay != 20*time.Second {
		t.Fatalf("%+v %v", p, err)
	}
	for _, bad := range []string{"videohost", "Video=prompt", "v=fast", "v=slow:soon", "v=slow:-1s"} {
		if _, err := providersim.ParseProvider(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestBehaviours(t *testing.T) {
	ctx := context.Background()
	_, _, js := testenv.NATS(t)
	b, err := bus.New(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string][]string{}
	sim := &providersim.Sim{JS: js, Providers: []providersim.Provider{
		{ID: "p-prompt", Behaviour: providersim.Prompt},
		{ID: "p-block", Behaviour: providersim.Blocking, Delay: time.Millisecond},
		{ID: "p-decline", Behaviour: providersim.Declining},
		{ID: "p-silent", Behaviour: providersim.Silent},
	}, Stats: func(p string, ft pipeline.FeedbackType) {
		mu.Lock()
		got[p] = append(got[p], string(ft))
		mu.Unlock()
	}}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = sim.Run(sctx) }()
	t.Cleanup(func() { cancel(); <-done })

	deliver := func(provider string, k pipeline.Kind) {
		n := testenv.Notice("de-bka", "SIM-"+provider, provider, k)
		if _, err := b.Publish(ctx, b.DeliverSubject(provider), n.ID(), testenv.JSON(n), nil); err != nil {
			t.Fatal(err)
		}
	}
	deliver("p-prompt", pipeline.KindRemovalOrder)
	deliver("p-block", pipeline.KindRemovalOrder)
	deliver("p-decline", pipeline.KindReferral)
	deliver("p-silent", pipeline.KindRemovalOrder)
	want := map[string][]string{
		"p-prompt":  {"acknowledged", "removed"},
		"p-block":   {"acknowledged", "blocked", "resumed", "removed"},
		"p-decline": {"acknowledged", "declined"},
	}
	testenv.WaitFor(t, 10*time.Second, "simulated feedback", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return cmp.Equal(want, got)
	})
	// The feedback is on the providers' own subjects, well-formed.
	s, err := js.Stream(ctx, b.StreamName(bus.Feedback))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	n := 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		n++
		f, err := pipeline.DecodeFeedback(m.Data)
		if err != nil {
			t.Fatalf("%s: %v", m.Data, err)
		}
		if m.Subject != b.FeedbackSubject(f.Provider) {
			t.Errorf("feedback of %s on %s", f.Provider, m.Subject)
		}
	}
	if n != 8 {
		t.Errorf("feedback stream holds %d messages, want 8", n)
	}
}
