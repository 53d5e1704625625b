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

// load creates and delivers n open notices whose deadline (and first
// follow-up) is deadline(i), from 32 connections.
func load(ctx context.Context, e *env, prefix string, n int, deadline func(i int) time.Time) error {
	const conns = 32
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	now := time.Now().UTC()
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < n; i += conns {
				nt := benchNotice(fmt.Sprintf("%s-%08d", prefix, i), i)
				if _, err := e.store.Create(ctx, &nt, mustJSON(nt), now, now.Add(time.Hour)); err != nil {
					errs <- err
					return
				}
				dl := deadline(i)
				if _, err := e.store.Delivered(ctx, nt.ID(), dl.Add(-time.Hour), time.Hour, dl, nil); err != nil {
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
	if err := load(ctx, e, "MEM", o.memoryNotices, func(int) time.Time { return far }); err != nil {
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
	open, probes   int
	lateness       percentiles
	fired          int
	idlePass, busy percentiles
	loadSecs       float64
}

// measureScheduler tracks o.openNotices open notices, of which o.probes
// fall due over 25 seconds, runs one scheduler every 250ms, and measures
// how late each escalation fires after its deadline and what a pass costs.
func measureScheduler(ctx context.Context, e *env, o options) (schedResult, error) {
	r := schedResult{open: o.openNotices, probes: o.probes}
	start := time.Now()
	far := time.Now().Add(10 * time.Hour)
	background := o.openNotices - o.probes - o.memoryNotices // the memory run's notices are still open
	if background > 0 {
		if err := load(ctx, e, "BG", background, func(int) time.Time { return far }); err != nil {
			return r, err
		}
	}
	first := time.Now().Add(10 * time.Second)
	spread := 25 * time.Second
	if err := load(ctx, e, "PROBE", o.probes, func(i int) time.Time {
		return first.Add(time.Duration(i) * spread / time.Duration(o.probes)).Truncate(time.Millisecond)
	}); err != nil {
		return r, err
	}
	r.loadSecs = time.Since(start).Seconds()
	s := &worker.Scheduler{Store: e.store, Deliveries: e.deliv, Dir: e.d, Clock: pipeline.SystemClock{}, Metrics: e.m, Logger: e.log, Batch: 512}
	var idle, busy []time.Duration
	end := first.Add(spread + 5*time.Second)
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
	r.idlePass, r.busy = pct(idle), pct(busy)
	// Lateness: each escalation's time against its deadline, from the
	// tracker's timelines of the probe notices.
	var late []time.Duration
	for i := range o.probes {
		id := pipeline.NoticeID("bench", fmt.Sprintf("PROBE-%08d", i))
		tl, err := e.store.Timeline(ctx, id)
		if err != nil {
			return r, err
		}
		for _, ev := range tl {
			if ev.Type == pipeline.EventEscalated && ev.Deadline != nil {
				late = append(late, ev.At.Sub(*ev.Deadline))
			}
		}
	}
	if len(late) != o.probes {
		return r, fmt.Errorf("%d of %d probe escalations fired", len(late), o.probes)
	}
	r.lateness = pct(late)
	return r, nil
}

func (r schedResult) print(w io.Writer) {
	fmt.Fprintf(w, "scheduler at scale (%d open notices tracked, %d escalations due over 25 s, one scheduler, a pass every 250 ms; loaded in %.0f s)\n", r.open, r.probes, r.loadSecs)
	fmt.Fprintf(w, "  escalation lateness          %s  (target p99 ≤ 1s)\n", r.lateness)
	fmt.Fprintf(w, "  pass with nothing due        %s\n", r.idlePass)
	fmt.Fprintf(w, "  pass firing follow-ups       %s\n\n", r.busy)
}
