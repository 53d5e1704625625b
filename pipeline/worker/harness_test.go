package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/metrics"
	"github.com/takedown-eu/takedown/notifier"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/pipeline/worker"
	"github.com/takedown-eu/takedown/tracker"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

const directoryYAML = `
issuers:
  - {id: de-bka, name: BKA, member_state: DE}
  - {id: fr-pharos, name: PHAROS, member_state: FR}
providers:
  - {id: videohost, name: VideoHost, member_state: IE}
  - {id: filedrop, name: FileDrop, member_state: NL}
`

// harness is a pipeline on a real embedded NATS server and a real
// redis-server, with a manual clock.
type harness struct {
	t       *testing.T
	nats    *testenv.NATSServer
	nc      *nats.Conn
	js      jetstream.JetStream
	bus     *bus.Bus
	rdb     *redis.Client
	store   *tracker.Store
	dir     *pipeline.Directory
	clock   *testenv.Clock
	clk     pipeline.Clock // what the workers use: clock unless withClock
	reg     *prometheus.Registry
	metrics *metrics.Metrics
	log     *slog.Logger
	notif   *notifier.Notifier
	deliv   *worker.Deliveries
}

type option func(*harnessOpts)

type harnessOpts struct {
	rdb       *redis.Client
	clock     pipeline.Clock
	providers string
}

// withProviders adds YAML provider entries to the test directory.
func withProviders(yaml string) option { return func(o *harnessOpts) { o.providers = yaml } }

func withRedis(rdb *redis.Client) option { return func(o *harnessOpts) { o.rdb = rdb } }

// withClock runs the workers on another clock than the manual one.
func withClock(c pipeline.Clock) option { return func(o *harnessOpts) { o.clock = c } }

func newHarness(t *testing.T, opts ...option) *harness {
	t.Helper()
	var o harnessOpts
	for _, f := range opts {
		f(&o)
	}
	h := &harness{t: t, clock: testenv.NewClock(t0), reg: prometheus.NewRegistry()}
	h.nats, h.nc, h.js = testenv.NATS(t)
	h.clk = h.clock
	if o.clock != nil {
		h.clk = o.clock
	}
	h.rdb = o.rdb
	if h.rdb == nil {
		h.rdb = testenv.Redis(t)
	}
	var err error
	if h.bus, err = bus.New(context.Background(), h.js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	if h.store, err = tracker.New(h.rdb, tracker.Config{Shards: 4}); err != nil {
		t.Fatal(err)
	}
	if h.dir, err = pipeline.ParseDirectory([]byte(directoryYAML+o.providers), "yaml"); err != nil {
		t.Fatal(err)
	}
	h.metrics = metrics.New(h.reg)
	level := slog.LevelError
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	h.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	webhook, err := notifier.NewWebhook(h.dir, h.clk, func(ctx context.Context, provider string) (bool, error) {
		d, err := h.store.EndpointDisabled(ctx, provider)
		return d != nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
	lanes := notifier.NewLanes(webhook, h.clk, func(string) notifier.LaneConfig {
		return notifier.LaneConfig{Concurrency: 2, Rate: 1000, BreakerFailures: 100, BreakerCooldown: time.Second}
	}, notifier.LaneHooks{})
	t.Cleanup(func() { _ = lanes.Close(context.Background()) })
	h.notif = notifier.New(h.dir, map[pipeline.Channel]notifier.Channel{
		pipeline.ChannelNATS: notifier.NewNATS(h.bus, h.clk), pipeline.ChannelWebhook: webhook,
	}).WithLanes(pipeline.ChannelWebhook, lanes)
	h.deliv = &worker.Deliveries{Dispatch: h.notif, Store: h.store, Dir: h.dir, Clock: h.clk, Metrics: h.metrics, Logger: h.log, System: h.bus}
	return h
}

// start runs the intake and feedback workers and the relay until the test
// ends. The scheduler is driven by hand with the manual clock.
func (h *harness) start(ready func() bool) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				h.t.Errorf("worker: %v", err)
			}
		}()
	}
	run((&worker.Intake{Bus: h.bus, Store: h.store, Deliveries: h.deliv, Dir: h.dir, Clock: h.clk, Metrics: h.metrics, Logger: h.log, Ready: ready}).Run)
	run((&worker.Feedback{Bus: h.bus, Store: h.store, Dir: h.dir, Clock: h.clk, Metrics: h.metrics, Logger: h.log, Ready: ready}).Run)
	run((&worker.Relay{Store: h.store, Bus: h.bus, Metrics: h.metrics, Logger: h.log, Interval: 10 * time.Millisecond}).Run)
	h.t.Cleanup(func() { cancel(); wg.Wait() })
}

func (h *harness) scheduler(owner string) *worker.Scheduler {
	return &worker.Scheduler{Store: h.store, Deliveries: h.deliv, Dir: h.dir, Clock: h.clock, Metrics: h.metrics, Logger: h.log, Owner: owner, Lease: 30 * time.Second}
}

func (h *harness) publish(subject, msgID string, v any) {
	h.t.Helper()
	data, ok := v.([]byte)
	if !ok {
		data = testenv.JSON(v)
	}
	m := nats.NewMsg(subject)
	m.Data = data
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	if _, err := h.js.PublishMsg(context.Background(), m, opts...); err != nil {
		h.t.Fatalf("publish %s: %v", subject, err)
	}
}

func (h *harness) submit(n pipeline.Notice) string {
	h.t.Helper()
	h.publish(h.bus.IntakeSubject(n.Issuer), n.ID(), n)
	return n.ID()
}

func (h *harness) feedback(f pipeline.Feedback) {
	h.t.Helper()
	h.publish(h.bus.FeedbackSubject(f.Provider), "", f)
}

// deliveredOrder submits a removal order from de-bka to videohost with
// reference ref and waits until it is delivered.
func (h *harness) deliveredOrder(ref string) string {
	h.t.Helper()
	id := h.submit(testenv.Notice("de-bka", ref, "videohost", pipeline.KindRemovalOrder))
	h.waitState(id, pipeline.StateDelivered)
	return id
}

func (h *harness) state(id string) pipeline.State {
	rec, err := h.store.Get(context.Background(), id)
	if err != nil {
		return ""
	}
	return rec.State
}

func (h *harness) waitState(id string, want pipeline.State) {
	h.t.Helper()
	testenv.WaitFor(h.t, 15*time.Second, "notice "+id+" "+string(want), func() bool { return h.state(id) == want })
}

// streamMsgs returns every message of a stream whose subject matches filter.
// parkedMsgs waits until at least n messages match filter on the parked
// stream and returns them: a message is parked after its rejection is
// counted, so the count alone does not say it is there yet.
func (h *harness) parkedMsgs(filter string, n int) []jetstream.Msg {
	h.t.Helper()
	var msgs []jetstream.Msg
	testenv.WaitFor(h.t, 10*time.Second, fmt.Sprintf("%d parked messages on %s", n, filter), func() bool {
		msgs = h.streamMsgs(bus.Parked, filter)
		return len(msgs) >= n
	})
	return msgs
}

func (h *harness) streamMsgs(s bus.Stream, filter string) []jetstream.Msg {
	h.t.Helper()
	return testenv.StreamMessages(h.t, h.js, h.bus.StreamName(s), filter)
}

// events returns the relayed events of one notice, in stream order.
func (h *harness) events(id string) []pipeline.Event {
	h.t.Helper()
	var out []pipeline.Event
	for _, m := range h.streamMsgs(bus.Events, h.bus.Prefix()+".events.>") {
		var e pipeline.Event
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			h.t.Fatal(err)
		}
		if m.Headers().Get(jetstream.MsgIDHeader) != e.ID {
			h.t.Errorf("event %s published with Nats-Msg-Id %q", e.ID, m.Headers().Get(jetstream.MsgIDHeader))
		}
		if e.NoticeID == id {
			out = append(out, e)
		}
	}
	return out
}

func eventTypes(evs []pipeline.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = string(e.Type)
	}
	return out
}

func (h *harness) waitEvents(id string, n int) []pipeline.Event {
	h.t.Helper()
	var evs []pipeline.Event
	testenv.WaitFor(h.t, 15*time.Second, "events of "+id, func() bool {
		evs = h.events(id)
		return len(evs) >= n
	})
	return evs
}

func removed(id, provider string, at time.Time) pipeline.Feedback {
	return pipeline.Feedback{Schema: pipeline.FeedbackSchema, NoticeID: id, Provider: provider, Type: pipeline.FeedbackRemoved, ActionAt: &at, ProviderReference: "VH-1"}
}

func simple(id, provider string, t pipeline.FeedbackType) pipeline.Feedback {
	return pipeline.Feedback{Schema: pipeline.FeedbackSchema, NoticeID: id, Provider: provider, Type: t}
}
