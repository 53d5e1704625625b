package notifier_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/notifier"
	"github.com/takedown-eu/takedown/notifier/notifiertest"
	"github.com/takedown-eu/takedown/notifier/signature"
	"github.com/takedown-eu/takedown/pipeline"
)

var (
	secretA = "whsec_" + base64.StdEncoding.EncodeToString([]byte("provider-secret-number-one"))
	secretB = "whsec_" + base64.StdEncoding.EncodeToString([]byte("provider-secret-number-two"))
)

// endpoint is a provider's webhook receiver that verifies signatures.
type endpoint struct {
	srv      *httptest.Server
	mu       sync.Mutex
	received []notifiertest.Received
	headers  []http.Header
	respond  func(w http.ResponseWriter, r *http.Request)
	verifier *signature.Verifier
	badSigs  atomic.Int32
}

func newEndpoint(t *testing.T, secrets ...string) *endpoint {
	t.Helper()
	v, err := signature.NewVerifier(secrets...)
	if err != nil {
		t.Fatal(err)
	}
	e := &endpoint{verifier: v, respond: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := e.verifier.Verify(r.Header, body); err != nil {
			e.badSigs.Add(1)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		e.mu.Lock()
		e.received = append(e.received, notifiertest.Received{NoticeID: r.Header.Get(signature.HeaderID), Body: body})
		e.headers = append(e.headers, r.Header.Clone())
		respond := e.respond
		e.mu.Unlock()
		respond(w, r)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) got() []notifiertest.Received {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.received)
}

func directory(t *testing.T, providers string) *pipeline.Directory {
	t.Helper()
	d, err := pipeline.ParseDirectory([]byte("issuers: [{id: de-bka, name: BKA, member_state: DE}]\nproviders:\n"+providers), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func hookProvider(id, url string, extra string, secrets ...string) string {
	s := fmt.Sprintf("  - id: %s\n    name: %s\n    channel: webhook\n    webhook:\n      url: %s\n      allow_private: true\n      secrets: [", id, id, url)
	for i, sec := range secrets {
		if i > 0 {
			s += ", "
		}
		s += sec
	}
	return s + "]\n" + extra
}

func TestWebhookChannelConformance(t *testing.T) {
	notifiertest.Run(t, func(t *testing.T) notifiertest.Harness {
		e := newEndpoint(t, secretA)
		dir := directory(t, hookProvider("hookhost", e.srv.URL, "", secretA))
		w, err := notifier.NewWebhook(dir, pipeline.SystemClock{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return notifiertest.Harness{Channel: w, Provider: "hookhost", Now: time.Now,
			Received: func(t *testing.T) []notifiertest.Received {
				if n := e.badSigs.Load(); n > 0 {
					t.Errorf("%d deliveries failed signature verification", n)
				}
				return e.got()
			}}
	})
}

func TestWebhookHeadersAndRotation(t *testing.T) {
	// The endpoint knows only the new secret; takedown signs with both.
	e := newEndpoint(t, secretB)
	dir := directory(t, hookProvider("hookhost", e.srv.URL, "", secretA, secretB))
	w, _ := notifier.NewWebhook(dir, pipeline.SystemClock{}, nil)
	id := pipeline.NoticeID("de-bka", "H-1")
	for attempt := 1; attempt <= 2; attempt++ {
		if _, err := w.Deliver(context.Background(), notifier.Delivery{NoticeID: id, Provider: "hookhost", Kind: pipeline.KindRemovalOrder, Body: []byte(`{"id":"x"}`), Attempt: attempt}); err != nil {
			t.Fatal(err)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, h := range e.headers {
		if h.Get("webhook-id") != id || h.Get("Content-Type") != "application/json" || h.Get(notifier.HeaderAttempt) != fmt.Sprint(i+1) {
			t.Errorf("attempt %d headers %v", i+1, h)
		}
		if n := len(strings.Fields(h.Get("webhook-signature"))); n != 2 {
			t.Errorf("attempt %d carries %d signatures, want one per secret", i+1, n)
		}
	}
}

func TestWebhookOutcomes(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	clock := testenv.NewClock(now)
	var redirected atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { redirected.Add(1) }))
	defer target.Close()
	tests := []struct {
		name       string
		respond    func(w http.ResponseWriter)
		wantErr    bool
		permanent  bool
		gone       bool
		retryAfter time.Duration
	}{
		{"200", func(w http.ResponseWriter) { w.WriteHeader(200) }, false, false, false, 0},
		{"202", func(w http.ResponseWriter) { w.WriteHeader(202) }, false, false, false, 0},
		{"500", func(w http.ResponseWriter) { w.WriteHeader(500) }, true, false, false, 0},
		{"503 Retry-After seconds", func(w http.ResponseWriter) { w.Header().Set("Retry-After", "120"); w.WriteHeader(503) }, true, false, false, 2 * time.Minute},
		{"429 Retry-After date", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", now.Add(90*time.Second).Format(http.TimeFormat))
			w.WriteHeader(429)
		}, true, false, false, 90 * time.Second},
		{"408", func(w http.ResponseWriter) { w.WriteHeader(408) }, true, false, false, 0},
		{"410", func(w http.ResponseWriter) { w.WriteHeader(410) }, true, true, true, 0},
		{"400", func(w http.ResponseWriter) { w.WriteHeader(400) }, true, true, false, 0},
		{"401", func(w http.ResponseWriter) { w.WriteHeader(401) }, true, true, false, 0},
		{"302 not followed", func(w http.ResponseWriter) {
			w.Header().Set("Location", target.URL)
			w.WriteHeader(302)
		}, true, true, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEndpoint(t, secretA)
			e.verifier.Now = clock.Now
			e.respond = func(w http.ResponseWriter, r *http.Request) { tt.respond(w) }
			w, _ := notifier.NewWebhook(directory(t, hookProvider("hookhost", e.srv.URL, "", secretA)), clock, nil)
			r, err := w.Deliver(context.Background(), notifier.Delivery{NoticeID: "n", Provider: "hookhost", Body: []byte(`{}`), Attempt: 1})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil {
				if !r.At.Equal(now) {
					t.Errorf("receipt at %v, want the clock's %v", r.At, now)
				}
				return
			}
			ae := notifier.Classify(err)
			if ae.Permanent != tt.permanent || ae.Gone != tt.gone || ae.RetryAfter != tt.retryAfter {
				t.Errorf("got %+v, want permanent %v gone %v retry-after %v", ae, tt.permanent, tt.gone, tt.retryAfter)
			}
		})
	}
	if redirected.Load() != 0 {
		t.Error("a redirect was followed")
	}
}

func TestWebhookTimeoutIsRetryable(t *testing.T) {
	release := make(chan struct{})
	e := newEndpoint(t, secretA)
	e.respond = func(w http.ResponseWriter, r *http.Request) { <-release }
	defer close(release)
	w, _ := notifier.NewWebhook(directory(t, hookProvider("hookhost", e.srv.URL, "      timeout: 50ms\n", secretA)), pipeline.SystemClock{}, nil)
	_, err := w.Deliver(context.Background(), notifier.Delivery{NoticeID: "n", Provider: "hookhost", Body: []byte(`{}`), Attempt: 1})
	if err == nil || notifier.Permanent(err) {
		t.Fatalf("timeout: %v, want a retryable error", err)
	}
}

func TestWebhookRefusesPrivateAddresses(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, _ := netSplit(srv.URL)
	// The name looks public; the stub resolves it to loopback.
	dir := directory(t, fmt.Sprintf("  - id: hookhost\n    name: H\n    channel: webhook\n    webhook: {url: \"https://provider.example:%s/hook\", secrets: [%s]}\n", port, secretA))
	stub := func(ctx context.Context, network, host string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	w, _ := notifier.NewWebhook(dir, pipeline.SystemClock{}, nil, notifier.WithResolver(stub))
	_, err := w.Deliver(context.Background(), notifier.Delivery{NoticeID: "n", Provider: "hookhost", Body: []byte(`{}`), Attempt: 1})
	if !errors.Is(err, notifier.ErrForbiddenAddress) || !notifier.Permanent(err) {
		t.Fatalf("got %v, want a permanent ErrForbiddenAddress", err)
	}
	if hits.Load() != 0 {
		t.Fatal("request reached the loopback server")
	}
}

func netSplit(url string) (string, string, error) {
	var host, port string
	_, err := fmt.Sscanf(url, "http://%s", &host)
	for i := len(host) - 1; i >= 0; i-- {
		if host[i] == ':' {
			return host[:i], host[i+1:], err
		}
	}
	return host, port, err
}

func TestDisabledEndpointIsNotCalled(t *testing.T) {
	e := newEndpoint(t, secretA)
	gate := func(ctx context.Context, provider string) (bool, error) { return true, nil }
	w, _ := notifier.NewWebhook(directory(t, hookProvider("hookhost", e.srv.URL, "", secretA)), pipeline.SystemClock{}, gate)
	_, err := w.Deliver(context.Background(), notifier.Delivery{NoticeID: "n", Provider: "hookhost", Body: []byte(`{}`), Attempt: 1})
	if !errors.Is(err, notifier.ErrEndpointDisabled) || !notifier.Permanent(err) || len(e.got()) != 0 {
		t.Fatalf("got %v with %d requests", err, len(e.got()))
	}
}

func TestCircuitBreaker(t *testing.T) {
	e := newEndpoint(t, secretA)
	var failing atomic.Bool
	failing.Store(true)
	e.respond = func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(500)
		}
	}
	clock := testenv.NewClock(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC))
	e.verifier.Now = clock.Now
	w, _ := notifier.NewWebhook(directory(t, hookProvider("hookhost", e.srv.URL, "", secretA)), clock, nil)
	var states []string
	var smu sync.Mutex
	lanes := notifier.NewLanes(w, clock, func(string) notifier.LaneConfig {
		return notifier.LaneConfig{Concurrency: 1, Rate: 1000, BreakerFailures: 3, BreakerCooldown: 30 * time.Second}
	}, notifier.LaneHooks{Breaker: func(p string, s notifier.BreakerState) { smu.Lock(); states = append(states, s.String()); smu.Unlock() }})
	defer lanes.Close(context.Background())
	deliver := func() error {
		res := make(chan error, 1)
		if !lanes.Submit(notifier.Delivery{NoticeID: "n", Provider: "hookhost", Body: []byte(`{}`), Attempt: 1}, func(_ notifier.Receipt, err error) { res <- err }) {
			t.Fatal("submit refused")
		}
		return <-res
	}
	for i := 0; i < 3; i++ {
		if err := deliver(); err == nil || errors.Is(err, notifier.ErrCircuitOpen) {
			t.Fatalf("attempt %d: %v, want the endpoint's 500", i+1, err)
		}
	}
	if err := deliver(); !errors.Is(err, notifier.ErrCircuitOpen) {
		t.Fatalf("after 3 failures: %v, want ErrCircuitOpen", err)
	}
	if n := len(e.got()); n != 3 {
		t.Fatalf("endpoint called %d times, want 3 (none while open)", n)
	}
	clock.Advance(31 * time.Second)
	failing.Store(false)
	if err := deliver(); err != nil {
		t.Fatalf("probe after cooldown: %v", err)
	}
	if err := deliver(); err != nil {
		t.Fatalf("closed again: %v", err)
	}
	smu.Lock()
	defer smu.Unlock()
	if want := []string{"closed", "open", "half_open", "closed"}; !slices.Equal(states, want) {
		t.Errorf("breaker states %v, want %v", states, want)
	}
}

// TestOneFailingProviderDoesNotSlowOthers measures the healthy provider's
// delivery latency alone and next to a hanging and a failing endpoint. The
// hanging endpoint holds every request until the test ends, so if the
// healthy provider shared anything with it (a worker, a connection, a
// queue), its deliveries could not complete at all.
func TestOneFailingProviderDoesNotSlowOthers(t *testing.T) {
	healthy := newEndpoint(t, secretA)
	hanging := newEndpoint(t, secretA)
	failing := newEndpoint(t, secretA)
	release := make(chan struct{})
	hanging.respond = func(w http.ResponseWriter, r *http.Request) { <-release }
	failing.respond = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }
	dir := directory(t, hookProvider("healthy", healthy.srv.URL, "", secretA)+
		hookProvider("hanging", hanging.srv.URL, "      timeout: 1h\n", secretA)+hookProvider("failing", failing.srv.URL, "", secretA))
	w, _ := notifier.NewWebhook(dir, pipeline.SystemClock{}, nil)
	lanes := notifier.NewLanes(w, pipeline.SystemClock{}, func(string) notifier.LaneConfig {
		return notifier.LaneConfig{Concurrency: 4, Rate: 10000, BreakerFailures: 1000, BreakerCooldown: time.Second}
	}, notifier.LaneHooks{})
	defer func() {
		close(release)
		_ = lanes.Close(context.Background())
	}()

	measure := func(n int) []time.Duration {
		lat := make([]time.Duration, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			start := time.Now()
			ok := lanes.Submit(notifier.Delivery{NoticeID: fmt.Sprint(i), Provider: "healthy", Body: []byte(`{}`), Attempt: 1}, func(_ notifier.Receipt, err error) {
				if err != nil {
					t.Errorf("healthy delivery: %v", err)
				}
				lat[i] = time.Since(start)
				wg.Done()
			})
			if !ok {
				t.Fatal("submit refused")
			}
		}
		wg.Wait()
		sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
		return lat
	}
	base := measure(200)

	var faulty sync.WaitGroup
	for i := range 200 {
		for _, p := range []string{"hanging", "failing"} {
			faulty.Add(1)
			if !lanes.Submit(notifier.Delivery{NoticeID: fmt.Sprint(i), Provider: p, Body: []byte(`{}`), Attempt: 1}, func(notifier.Receipt, error) { faulty.Done() }) {
				faulty.Done()
			}
		}
	}
	testenv.WaitFor(t, 10*time.Second, "hanging endpoint saturated", func() bool { return len(hanging.got()) == 4 })
	withFaults := measure(200)
	if n := len(hanging.got()); n != 4 {
		t.Fatalf("hanging endpoint got %d requests, want exactly its concurrency (4)", n)
	}
	q := func(l []time.Duration, p float64) time.Duration { return l[int(p*float64(len(l)-1))] }
	t.Logf("healthy provider delivery latency, alone:            p50 %v p99 %v", q(base, .5), q(base, .99))
	t.Logf("healthy provider delivery latency, beside faults:    p50 %v p99 %v", q(withFaults, .5), q(withFaults, .99))
	if len(healthy.got()) != 400 {
		t.Fatalf("healthy endpoint got %d deliveries, want 400", len(healthy.got()))
	}
}
