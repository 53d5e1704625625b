package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/internal/providersim"
	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/pipeline/worker"
)

// outageRun submits notices before, during and after an outage made by
// breakFn and mendFn, with a prompt provider answering, and checks that
// every notice ends removed with exactly one delivery and one removal
// event: nothing lost, nothing duplicated.
func outageRun(t *testing.T, h *harness, dep string, breakFn, mendFn func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	health := &worker.Health{RedisPing: func(ctx context.Context) error { return h.rdb.Ping(ctx).Err() }, NATS: h.nc, Metrics: h.metrics, Logger: h.log, Interval: 50 * time.Millisecond}
	health.Check(ctx)
	go func() { _ = health.Run(ctx) }()
	h.start(health.Ready)
	sched := h.scheduler("outage")
	sched.Clock = h.clk
	sched.Interval = 100 * time.Millisecond
	schedDone := make(chan struct{})
	go func() { defer close(schedDone); _ = sched.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-schedDone })
	sim := &providersim.Sim{JS: h.js, Providers: []providersim.Provider{{ID: "videohost", Behaviour: providersim.Prompt}}}
	simDone := make(chan struct{})
	go func() { defer close(simDone); _ = sim.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-simDone })

	var ids []string
	submit := func(from, to int) {
		for i := from; i < to; i++ {
			n := testenv.Notice("de-bka", fmt.Sprintf("REF-outage-%03d", i), "videohost", pipeline.KindRemovalOrder)
			ids = append(ids, n.ID())
			h.publish(h.bus.IntakeSubject("de-bka"), n.ID(), n)
		}
	}
	submit(0, 20)
	breakFn()
	testenv.WaitFor(t, 10*time.Second, dep+" seen down", func() bool { return !health.Ready() })
	if dep == "redis" {
		// Issuers keep publishing while Redis is away: JetStream holds it.
		submit(20, 40)
	}
	mendFn()
	testenv.WaitFor(t, 10*time.Second, dep+" seen up", health.Ready)
	submit(40, 60)

	deadline := time.Now().Add(60 * time.Second)
	for {
		var stuck []string
		for _, id := range ids {
			if st := h.state(id); st != pipeline.StateRemoved {
				stuck = append(stuck, id+"="+string(st))
			}
		}
		if len(stuck) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s, %d notices not removed: %v", len(stuck), stuck)
		}
		time.Sleep(20 * time.Millisecond)
	}
	perNotice := map[string]int{}
	for _, m := range h.streamMsgs(bus.Deliver, h.bus.DeliverSubject("videohost")) {
		perNotice[m.Headers().Get("Takedown-Notice-Id")]++
	}
	removedEvents := map[string]int{}
	seen := map[string]bool{}
	testenv.WaitFor(t, 30*time.Second, "every removal relayed", func() bool {
		clear(removedEvents)
		clear(seen)
		for _, m := range h.streamMsgs(bus.Events, "takedown.events.*.*.removed") {
			id := m.Headers().Get("Nats-Msg-Id")
			if seen[id] {
				t.Fatalf("event %s published twice", id)
			}
			seen[id] = true
			removedEvents[id[:36]]++
		}
		return len(removedEvents) == len(ids)
	})
	for _, id := range ids {
		if perNotice[id] != 1 || removedEvents[id] != 1 {
			t.Errorf("notice %s: delivered %d times, %d removal events; want 1 and 1", id, perNotice[id], removedEvents[id])
		}
	}
}

func TestRedisRestartMidFlowLosesNothing(t *testing.T) {
	srv := testenv.OwnRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	h := newHarness(t, withRedis(rdb), withClock(pipeline.SystemClock{}))
	outageRun(t, h, "redis", srv.Kill, func() {
		if err := srv.Restart(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNATSRestartMidFlowLosesNothing(t *testing.T) {
	h := newHarness(t, withClock(pipeline.SystemClock{}))
	outageRun(t, h, "nats", h.nats.Shutdown, func() { h.nats.Restart(t) })
}
