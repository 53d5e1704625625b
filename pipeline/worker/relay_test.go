package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/pipeline/worker"
	"github.com/takedown-eu/takedown/tracker"
)

// crashBeforeTrim is the real store, except that the relay dies between
// publishing and trimming.
type crashBeforeTrim struct{ *tracker.Store }

func (crashBeforeTrim) TrimOutboxes(context.Context, map[int][]string) error {
	return errors.New("killed before trim")
}

func TestRelayKilledBeforeTrimPublishesEachEventOnceInOrder(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	id := ""
	for i, ref := range []string{"R-1", "R-2", "R-3"} {
		n := testenv.Notice("de-bka", ref, "videohost", pipeline.KindRemovalOrder)
		if _, err := h.store.Create(ctx, &n, testenv.JSON(n), t0, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := h.store.Delivered(ctx, n.ID(), t0, time.Hour, t0.Add(time.Hour), nil); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			id = n.ID()
			if _, err := h.store.ApplyFeedback(ctx, simple(id, "videohost", pipeline.FeedbackAcknowledged), "", t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	dying := &worker.Relay{Store: crashBeforeTrim{h.store}, Bus: h.bus, Metrics: h.metrics, Logger: h.log, Owner: "dying", LeaseTTL: time.Second}
	if _, err := dying.RunOnce(ctx); err == nil {
		t.Fatal("trim failure not reported")
	}
	c, _ := h.store.Counts(ctx)
	if c.Outbox != 7 {
		t.Fatalf("outbox holds %d events after the crash, want all 7 kept", c.Outbox)
	}
	// The next relay takes the shard over once the lease lapses and
	// publishes everything again; JetStream drops the duplicates.
	next := &worker.Relay{Store: h.store, Bus: h.bus, Metrics: h.metrics, Logger: h.log, Owner: "next"}
	testenv.WaitFor(t, 10*time.Second, "outbox relayed by the next relay", func() bool {
		if _, err := next.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		c, _ := h.store.Counts(ctx)
		return c.Outbox == 0
	})
	all := h.streamMsgs("EVENTS", "takedown.events.>")
	if len(all) != 7 {
		t.Fatalf("events stream holds %d events, want 7 (no duplicates)", len(all))
	}
	var versions []int64
	for _, e := range h.events(id) {
		versions = append(versions, e.Version)
	}
	if diff := cmp.Diff([]int64{1, 2, 3}, versions); diff != "" {
		t.Errorf("versions in stream order (-want +got):\n%s", diff)
	}
	// The same events published again are not conflicts.
	if parked := h.streamMsgs(bus.Parked, ">"); len(parked) != 0 {
		t.Errorf("%d events parked; the duplicates were the same events", len(parked))
	}
}

// Redis loses a transition the events stream already holds; the tracker
// then makes another at the same version. The stream would drop its
// event as a duplicate of the lost one: the relay parks it instead
// (version_conflict, naming the stream's event), counts and logs it, and
// trims it from the outbox.
func TestRelayParksAnEventWhoseVersionTheStreamHolds(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	n := testenv.Notice("de-bka", "R-conflict", "videohost", pipeline.KindRemovalOrder)
	id := n.ID()
	if _, err := h.store.Create(ctx, &n, testenv.JSON(n), t0, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.Delivered(ctx, id, t0.Add(time.Second), time.Hour, t0.Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	relay := &worker.Relay{Store: h.store, Bus: h.bus, Metrics: h.metrics, Logger: h.log, Owner: "r"}
	if _, err := relay.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	evs := h.events(id)
	if len(evs) != 2 {
		t.Fatalf("%d events relayed, want 2", len(evs))
	}
	// Redis comes back without the delivery: the notice as received.
	if err := h.rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	rb, err := tracker.Rebuild(evs[:1])
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.Restore(ctx, rb, 0, t0); err != nil {
		t.Fatal(err)
	}
	// Delivered again, later: version 2 again, another event. The first
	// relay to take it dies before trimming; the next relays it again.
	if _, err := h.store.Delivered(ctx, id, t0.Add(time.Minute), time.Hour, t0.Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	dying := &worker.Relay{Store: crashBeforeTrim{h.store}, Bus: h.bus, Metrics: h.metrics, Logger: h.log, Owner: "r"}
	if _, err := dying.RunOnce(ctx); err == nil {
		t.Fatal("trim failure not reported")
	}
	if _, err := relay.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if c, _ := h.store.Counts(ctx); c.Outbox != 0 {
		t.Errorf("outbox holds %d events after the relay", c.Outbox)
	}
	if got := h.events(id); len(got) != 2 || !got[1].At.Equal(evs[1].At) {
		t.Errorf("events stream changed: %+v", got)
	}
	parked := h.parkedMsgs(">", 1)
	if len(parked) != 1 {
		t.Fatalf("%d parked messages, want the event parked once", len(parked))
	}
	p := parked[0]
	var ev pipeline.Event
	if err := json.Unmarshal(p.Data(), &ev); err != nil || ev.ID != id+".2" || !ev.At.Equal(t0.Add(time.Minute)) {
		t.Errorf("parked %s (%v), want the second delivery's event", p.Data(), err)
	}
	hdr := p.Headers()
	if hdr.Get(bus.HeaderParkReason) != "version_conflict" || hdr.Get(bus.HeaderParkSeq) != "2" ||
		hdr.Get(bus.HeaderParkSubject) != "takedown.events.de-bka.videohost.delivered" ||
		!strings.Contains(hdr.Get(bus.HeaderParkDetail), "holds "+id+".2 as delivered at "+t0.Add(time.Second).Format(time.RFC3339Nano)) {
		t.Errorf("parked with headers %v", hdr)
	}
	if got := testutil.ToFloat64(h.metrics.Parked.WithLabelValues("events", "version_conflict")); got < 1 {
		t.Errorf("takedown_parked_total{source=events,reason=version_conflict} = %v, want it counted", got)
	}
}

// holdProxy forwards TCP connections to a server and can hold back what
// the server sends (its replies) while it is held.
type holdProxy struct {
	url string
	mu  sync.RWMutex // held for writing while replies are held back
}

func newHoldProxy(t *testing.T, target string) *holdProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	px := &holdProxy{url: "nats://" + l.Addr().String()}
	addr := strings.TrimPrefix(target, "nats://")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				return
			}
			t.Cleanup(func() { c.Close(); s.Close() })
			go func() { _, _ = io.Copy(s, c) }()
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 {
						px.mu.RLock()
						_, werr := c.Write(buf[:n])
						px.mu.RUnlock()
						if werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return px
}

// A round with more events than the connection allows outstanding
// publishes waits for acknowledgements to free room, even when the server
// is slow to send them, instead of failing the round.
func TestRelayRoundWaitsForRoomToPublish(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	for i := range 20 {
		n := testenv.Notice("de-bka", fmt.Sprintf("ROOM-%d", i), "videohost", pipeline.KindRemovalOrder)
		if _, err := h.store.Create(ctx, &n, testenv.JSON(n), t0, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := h.store.Delivered(ctx, n.ID(), t0, time.Hour, t0.Add(time.Hour), nil); err != nil {
			t.Fatal(err)
		}
	}
	px := newHoldProxy(t, h.nats.URL())
	js, err := jetstream.New(testenv.Connect(t, px.url), jetstream.WithPublishAsyncMaxPending(4))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	relay := &worker.Relay{Store: h.store, Bus: b, Metrics: h.metrics, Logger: h.log, Owner: "room"}
	// The server's acknowledgements are held back for a second: five
	// times what nats.go waits for room by default.
	px.mu.Lock()
	released := make(chan struct{})
	go func() {
		time.Sleep(time.Second)
		px.mu.Unlock()
		close(released)
	}()
	n, err := relay.RunOnce(ctx)
	<-released
	if err != nil {
		t.Fatalf("round failed while acknowledgements were slow: %v", err)
	}
	if n != 40 {
		t.Errorf("relayed %d events, want 40", n)
	}
	if c, _ := h.store.Counts(ctx); c.Outbox != 0 {
		t.Errorf("outbox holds %d events, want none", c.Outbox)
	}
}

// An event published again after the stream lost its first publication
// (deleted by an operator) is parked rather than dropped with nothing
// left of it, and the outbox drains.
func TestRelayParksAnEventWhoseFirstPublicationIsGone(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	n := testenv.Notice("de-bka", "R-gone", "videohost", pipeline.KindRemovalOrder)
	if _, err := h.store.Create(ctx, &n, testenv.JSON(n), t0, t0); err != nil {
		t.Fatal(err)
	}
	dying := &worker.Relay{Store: crashBeforeTrim{h.store}, Bus: h.bus, Metrics: h.metrics, Logger: h.log, Owner: "r"}
	if _, err := dying.RunOnce(ctx); err == nil {
		t.Fatal("trim failure not reported")
	}
	st, err := h.js.Stream(ctx, h.bus.StreamName(bus.Events))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, 1); err != nil {
		t.Fatal(err)
	}
	relay := &worker.Relay{Store: h.store, Bus: h.bus, Metrics: h.metrics, Logger: h.log, Owner: "r"}
	if _, err := relay.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if c, _ := h.store.Counts(ctx); c.Outbox != 0 {
		t.Errorf("outbox holds %d events after the relay", c.Outbox)
	}
	parked := h.parkedMsgs(">", 1)
	if len(parked) != 1 || parked[0].Headers().Get(bus.HeaderParkReason) != "duplicate_of_removed" ||
		!strings.Contains(parked[0].Headers().Get(bus.HeaderParkDetail), "its message 1, which it no longer holds") {
		t.Fatalf("parked %d messages: %v", len(parked), parked[0].Headers())
	}
}
