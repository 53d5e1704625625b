package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/worker"
)

// probe is how load sets up one open notice: delivered (and, for a
// reminder probe, acknowledged, so that no redelivery is due before the
// reminder) with its next follow-up at due, which is its deadline for an
// escalation probe and the first reminder (half the window) for a
// reminder probe.
type probe struct {
	due      time.Time
	reminder bool
}

// load creates n open notices set up by probe(i), from 32 connections.
func load(ctx context.Context, e *env, prefix string, n int, probe func(i int) probe) error {
	const conns = 32
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	now := time.Now().UTC()
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < n; i += conns {
				if err := loadOne(ctx, e, benchNotice(fmt.Sprintf("%s-%08d", prefix, i), i), now, probe(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func loadOne(ctx context.Context, e *env, nt pipeline.Notice, now time.Time, p probe) error {
	if _, err := e.store.Create(ctx, &nt, mustJSON(nt), now, now.Add(time.Hour)); err != nil {
		return err
	}
	// A removal order's window from the bench's directory; its one
	// reminder falls at half of it.
	pol := e.d.PolicyFor(nt.Provider, nt.Kind)
	window := pol.Window.D()
	deliveredAt := p.due.Add(-window)
	if p.reminder {
		if len(pol.Reminders) == 0 {
			return fmt.Errorf("the bench directory's %s policy has no reminder to time", nt.Kind)
		}
		deliveredAt = p.due.Add(-time.Duration(pol.Reminders[0] * float64(window)))
	}
	if _, err := e.store.Delivered(ctx, nt.ID(), deliveredAt, window, p.due, nil); err != nil {
		return err
	}
	if !p.reminder {
		return nil
	}
	ack := pipeline.Feedback{Schema: pipeline.FeedbackSchema, NoticeID: nt.ID(), Provider: nt.Provider, Type: pipeline.FeedbackAcknowledged}
	_, err := e.store.ApplyFeedback(ctx, ack, "", deliveredAt)
	return err
}

func usedMemory(ctx context.Context, e *env) (int64, error) {
	st, err := info(ctx, e, "memory", "used_memory")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(st["used_memory"], 10, 64)
}

type memResult struct {
	notices  int
	perOpen  float64
	loadRate float64
}

// measureMemory loads open notices (delivered, awaiting removal, their
// events relayed) and divides Redis's memory growth by their number.
func measureMemory(ctx context.Context, e *env, o options) (memResult, error) {
	r := memResult{notices: o.memoryNotices}
	if err := e.rdb.FlushAll(ctx).Err(); err != nil {
		return r, err
	}
	before, err := usedMemory(ctx, e)
	if err != nil {
		return r, err
	}
	start := time.Now()
	far := time.Now().Add(10 * time.Hour)
	if err := load(ctx, e, "MEM", o.memoryNotices, func(int) probe { return probe{due: far} }); err != nil {
		return r, err
	}
	r.loadRate = float64(o.memoryNotices) / time.Since(start).Seconds()
	// The relay trims the outbox once the events are published.
	relay := &worker.Relay{Store: e.store, Bus: e.bus, Metrics: e.m, Logger: e.log}
	for {
		n, err := relay.RunOnce(ctx)
		if err != nil {
			return r, err
		}
		if n == 0 {
			break
		}
	}
	after, err := usedMemory(ctx, e)
	if err != nil {
		return r, err
	}
	r.perOpen = float64(after-before) / float64(o.memoryNotices)
	return r, nil
}

func (r memResult) print(w io.Writer) {
	fmt.Fprintf(w, "Redis memory (%d open notices, delivered, events relayed; loaded at %.0f notices/s)\n", r.notices, r.loadRate)
	fmt.Fprintf(w, "  per open notice              %10.0f B  (target ≤ 2048 B)\n\n", r.perOpen)
}

type schedResult struct {
	open, probes int
	lead, spread time.Duration
	// Lateness of the escalations (at the deadline) and the reminders
	// (at half the window) of the probe notices, against when each was
	// due.
	escalation, reminder percentiles
	fired                int
	idlePass, busy       percentiles
	// cpu and redisCPU are the CPU time of the scheduler's passes (this
	// process and redis-server together, and redis-server's part).
	cpu, redisCPU time.Duration
	loadSecs      float64
}

// measureScheduler tracks o.openNotices open notices, of which o.probes
// fall due over o.schedSpread starting o.schedLead after loading — half
// of them escalations, half reminders, alternately —, runs one
// scheduler every 250ms, and measures how late each follow-up fires
// after it was due and what a pass costs.
func measureScheduler(ctx context.Context, e *env, o options) (schedResult, error) {
	r := schedResult{probes: o.probes, lead: o.schedLead, spread: o.schedSpread}
	start := time.Now()
	far := time.Now().Add(10 * time.Hour)
	// The notices earlier parts left open (the memory part's) count
	// towards the total.
	open, err := openNotices(ctx, e)
	if err != nil {
		return r, err
	}
	background := o.openNotices - o.probes - open
	if background > 0 {
		if err := load(ctx, e, "BG", background, func(int) probe { return probe{due: far} }); err != nil {
			return r, err
		}
	}
	first := time.Now().Add(o.schedLead)
	due := func(i int) probe {
		return probe{
			due:      first.Add(time.Duration(i) * o.schedSpread / time.Duration(o.probes)).Truncate(time.Millisecond),
			reminder: i%2 == 1,
		}
	}
	if err := load(ctx, e, "PROBE", o.probes, due); err != nil {
		return r, err
	}
	if late := time.Since(first); late > 0 {
		return r, fmt.Errorf("loading the probes took %s longer than the %s lead: the first follow-ups were due before the scheduler started", late, o.schedLead)
	}
	r.loadSecs = time.Since(start).Seconds()
	if r.open, err = openNotices(ctx, e); err != nil {
		return r, err
	}
	s := &worker.Scheduler{Store: e.store, Deliveries: e.deliv, Dir: e.d, Clock: pipeline.SystemClock{}, Metrics: e.m, Logger: e.log, Batch: 512}
	var idle, busy []time.Duration
	cpu0, redis0 := e.cpu(), procCPU(e.redis.PID())
	end := first.Add(o.schedSpread + 5*time.Second)
	for time.Now().Before(end) {
		t := time.Now()
		n, err := s.RunOnce(ctx)
		if err != nil {
			return r, err
		}
		if n == 0 {
			idle = append(idle, time.Since(t))
		} else {
			busy = append(busy, time.Since(t))
		}
		r.fired += n
		time.Sleep(time.Until(t.Add(250 * time.Millisecond)))
	}
	r.cpu, r.redisCPU = e.cpu()-cpu0, procCPU(e.redis.PID())-redis0
	r.idlePass, r.busy = pct(idle), pct(busy)
	// Lateness: each probe's follow-up event against when it was due,
	// from the tracker's timelines of the probe notices.
	var esc, rem []time.Duration
	for i := range o.probes {
		id := pipeline.NoticeID("bench", fmt.Sprintf("PROBE-%08d", i))
		tl, err := e.store.Timeline(ctx, id)
		if err != nil {
			return r, err
		}
		p := due(i)
		for _, ev := range tl {
			switch {
			case ev.Type == pipeline.EventEscalated && !p.reminder:
				esc = append(esc, ev.At.Sub(p.due))
			case ev.Type == pipeline.EventReminder && p.reminder:
				rem = append(rem, ev.At.Sub(p.due))
			}
		}
	}
	want := o.probes / 2
	if len(esc) != o.probes-want || len(rem) != want {
		return r, fmt.Errorf("of %d probes, %d escalations (want %d) and %d reminders (want %d) fired", o.probes, len(esc), o.probes-want, len(rem), want)
	}
	for _, l := range append(esc, rem...) {
		if l < 0 {
			return r, fmt.Errorf("a follow-up fired %s before it was due", -l)
		}
	}
	r.escalation, r.reminder = pct(esc), pct(rem)
	return r, nil
}

// openNotices counts the notices in the tracker that are not in a
// terminal state.
func openNotices(ctx context.Context, e *env) (int, error) {
	counts, err := e.store.Counts(ctx)
	if err != nil {
		return 0, err
	}
	var open int64
	for st, n := range counts.ByState {
		if !st.Terminal() {
			open += n
		}
	}
	return int(open), nil
}

func (r schedResult) print(w io.Writer) {
	fmt.Fprintf(w, "scheduler at scale (%d open notices tracked, %d follow-ups due over %s — escalations and reminders alternately —, one scheduler, a pass every 250 ms; loaded in %.0f s)\n", r.open, r.probes, r.spread, r.loadSecs)
	fmt.Fprintf(w, "  escalation lateness          %s  (target p99 ≤ 1s)\n", r.escalation)
	fmt.Fprintf(w, "  reminder lateness            %s  (target p99 ≤ 1s)\n", r.reminder)
	fmt.Fprintf(w, "  pass with nothing due        %s\n", r.idlePass)
	fmt.Fprintf(w, "  pass firing follow-ups       %s\n", r.busy)
	if r.fired > 0 {
		fmt.Fprintf(w, "  CPU per follow-up fired      %s (passes with nothing due included; redis-server: %s)\n",
			(r.cpu / time.Duration(r.fired)).Round(100*time.Nanosecond), (r.redisCPU / time.Duration(r.fired)).Round(100*time.Nanosecond))
	}
	fmt.Fprintln(w)
}
