package providersim_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/takedown-eu/takedown/internal/providersim"
	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/metrics"
	"github.com/takedown-eu/takedown/notifier"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/api"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/pipeline/worker"
	"github.com/takedown-eu/takedown/tracker"
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

func TestMain(m *testing.M) { testenv.Main(m) }

// TestWebhookProvider runs a simulated webhook provider against the real
// webhook channel and the real HTTP API: the notice arrives signed, and
// the provider's answers change the notice's state in Redis.
func TestWebhookProvider(t *testing.T) {
	ctx := context.Background()
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("simulated-provider-secret"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := pipeline.ParseDirectory([]byte(fmt.Sprintf(`
issuers: [{id: de-bka, name: BKA, member_state: DE}]
providers:
  - id: webcast
    name: WebCast
    channel: webhook
    webhook: {url: "http://%s/hooks/webcast", allow_private: true, secrets: [%s]}
    token_sha256: [%s]
`, ln.Addr(), secret, api.TokenDigest("wc-token"))), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := tracker.New(testenv.Redis(t), tracker.Config{Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry())
	fw := &worker.Feedback{Store: st, Dir: dir, Clock: pipeline.SystemClock{}, Metrics: m, Logger: slog.New(slog.DiscardHandler)}
	// A tight rate limit: the provider must come back after 429 as asked.
	apiSrv := httptest.NewServer(api.New(api.Config{Dir: dir, Feedback: fw, Rate: 1, Burst: 1}).Handler())
	defer apiSrv.Close()

	sim := &providersim.Sim{Webhook: &providersim.WebhookConfig{
		Providers: []providersim.Provider{{ID: "webcast", Behaviour: providersim.Prompt}},
		Listener:  ln, Secrets: []string{secret}, APIURL: apiSrv.URL, Tokens: map[string]string{"webcast": "wc-token"},
	}}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = sim.Run(sctx) }()
	defer func() { cancel(); <-done }()

	n := testenv.Notice("de-bka", "SIM-HOOK", "webcast", pipeline.KindRemovalOrder)
	now := time.Now().UTC()
	if _, err := st.Create(ctx, &n, testenv.JSON(n), now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	wh, err := notifier.NewWebhook(dir, pipeline.SystemClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Unsigned or wrongly signed requests are refused by the simulator.
	resp, err := http.Post("http://"+ln.Addr().String()+"/hooks/webcast", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned request: %s", resp.Status)
	}
	r, err := wh.Deliver(ctx, notifier.Delivery{NoticeID: n.ID(), Provider: "webcast", Kind: n.Kind, Body: testenv.JSON(n), Attempt: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Delivered(ctx, n.ID(), r.At, time.Hour, r.At.Add(time.Minute), nil); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "removal reported over HTTP", func() bool {
		rec, _ := st.Get(ctx, n.ID())
		return rec.State == pipeline.StateRemoved
	})
}
