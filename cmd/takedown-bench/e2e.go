package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/takedown-eu/takedown/internal/providersim"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/pipeline/worker"
)

// collector follows the events stream and records when each notice was
// delivered and removed (event times, on this machine's clock).
type collector struct {
	mu        sync.Mutex
	delivered map[string]time.Time
	removed   map[string]time.Time
	nRemoved  int
	changed   chan struct{}
	stop      func()
}

func collect(ctx context.Context, e *env) (*collector, error) {
	c := &collector{delivered: map[string]time.Time{}, removed: map[string]time.Time{}, changed: make(chan struct{}, 1)}
	cons, err := e.watcher.OrderedConsumer(ctx, e.bus.StreamName(bus.Events), jetstream.OrderedConsumerConfig{
		// Only the two events measured: the received event carries the
		// whole notice and would cost the measurement more than the rest.
		FilterSubjects: []string{"takedown.events.bench.*.delivered", "takedown.events.bench.*.removed"},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return nil, err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var ev struct {
			NoticeID string             `json:"notice_id"`
			Type     pipeline.EventType `json:"type"`
			At       time.Time          `json:"at"`
		}
		if json.Unmarshal(m.Data(), &ev) != nil {
			return
		}
		c.mu.Lock()
		switch ev.Type {
		case pipeline.EventDelivered:
			c.delivered[ev.NoticeID] = ev.At
		case pipeline.EventRemoved:
			if _, dup := c.removed[ev.NoticeID]; !dup {
				c.nRemoved++
			}
			c.removed[ev.NoticeID] = ev.At
		}
		c.mu.Unlock()
		select {
		case c.changed <- struct{}{}:
		default:
		}
	}, jetstream.PullMaxMessages(5000))
	if err != nil {
		return nil, err
	}
	c.stop = cc.Stop
	return c, nil
}

// waitRemoved waits until ids (all the collector has seen since it
// started) are removed.
func (c *collector) waitRemoved(ctx context.Context, ids []string, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		n := c.nRemoved
		c.mu.Unlock()
		if n >= len(ids) {
			c.mu.Lock()
			defer c.mu.Unlock()
			for _, id := range ids {
				if _, ok := c.removed[id]; !ok {
					return fmt.Errorf("notice %s not removed", id)
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("%d of %d notices removed after %s", n, len(ids), timeout)
		case <-c.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pipelineRun runs the intake and feedback workers, the relay and the
// simulated providers until stop is called.
type pipelineRun struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startPipeline(e *env, o options) *pipelineRun {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipelineRun{cancel: cancel}
	clock := pipeline.SystemClock{}
	cfg := bus.ConsumerConfig{MaxAckPending: 20000}
	in := &worker.Intake{Bus: e.bus, Store: e.store, Deliveries: e.deliv, Dir: e.d, Clock: clock, Metrics: e.m, Logger: e.log, Workers: o.workers, Consumer: cfg}
	fb := &worker.Feedback{Bus: e.bus, Store: e.store, Dir: e.d, Clock: clock, Metrics: e.m, Logger: e.log, Workers: o.workers, Consumer: cfg}
	relay := &worker.Relay{Store: e.store, Bus: e.bus, Metrics: e.m, Logger: e.log, Linger: o.relayLinger}
	var provs []providersim.Provider
	for _, id := range benchProviders {
		provs = append(provs, providersim.Provider{ID: id, Behaviour: providersim.Prompt})
	}
	sim := &providersim.Sim{JS: e.providers, Providers: provs, Logger: e.log}
	for _, f := range []func(context.Context) error{in.Run, fb.Run, relay.Run, sim.Run} {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); _ = f(ctx) }()
	}
	return p
}

func (p *pipelineRun) stop() { p.cancel(); p.wg.Wait() }

// measured starts the event collector, then the pipeline; stop ends both.
func measured(ctx context.Context, e *env, o options) (*collector, func(), error) {
	col, err := collect(ctx, e)
	if err != nil {
		return nil, nil, err
	}
	p := startPipeline(e, o)
	return col, func() { p.stop(); col.stop() }, nil
}

func benchNotice(ref string, i int) pipeline.Notice {
	return pipeline.Notice{
		Schema: pipeline.NoticeSchema, Kind: pipeline.KindRemovalOrder, Issuer: "bench", Reference: ref,
		Provider: benchProviders[i%len(benchProviders)], IssuedAt: time.Date(2026, 11, 27, 9, 15, 0, 0, time.UTC), MemberState: "DE",
		Content:     []pipeline.ContentItem{{URL: "https://videohost.example/v/" + ref, Locator: "video at 00:42, uploaded by account 'x'"}},
		Reasons:     []pipeline.Reason{pipeline.ReasonIncitement, pipeline.ReasonInstruction},
		Explanation: "Video glorifies a terrorist attack and gives instructions for making explosives.",
		Language:    "de", Contact: pipeline.Contact{Name: "BKA TCO desk", Email: "tco@bka.example"},
	}
}

// encodeNotices builds n notices with references prefix-0000000 … and
// returns their ids and JSON. The loops encode their notices before the
// clock starts: the issuer's encoding is not the pipeline's work, and on
// two shared cores it would take CPU from it.
func encodeNotices(prefix string, n int) (ids []string, bodies [][]byte) {
	ids, bodies = make([]string, n), make([][]byte, n)
	for i := range n {
		nt := benchNotice(fmt.Sprintf("%s-%07d", prefix, i), i)
		ids[i], bodies[i] = nt.ID(), mustJSON(nt)
	}
	return ids, bodies
}

type percentiles struct{ p50, p95, p99, max time.Duration }

func pct(d []time.Duration) percentiles {
	if len(d) == 0 {
		return percentiles{}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return percentiles{at(0.50), at(0.95), at(0.99), d[len(d)-1]}
}

func (p percentiles) String() string {
	r := func(d time.Duration) string { return d.Round(10 * time.Microsecond).String() }
	return fmt.Sprintf("p50 %s  p95 %s  p99 %s  max %s", r(p.p50), r(p.p95), r(p.p99), r(p.max))
}

type e2eResult struct {
	notices            int
	perSec             float64
	elapsed            time.Duration
	delivered, removed percentiles
	cpuPer1000         time.Duration
	redisPer1000       time.Duration
	natsPer1000        time.Duration // the NATS server's part, when it runs apart
	natsApart          bool
	redisCommands      []commandStat
	aofRewrites        int
	workers            int
	nats               natsOps // over the whole run
}

func measureClosedLoop(ctx context.Context, e *env, o options) (e2eResult, error) {
	r := e2eResult{notices: o.notices, workers: o.workers}
	col, stop, err := measured(ctx, e, o)
	if err != nil {
		return r, err
	}
	defer stop()
	stopProfile, err := startCPUProfile(o.cpuProfile)
	if err != nil {
		return r, err
	}
	defer stopProfile()
	if o.memProfile != "" {
		f, err := os.Create(o.memProfile)
		if err != nil {
			return r, err
		}
		defer f.Close()
		// The profile counts from the start of the process; what came
		// before this run is small beside it.
		runtime.GC()
		defer func() { _ = pprof.Lookup("allocs").WriteTo(f, 0) }()
	}
	ids, bodies := encodeNotices("E2E", o.notices)
	sent := make(map[string]time.Time, o.notices)
	if err := compactAOF(ctx, e); err != nil {
		return r, err
	}
	if err := e.rdb.ConfigResetStat(ctx).Err(); err != nil {
		return r, err
	}
	ops0, err := countNATSOps(ctx, e)
	if err != nil {
		return r, err
	}
	cpu0, redis0, nats0, aof0 := e.cpu(), procCPU(e.redis.PID()), e.natsCPU(), aofRewrites(ctx, e)
	start := time.Now()
	for i, id := range ids {
		sent[id] = time.Now()
		m := nats.NewMsg("takedown.intake.bench")
		m.Data = bodies[i]
		if _, err := e.issuer.PublishMsgAsync(m, jetstream.WithMsgID(id), issuerStall); err != nil {
			return r, err
		}
	}
	<-e.issuer.PublishAsyncComplete()
	if err := col.waitRemoved(ctx, ids, 10*time.Minute); err != nil {
		return r, err
	}
	r.cpuPer1000 = (e.cpu() - cpu0) * 1000 / time.Duration(o.notices)
	r.redisPer1000 = (procCPU(e.redis.PID()) - redis0) * 1000 / time.Duration(o.notices)
	r.natsPer1000, r.natsApart = (e.natsCPU()-nats0)*1000/time.Duration(o.notices), e.natsProc != nil
	r.aofRewrites = aofRewrites(ctx, e) - aof0
	if r.redisCommands, err = commandStats(ctx, e); err != nil {
		return r, err
	}
	ops1, err := countNATSOps(ctx, e)
	if err != nil {
		return r, err
	}
	r.nats = ops1.sub(ops0)
	col.mu.Lock()
	defer col.mu.Unlock()
	var last time.Time
	var dl, rl []time.Duration
	for _, id := range ids {
		dl = append(dl, col.delivered[id].Sub(sent[id]))
		rl = append(rl, col.removed[id].Sub(sent[id]))
		if col.removed[id].After(last) {
			last = col.removed[id]
		}
	}
	r.elapsed = last.Sub(start)
	r.perSec = float64(o.notices) / r.elapsed.Seconds()
	r.delivered, r.removed = pct(dl), pct(rl)
	return r, nil
}

func (r e2eResult) print(w io.Writer, raw rawResult) {
	fmt.Fprintf(w, "end to end, closed loop (%d notices submitted at once, %d intake and %d feedback workers, providers confirm at once)\n", r.notices, r.workers, r.workers)
	fmt.Fprintf(w, "  throughput                   %10.0f notices/s (first submit to last removal: %s)\n", r.perSec, r.elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "  submit→delivered             %s\n", r.delivered)
	fmt.Fprintf(w, "  submit→removed               %s\n", r.removed)
	if r.natsApart {
		fmt.Fprintf(w, "  CPU per 1,000 notices        %10.3f s (this process: workers, simulated providers, issuer and watcher: %.3f s; nats-server: %.3f s; redis-server: %.3f s)\n",
			r.cpuPer1000.Seconds(), (r.cpuPer1000 - r.natsPer1000 - r.redisPer1000).Seconds(), r.natsPer1000.Seconds(), r.redisPer1000.Seconds())
	} else {
		fmt.Fprintf(w, "  CPU per 1,000 notices        %10.3f s (this process: workers, embedded NATS server, simulated providers; and redis-server: %.3f s)\n", r.cpuPer1000.Seconds(), r.redisPer1000.Seconds())
	}
	printCommandStats(w, r.redisCommands, r.notices)
	printAOFRewrites(w, r.aofRewrites)
	if raw.publishPerSec > 0 {
		fmt.Fprintf(w, "  pipeline ÷ raw publish       %10.4f (1/%.1f; target ≥ 1/20)\n", r.perSec/raw.publishPerSec, raw.publishPerSec/r.perSec)
		r.engineFloor(raw, runtime.NumCPU()).print(w)
	}
	fmt.Fprintln(w)
}

// floor is what the engines alone would cost per notice if each stream
// operation cost what it costs in the raw measurements (batched,
// asynchronous, no pipeline code around it), plus redis-server's measured
// CPU for the notice's transitions; and the rate and ratio to raw publish
// that this leaves on the machine's CPUs.
type floor struct {
	writes, deliveries float64 // per notice
	nats, redis, total time.Duration
	cpus               int
	perSec, ratio      float64
	raw                rawResult
}

func (r e2eResult) engineFloor(raw rawResult, cpus int) floor {
	f := floor{cpus: cpus, raw: raw}
	if r.notices == 0 {
		return f
	}
	f.writes = float64(r.nats.stored) / float64(r.notices)
	f.deliveries = float64(r.nats.delivered) / float64(r.notices)
	f.nats = time.Duration(f.writes*float64(raw.cpuPerPublish) + f.deliveries*float64(raw.cpuPerConsume))
	f.redis = r.redisPer1000 / 1000
	f.total = f.nats + f.redis
	if f.total > 0 {
		f.perSec = float64(cpus) / f.total.Seconds()
	}
	if raw.publishPerSec > 0 {
		f.ratio = f.perSec / raw.publishPerSec
	}
	return f
}

func (f floor) print(w io.Writer) {
	if f.total <= 0 || f.ratio <= 0 {
		return
	}
	fmt.Fprintf(w, "  engines alone, at raw cost   %10.0f µs CPU per notice: %.1f stream writes × %s + %.1f consumer deliveries × %s (raw rates), redis-server %s (measured)\n",
		float64(f.total.Microseconds()), f.writes, f.raw.cpuPerPublish.Round(100*time.Nanosecond), f.deliveries, f.raw.cpuPerConsume.Round(100*time.Nanosecond), f.redis.Round(time.Microsecond))
	fmt.Fprintf(w, "    ceiling on %d CPUs          %10.0f notices/s = 1/%.1f of raw publish, if the pipeline's own code cost nothing\n", f.cpus, f.perSec, 1/f.ratio)
	if f.nats > 0 {
		natsOnly := float64(f.cpus) / f.nats.Seconds()
		fmt.Fprintf(w, "    stream work alone          %10.0f notices/s = 1/%.1f, if Redis cost nothing too\n", natsOnly, f.raw.publishPerSec/natsOnly)
	}
}

type openResult struct {
	rate        int
	duration    time.Duration
	notices     int
	delivered   percentiles
	aofRewrites int
	// CPU of the whole run (this process, redis-server and, when it runs
	// apart, the NATS server) per 1,000 notices, and the servers' parts.
	cpuPer1000, redisPer1000 time.Duration
	natsPer1000              time.Duration // the NATS server's part, when it runs apart
	natsApart                bool
	redisCommands            []commandStat
	// byMinute has the percentiles of each minute of sending, for runs
	// longer than one; heapAfter is this process's live heap at the end.
	byMinute  []percentiles
	heapAfter int64
	// spells the steadiness probe saw during the run, and the latencies
	// read against them.
	spells steadyResult
	bySpell
}

func measureOpenLoop(ctx context.Context, e *env, o options) (openResult, error) {
	r := openResult{rate: o.openRate, duration: o.openFor}
	col, stop, err := measured(ctx, e, o)
	if err != nil {
		return r, err
	}
	defer stop()
	if err := compactAOF(ctx, e); err != nil {
		return r, err
	}
	n := int(o.openFor.Seconds() * float64(o.openRate))
	r.notices = n
	ids, bodies := encodeNotices("OPEN", n)
	if err := e.rdb.ConfigResetStat(ctx).Err(); err != nil {
		return r, err
	}
	aof0 := aofRewrites(ctx, e)
	profile := o.openCPUProfile
	if o.traceFile != "" {
		// With CPU profiling on, the trace carries CPU samples with
		// their times; the profile itself goes beside the trace.
		profile = o.traceFile + ".cpu"
	}
	stopProfile, err := startCPUProfile(profile)
	if err != nil {
		return r, err
	}
	defer stopProfile()
	if o.traceFile != "" {
		f, err := os.Create(o.traceFile)
		if err != nil {
			return r, err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return r, err
		}
		defer trace.Stop()
	}
	cpu0, redis0, nats0 := e.cpu(), procCPU(e.redis.PID()), e.natsCPU()
	probe := startSteadyProbe(ctx)
	defer probe.stop()
	scheduled := make([]time.Time, n)
	start := time.Now().Add(100 * time.Millisecond)
	interval := time.Second / time.Duration(o.openRate)
	for i := range n {
		scheduled[i] = start.Add(time.Duration(i) * interval)
		if d := time.Until(scheduled[i]); d > 0 {
			time.Sleep(d)
		}
		// Latency counts from the scheduled time, so a stall here shows.
		m := nats.NewMsg("takedown.intake.bench")
		m.Data = bodies[i]
		if _, err := e.issuer.PublishMsgAsync(m, jetstream.WithMsgID(ids[i]), issuerStall); err != nil {
			return r, err
		}
	}
	<-e.issuer.PublishAsyncComplete()
	if err := col.waitRemoved(ctx, ids, 5*time.Minute); err != nil {
		return r, err
	}
	r.spells = probe.stop()
	r.aofRewrites = aofRewrites(ctx, e) - aof0
	r.cpuPer1000 = (e.cpu() - cpu0) * 1000 / time.Duration(n)
	r.redisPer1000 = (procCPU(e.redis.PID()) - redis0) * 1000 / time.Duration(n)
	r.natsPer1000, r.natsApart = (e.natsCPU()-nats0)*1000/time.Duration(n), e.natsProc != nil
	if r.redisCommands, err = commandStats(ctx, e); err != nil {
		return r, err
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	lat := make([]time.Duration, n)
	sentAt := make([]time.Duration, n)
	for i, id := range ids {
		lat[i] = col.delivered[id].Sub(scheduled[i])
		sentAt[i] = scheduled[i].Sub(probe.start)
	}
	r.bySpell = splitBySpells(sentAt, lat, r.spells, spellSettle, openTarget)
	r.byMinute = byMinute(lat, o.openRate)
	r.delivered = pct(lat)
	if len(r.byMinute) > 1 {
		// Only printed for runs longer than a minute; a forced collection
		// is not free with a large heap.
		r.heapAfter = heapAfterGC()
	}
	return r, nil
}

const (
	// openTarget is the open loop's p99 target.
	openTarget = 50 * time.Millisecond
	// spellSettle is how long after a slow spell notices still count as
	// sent near it: what the spell left undone is still being worked off
	// (at 1,000 notices/s on two cores, a 100 ms spell's backlog takes a
	// few hundred milliseconds).
	spellSettle = 250 * time.Millisecond
)

// bySpell reads an open loop's latencies against the slow spells of the
// same run.
type bySpell struct {
	away       percentiles // notices sent neither during a spell nor within settle after one
	awayCount  int
	over       int // notices over the target
	overNear   int // of them, sent during a spell or within settle after one
	settle     time.Duration
	target     time.Duration
	totalCount int
}

// splitBySpells sorts notices by their send times (sentAt, since the probe
// started) into those sent during a spell or within settle after one, and
// the rest.
func splitBySpells(sentAt, lat []time.Duration, spells steadyResult, settle, target time.Duration) bySpell {
	b := bySpell{settle: settle, target: target, totalCount: len(lat)}
	var away []time.Duration
	for i, at := range sentAt {
		near := false
		for j, s := range spells.spellStarts {
			if at >= s && at <= s+spells.spellLens[j]+settle {
				near = true
				break
			}
		}
		if lat[i] > target {
			b.over++
			if near {
				b.overNear++
			}
		}
		if !near {
			away = append(away, lat[i])
		}
	}
	b.awayCount = len(away)
	b.away = pct(away)
	return b
}

// print reports the run; steady, when measured, says what the machine's
// slow spells would make of the p99 if they stopped all work.
func (r openResult) print(w io.Writer, steady steadyResult) {
	fmt.Fprintf(w, "open loop (%d notices/s for %s, %d notices, latency from each scheduled send time)\n", r.rate, r.duration, r.notices)
	fmt.Fprintf(w, "  submit→delivered             %s  (target p99 ≤ 50ms)\n", r.delivered)
	if steady.units > 0 {
		fmt.Fprintf(w, "    the idle machine's slow spells, if they stopped all work: p99 %s (first part)\n", steady.spellQuantile(0.99).Round(time.Millisecond))
	}
	if r.spells.units > 0 {
		sp := r.spells
		fmt.Fprintf(w, "  slow spells during the run   %d, %.1f %% of the time (the steadiness probe beside the load: slow units %.1f %%, slowest %.1f×); if they stopped all work: p99 %s\n",
			len(sp.spellLens), 100*sp.spellShare(), 100*float64(sp.slow)/float64(sp.units), sp.worst, sp.spellQuantile(0.99).Round(time.Millisecond))
		fmt.Fprintf(w, "  %-29s%d notices, %d of them sent during a spell or within %s after one\n", "over "+r.target.String(), r.over, r.overNear, r.settle)
		if r.awayCount > 0 {
			fmt.Fprintf(w, "  %-29s%s  (%d of %d notices)\n", "sent away from spells", r.away, r.awayCount, r.totalCount)
		}
	}
	if r.natsApart {
		fmt.Fprintf(w, "  CPU per 1,000 notices          %.3f s (nats-server: %.3f s; redis-server: %.3f s)\n", r.cpuPer1000.Seconds(), r.natsPer1000.Seconds(), r.redisPer1000.Seconds())
	} else {
		fmt.Fprintf(w, "  CPU per 1,000 notices          %.3f s (redis-server: %.3f s)\n", r.cpuPer1000.Seconds(), r.redisPer1000.Seconds())
	}
	printCommandStats(w, r.redisCommands, r.notices)
	if len(r.byMinute) > 1 {
		for i, p := range r.byMinute {
			fmt.Fprintf(w, "  %-29s%s\n", fmt.Sprintf("minute %d of sending", i+1), p)
		}
		fmt.Fprintf(w, "  live heap after the run      %10.0f MB (this process; with the NATS server embedded, its remembered message ids among it)\n", float64(r.heapAfter)/1e6)
	}
	printAOFRewrites(w, r.aofRewrites)
	fmt.Fprintln(w)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// printCommandStats prints redis-server's busiest commands of a run
// (INFO commandstats, reset at its start), per 1,000 of its notices.
func printCommandStats(w io.Writer, stats []commandStat, notices int) {
	for i, c := range stats {
		if i == 4 {
			break
		}
		fmt.Fprintf(w, "    redis %-22s %10.3f s (%d calls, %.1f µs each)\n", c.name, float64(c.usec)/1e6*1000/float64(notices), c.calls, float64(c.usec)/float64(max(c.calls, 1)))
	}
}

// issuerStall lets the submitting issuer wait for PubAcks when it has as
// many publishes outstanding as its connection allows, rather than fail:
// the closed loop submits everything at once.
var issuerStall = jetstream.WithStallWait(time.Minute)

// startCPUProfile profiles this process's CPU into path until the returned
// function is called; an empty path profiles nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// byMinute splits latencies in sending order, sent at rate per second,
// into minutes of sending and returns each minute's percentiles (the last
// minute may be partial). lat is not changed.
func byMinute(lat []time.Duration, rate int) []percentiles {
	per := rate * 60
	if per <= 0 {
		return nil
	}
	var out []percentiles
	for i := 0; i < len(lat); i += per {
		out = append(out, pct(slices.Clone(lat[i:min(i+per, len(lat))])))
	}
	return out
}
