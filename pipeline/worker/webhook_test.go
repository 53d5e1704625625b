package worker_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/notifier/signature"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/tracker"
)

var hookSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("worker-test-webhook-secret"))

// hookEndpoint answers with the statuses in order (the last one repeats)
// after verifying the signature against the test's clock.
type hookEndpoint struct {
	srv  *httptest.Server
	mu   sync.Mutex
	hits int
}

func newHookEndpoint(t *testing.T, clock func() time.Time, respond func(n int, w http.ResponseWriter)) *hookEndpoint {
	t.Helper()
	v, err := signature.NewVerifier(hookSecret)
	if err != nil {
		t.Fatal(err)
	}
	v.Now = clock
	e := &hookEndpoint{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := v.Verify(r.Header, body); err != nil {
			t.Errorf("signature: %v", err)
		}
		e.mu.Lock()
		e.hits++
		n := e.hits
		e.mu.Unlock()
		respond(n, w)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *hookEndpoint) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hits
}

func hookYAML(url, retry string) string {
	return fmt.Sprintf("  - id: hookhost\n    name: HookHost\n    channel: webhook\n    webhook: {url: %q, allow_private: true, secrets: [%s], retry: [%s]}\n", url, hookSecret, retry)
}

func (h *harness) attempts(id string) []tracker.Attempt {
	a, err := h.store.Attempts(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

func (h *harness) waitAttempts(id string, n int) []tracker.Attempt {
	h.t.Helper()
	var a []tracker.Attempt
	testenv.WaitFor(h.t, 10*time.Second, fmt.Sprintf("%d attempts", n), func() bool { a = h.attempts(id); return len(a) >= n })
	return a
}

func TestWebhookRetriesFollowTheScheduleThenFail(t *testing.T) {
	ctx := context.Background()
	var h *harness
	e := newHookEndpoint(t, func() time.Time { return h.clock.Now() }, func(_ int, w http.ResponseWriter) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	h = newHarness(t, withProviders(hookYAML(e.srv.URL, "10s, 1m")))
	h.start(nil)
	id := h.submit(testenv.Notice("de-bka", "HOOK-retry", "hookhost", pipeline.KindRemovalOrder))
	a := h.waitAttempts(id, 1)
	if a[0].Status != 503 || !a[0].At.Equal(t0) || a[0].Channel != "webhook" || a[0].Error == "" {
		t.Fatalf("first attempt %+v", a[0])
	}
	s := h.scheduler("a")
	runAt := func(d time.Duration) int {
		h.clock.Set(t0.Add(d))
		n, err := s.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The first retry waits 10s ± 10%.
	if n := runAt(8 * time.Second); n != 0 {
		t.Fatalf("retried after 8s")
	}
	if n := runAt(11 * time.Second); n != 1 {
		t.Fatalf("no retry after 11s")
	}
	a = h.waitAttempts(id, 2)
	if !a[1].At.Equal(t0.Add(11 * time.Second)) {
		t.Errorf("second attempt at %v", a[1].At)
	}
	// The second waits 1m ± 10% from then.
	if n := runAt(11*time.Second + 50*time.Second); n != 0 {
		t.Fatal("retried 50s after the second attempt")
	}
	runAt(11*time.Second + 67*time.Second)
	h.waitAttempts(id, 3)
	// No retries left: the next pass fails the notice, parked and visible.
	testenv.WaitFor(t, 10*time.Second, "notice failed", func() bool {
		runAt(11*time.Second + 67*time.Second)
		return h.state(id) == pipeline.StateFailed
	})
	if e.count() != 3 {
		t.Errorf("endpoint called %d times, want 3", e.count())
	}
	if got := testutil.ToFloat64(h.metrics.Deliveries.WithLabelValues("webhook", "hookhost", "retry")); got != 3 {
		t.Errorf("retry attempts counted %v, want 3", got)
	}
	if got := testutil.CollectAndCount(h.metrics.AttemptSeconds); got != 1 {
		t.Errorf("attempt latency series %d, want 1", got)
	}
	evs := h.waitEvents(id, 2)
	if evs[len(evs)-1].Type != pipeline.EventFailed {
		t.Errorf("last event %s, want failed", evs[len(evs)-1].Type)
	}
}

func TestWebhookHonoursRetryAfter(t *testing.T) {
	ctx := context.Background()
	var h *harness
	e := newHookEndpoint(t, func() time.Time { return h.clock.Now() }, func(n int, w http.ResponseWriter) {
		if n == 1 {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	h = newHarness(t, withProviders(hookYAML(e.srv.URL, "5s, 5s, 5s")))
	h.start(nil)
	id := h.submit(testenv.Notice("de-bka", "HOOK-429", "hookhost", pipeline.KindRemovalOrder))
	h.waitAttempts(id, 1)
	s := h.scheduler("a")
	for _, d := range []time.Duration{6 * time.Second, time.Minute, 119 * time.Second} {
		h.clock.Set(t0.Add(d))
		if n, _ := s.RunOnce(ctx); n != 0 {
			t.Fatalf("retried at +%v despite Retry-After: 120", d)
		}
	}
	h.clock.Set(t0.Add(120 * time.Second))
	if n, _ := s.RunOnce(ctx); n != 1 {
		t.Fatal("no retry once Retry-After passed")
	}
	h.waitState(id, pipeline.StateDelivered)
	rec, _ := h.store.Get(ctx, id)
	if !rec.DeliveredAt.Equal(t0.Add(120*time.Second)) || !rec.Deadline.Equal(t0.Add(120*time.Second+time.Hour)) {
		t.Errorf("clock started at %v (deadline %v), want at the 2xx", rec.DeliveredAt, rec.Deadline)
	}
}

func TestWebhookGoneDisablesEndpoint(t *testing.T) {
	ctx := context.Background()
	var h *harness
	e := newHookEndpoint(t, func() time.Time { return h.clock.Now() }, func(n int, w http.ResponseWriter) { w.WriteHeader(http.StatusGone) })
	h = newHarness(t, withProviders(hookYAML(e.srv.URL, "5s")))
	h.start(nil)
	a := h.submit(testenv.Notice("de-bka", "HOOK-410-a", "hookhost", pipeline.KindRemovalOrder))
	h.waitState(a, pipeline.StateFailed)
	d, err := h.store.EndpointDisabled(ctx, "hookhost")
	if err != nil || d == nil {
		t.Fatalf("endpoint not disabled: %v %v", d, err)
	}
	sys := h.streamMsgs(bus.Events, "takedown.events._.hookhost.endpoint_disabled")
	if len(sys) != 1 {
		t.Fatalf("%d endpoint_disabled events, want 1", len(sys))
	}
	// Later notices fail without calling the endpoint; they wait, failed
	// and replayable, for an operator.
	b := h.submit(testenv.Notice("de-bka", "HOOK-410-b", "hookhost", pipeline.KindRemovalOrder))
	h.waitState(b, pipeline.StateFailed)
	if e.count() != 1 {
		t.Fatalf("disabled endpoint called %d times", e.count())
	}
	if err := h.store.EnableEndpoint(ctx, "hookhost"); err != nil {
		t.Fatal(err)
	}
	if got, _ := h.store.EndpointDisabled(ctx, "hookhost"); got != nil {
		t.Fatal("still disabled")
	}
}
