package bus_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline/bus"
)

func TestStreamsAreCreatedIdempotently(t *testing.T) {
	ctx := context.Background()
	_, _, js := testenv.NATS(t)
	for i := 0; i < 2; i++ {
		if _, err := bus.New(ctx, js, bus.Config{Prefix: "td"}); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	want := map[string]jetstream.RetentionPolicy{
		"TD_INTAKE": jetstream.WorkQueuePolicy, "TD_DELIVER": jetstream.LimitsPolicy, "TD_FEEDBACK": jetstream.WorkQueuePolicy,
		"TD_EVENTS": jetstream.LimitsPolicy, "TD_PARKED": jetstream.LimitsPolicy,
	}
	for name, ret := range want {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.CachedInfo().Config.Retention != ret {
			t.Errorf("%s retention %v, want %v", name, s.CachedInfo().Config.Retention, ret)
		}
	}
	ev, _ := js.Stream(ctx, "TD_EVENTS")
	if ev.CachedInfo().Config.MaxAge < 180*24*time.Hour {
		t.Errorf("events kept %v, want at least six months", ev.CachedInfo().Config.MaxAge)
	}
	if _, err := bus.New(ctx, js, bus.Config{Prefix: "a.b"}); err == nil {
		t.Error("prefix with a dot accepted")
	}
}

func TestPublishDeduplicatesByMsgID(t *testing.T) {
	ctx := context.Background()
	_, _, js := testenv.NATS(t)
	b, err := bus.New(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := b.Publish(ctx, b.DeliverSubject("videohost"), "same-id", []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := js.Stream(ctx, b.StreamName(bus.Deliver))
	info, _ := s.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", info.State.Msgs)
	}
}

// run consumes the intake stream with h until the test ends.
func run(t *testing.T, b *bus.Bus, maxDeliver int, h bus.Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cons, err := b.Consumer(ctx, bus.ConsumerConfig{Name: "test", Stream: bus.Intake, MaxDeliver: maxDeliver, AckWait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- b.Run(ctx, cons, bus.RunConfig{Stream: bus.Intake, Workers: 2, MaxDeliver: maxDeliver}, h)
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestRetriesThenParksExhaustedMessages(t *testing.T) {
	ctx := context.Background()
	_, _, js := testenv.NATS(t)
	b, _ := bus.New(ctx, js, bus.Config{})
	var calls atomic.Int32
	run(t, b, 3, func(ctx context.Context, m jetstream.Msg) bus.Outcome {
		calls.Add(1)
		return bus.Retry(time.Millisecond, errors.New("redis down"))
	})
	m := nats.NewMsg(b.IntakeSubject("de-bka"))
	m.Data = []byte(`{"x":1}`)
	m.Header = nats.Header{"Custom": []string{"kept"}}
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	var parked jetstream.RawStreamMsg
	testenv.WaitFor(t, 10*time.Second, "message parked", func() bool {
		msg, err := js.Stream(ctx, b.StreamName(bus.Parked))
		if err != nil {
			return false
		}
		raw, err := msg.GetLastMsgForSubject(ctx, "takedown.parked.intake.de-bka")
		if err != nil {
			return false
		}
		parked = *raw
		return true
	})
	if calls.Load() != 3 {
		t.Errorf("handled %d times, want MaxDeliver=3", calls.Load())
	}
	if r := parked.Header.Get(bus.HeaderParkReason); r != "exhausted" {
		t.Errorf("reason %q", r)
	}
	if parked.Header.Get("Custom") != "kept" || string(parked.Data) != `{"x":1}` || parked.Header.Get(bus.HeaderParkSubject) != "takedown.intake.de-bka" {
		t.Errorf("parked copy lost data: %v %s", parked.Header, parked.Data)
	}
	// The work queue no longer holds it: it was acknowledged after parking.
	s, _ := js.Stream(ctx, b.StreamName(bus.Intake))
	testenv.WaitFor(t, 5*time.Second, "intake emptied", func() bool {
		info, _ := s.Info(ctx)
		return info.State.Msgs == 0
	})
}

func TestRunDrainsInFlightWorkOnShutdown(t *testing.T) {
	ctx := context.Background()
	_, _, js := testenv.NATS(t)
	b, _ := bus.New(ctx, js, bus.Config{})
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	var finished atomic.Int32
	stop := run(t, b, 5, func(ctx context.Context, m jetstream.Msg) bus.Outcome {
		started <- struct{}{}
		<-release
		if ctx.Err() != nil {
			t.Error("handler context cancelled during drain")
		}
		finished.Add(1)
		return bus.Done()
	})
	for i := range 2 {
		if _, err := b.Publish(ctx, b.IntakeSubject("de-bka"), "m"+strconv.Itoa(i), []byte("{}"), nil); err != nil {
			t.Fatal(err)
		}
	}
	<-started
	<-started
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Run returned with work in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-stopped
	if finished.Load() != 2 {
		t.Fatalf("finished %d handlers, want 2", finished.Load())
	}
	s, _ := js.Stream(ctx, b.StreamName(bus.Intake))
	testenv.WaitFor(t, 5*time.Second, "both acknowledged", func() bool {
		info, _ := s.Info(ctx)
		return info.State.Msgs == 0
	})
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 250 * time.Millisecond, 2: 500 * time.Millisecond, 4: 2 * time.Second, 20: 30 * time.Second} {
		if got := bus.Backoff(n); got != want {
			t.Errorf("Backoff(%d) = %v, want %v", n, got, want)
		}
	}
}

// A PubAck lost on the way back (as when the connection to the server is
// re-established) is asked for again with the same message id, at once
// rather than at the caller's deadline. The responder stands in for a
// stream whose first answer went missing.
func TestPublishAsksAgainForALostPubAck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, _, js := testenv.NATS(t)
	b, err := bus.New(ctx, js, bus.Config{PublishTry: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	other := testenv.Connect(t, srv.URL())
	var ids []string
	var mu sync.Mutex
	sub, err := other.Subscribe("probe.lost-ack", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
		if len(ids) == 2 { // the first answer is lost
			_ = m.Respond([]byte(`{"stream":"PROBE","seq":7,"duplicate":true}`))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	ack, err := b.Publish(ctx, "probe.lost-ack", "notice-1.1", []byte("{}"), nil)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	mu.Lock()
	got := append([]string(nil), ids...)
	mu.Unlock()
	if ack.Sequence != 7 || len(got) != 2 || got[0] != "notice-1.1" || got[1] != "notice-1.1" {
		t.Errorf("ack %+v after requests with ids %v; want sequence 7 after two requests with id notice-1.1", ack, got)
	}

	// Without a message id a repeat could store the message twice: the
	// first timeout is final.
	mu.Lock()
	ids = nil
	mu.Unlock()
	if _, err := b.Publish(ctx, "probe.lost-ack", "", []byte("{}"), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("publish without id: %v, want the try's deadline", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 1 {
		t.Errorf("publish without id sent %d requests, want 1", len(ids))
	}
}

// A message parked under a sequence an earlier parked message had (its
// stream was recreated, or restored from an older backup, and numbers
// messages from the start again) is parked too, not dropped as that
// message's duplicate.
func TestParkKeepsAMessageWhoseSequenceWasReused(t *testing.T) {
	ctx := context.Background()
	_, _, js := testenv.NATS(t)
	b, err := bus.New(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	parkAll := func(context.Context, jetstream.Msg) bus.Outcome { return bus.Park("unprocessable", "test") }
	parked := func(n int) {
		t.Helper()
		testenv.WaitFor(t, 10*time.Second, strconv.Itoa(n)+" parked", func() bool {
			return len(testenv.StreamMessages(t, js, b.StreamName(bus.Parked), ">")) == n
		})
	}
	publish := func(data string) {
		t.Helper()
		m := nats.NewMsg(b.IntakeSubject("de-bka"))
		m.Data = []byte(data)
		ack, err := js.PublishMsg(ctx, m)
		if err != nil || ack.Sequence != 1 {
			t.Fatalf("publish: %+v, %v; want sequence 1", ack, err)
		}
	}
	stop := run(t, b, 1, parkAll)
	publish(`{"first":1}`)
	parked(1)
	stop()
	if err := js.DeleteStream(ctx, b.StreamName(bus.Intake)); err != nil {
		t.Fatal(err)
	}
	if b, err = bus.New(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	run(t, b, 1, parkAll)
	publish(`{"second":2}`)
	parked(2)
}

// A replay of a parked message whose sequence an earlier replayed one had
// (the parked stream was recreated) reaches its subject, instead of being
// dropped as the earlier replay's duplicate while the parked copy is
// removed.
func TestReplayKeepsAMessageWhoseParkedSequenceWasReused(t *testing.T) {
	ctx := context.Background()
	_, _, js := testenv.NATS(t)
	b, err := bus.New(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	park := func(data string) {
		t.Helper()
		m := nats.NewMsg(b.ParkedSubject(bus.Intake, "de-bka"))
		m.Data = []byte(data)
		m.Header = nats.Header{bus.HeaderParkSubject: []string{b.IntakeSubject("de-bka")}}
		ack, err := js.PublishMsg(ctx, m)
		if err != nil || ack.Sequence != 1 {
			t.Fatalf("park: %+v, %v; want sequence 1", ack, err)
		}
		if _, err := b.ReplayParked(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	park(`{"first":1}`)
	if err := js.DeleteStream(ctx, b.StreamName(bus.Parked)); err != nil {
		t.Fatal(err)
	}
	if b, err = bus.New(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	park(`{"second":2}`)
	st, err := js.Stream(ctx, b.StreamName(bus.Intake))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 2 {
		t.Fatalf("intake holds %+v replayed messages (%v), want 2", info.State, err)
	}
}
