package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A virtual machine's CPUs are not always as fast as they are most of the
// time: the host may run other work on the same cores. The steadiness
// probe measures that: one goroutine per CPU, each on its own thread pinned
// to its CPU, times a fixed unit of work every few milliseconds and
// compares each unit with the fastest one. Units are timed by the thread's
// own CPU clock, so a unit that waits for a CPU busy with other work of
// this machine does not count as slow; a unit whose CPU runs slower does,
// since the guest charges the time the host takes to whatever thread was
// running. The probe runs on the idle machine before the other parts, so
// that the latency figures can be read against it, and beside the open
// loop, so that its latencies can be matched with the spells of that run.

// slowFactor is how much slower than the fastest unit a unit must be to
// count as slow.
const slowFactor = 3

type steadyResult struct {
	duration time.Duration
	unit     time.Duration // the fastest unit
	units    int
	slow     int     // units at least slowFactor times the fastest
	worst    float64 // the slowest unit, in multiples of the fastest
	// spells are stretches of slow units (on any CPU) less than spellGap
	// apart that last at least minSpell: their starts (since the probe
	// started) and lengths. A lone slow unit (an interrupt, a timer) is
	// not a spell.
	spellStarts []time.Duration
	spellLens   []time.Duration
}

const (
	spellGap = 50 * time.Millisecond
	minSpell = 10 * time.Millisecond
)

// workUnit is a fixed amount of CPU and cache work (~30 µs on the test
// machine).
func workUnit(buf []uint64) uint64 {
	x := uint64(1)
	for range 20000 {
		x = x*6364136223846793005 + 1442695040888963407
		buf[x%uint64(len(buf))] += x
	}
	return buf[7]
}

type unitTiming struct {
	at, took time.Duration
}

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

type steadyProbe struct {
	start   time.Time
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	timings [][]unitTiming
	once    sync.Once
	result  steadyResult
}

// startSteadyProbe starts timing units on every CPU until stop.
func startSteadyProbe(ctx context.Context) *steadyProbe {
	ctx, cancel := context.WithCancel(ctx)
	cpus := runtime.NumCPU()
	p := &steadyProbe{start: time.Now(), cancel: cancel, timings: make([][]unitTiming, cpus)}
	for c := range cpus {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			// The thread stays locked: when the goroutine ends, the runtime
			// ends the thread with it instead of reusing a thread pinned to
			// one CPU for other goroutines.
			runtime.LockOSThread()
			var set unix.CPUSet
			set.Set(c)
			_ = unix.SchedSetaffinity(0, &set) // best effort: without it units are still timed
			buf := make([]uint64, 4096)
			for ctx.Err() == nil {
				at := time.Since(p.start)
				c0 := threadCPU()
				workUnit(buf)
				p.timings[c] = append(p.timings[c], unitTiming{at: at, took: threadCPU() - c0})
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return p
}

// stop ends the probe and summarises what it timed; later calls return
// the same summary.
func (p *steadyProbe) stop() steadyResult {
	p.once.Do(func() {
		p.cancel()
		p.wg.Wait()
		var all []unitTiming
		for _, t := range p.timings {
			all = append(all, t...)
		}
		p.result = steadyResult{duration: time.Since(p.start)}.summarise(all)
	})
	return p.result
}

func measureSteadiness(ctx context.Context, d time.Duration) steadyResult {
	p := startSteadyProbe(ctx)
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	r := p.stop()
	r.duration = d
	return r
}

func (r steadyResult) summarise(all []unitTiming) steadyResult {
	// A unit the thread clock says took no time (or less) was not
	// measured: the clock read failed or did not advance. Kept, it would
	// become the yardstick and make every other unit infinitely slow.
	all = slices.DeleteFunc(all, func(u unitTiming) bool { return u.took <= 0 })
	if len(all) == 0 {
		return r
	}
	r.units = len(all)
	r.unit = slices.MinFunc(all, func(a, b unitTiming) int { return cmp.Compare(a.took, b.took) }).took
	slices.SortFunc(all, func(a, b unitTiming) int { return cmp.Compare(a.at, b.at) })
	var last time.Duration = -1
	for _, u := range all {
		f := float64(u.took) / float64(r.unit)
		r.worst = max(r.worst, f)
		if f < slowFactor {
			continue
		}
		r.slow++
		end := u.at + u.took
		if last >= 0 && u.at-last < spellGap {
			i := len(r.spellStarts) - 1
			r.spellLens[i] = max(r.spellLens[i], end-r.spellStarts[i])
		} else {
			r.spellStarts = append(r.spellStarts, u.at)
			r.spellLens = append(r.spellLens, u.took)
		}
		last = max(last, end)
	}
	// Keep the spells that lasted.
	starts, lens := r.spellStarts[:0], r.spellLens[:0]
	for i, l := range r.spellLens {
		if l >= minSpell {
			starts, lens = append(starts, r.spellStarts[i]), append(lens, l)
		}
	}
	r.spellStarts, r.spellLens = starts, lens
	return r
}

func (r steadyResult) print(w io.Writer) {
	fmt.Fprintf(w, "CPU steadiness (idle machine, %s: a fixed %s unit of work every 5 ms on each CPU, timed by its thread's CPU clock)\n", r.duration, r.unit.Round(time.Microsecond))
	if r.units == 0 {
		fmt.Fprintln(w, "  no units measured")
		return
	}
	fmt.Fprintf(w, "  %-33s%.1f %% of %d  (slowest %.1f×)\n", fmt.Sprintf("slow units (≥%d× the fastest)", slowFactor), 100*float64(r.slow)/float64(r.units), r.units, r.worst)
	n := len(r.spellStarts)
	if n == 0 {
		fmt.Fprintf(w, "  %-33snone\n", "slow spells (≥"+minSpell.String()+")")
	} else {
		lens := slices.Clone(r.spellLens)
		slices.Sort(lens)
		fmt.Fprintf(w, "  %-33s%d: median %s, longest %s; %.1f %% of the time\n",
			"slow spells (≥"+minSpell.String()+")", n, lens[n/2].Round(time.Millisecond), lens[n-1].Round(time.Millisecond), 100*r.spellShare())
		fmt.Fprintf(w, "  %-33sp99 wait %s (work arriving evenly)\n", "if the spells stopped all work", r.spellQuantile(0.99).Round(time.Millisecond))
	}
	fmt.Fprintln(w)
}

// spellShare is the share of the measured time spent in slow spells.
func (r steadyResult) spellShare() float64 {
	if r.duration <= 0 {
		return 0
	}
	var total time.Duration
	for _, l := range r.spellLens {
		total += l
	}
	return total.Seconds() / r.duration.Seconds()
}

// spellQuantile is the p-quantile (0 < p < 1) of the wait that the slow
// spells alone impose on work arriving evenly over the measured time, if
// nothing progressed during a spell: work arriving inside a spell waits
// for the rest of it, other work not at all. On a busy machine a 10–25×
// slowdown comes close to that: what a spell leaves undone piles up until
// it ends. On a lightly loaded one work goes on during a spell, slower,
// and waits are shorter. The share of arrivals that wait longer than q is
// Σ max(0, len−q) / duration; the result is the least q for which that
// share is at most 1−p.
func (r steadyResult) spellQuantile(p float64) time.Duration {
	if r.duration <= 0 || len(r.spellLens) == 0 {
		return 0
	}
	over := func(q time.Duration) time.Duration {
		var t time.Duration
		for _, l := range r.spellLens {
			t += max(0, l-q)
		}
		return t
	}
	allowed := time.Duration((1 - p) * float64(r.duration))
	lo, hi := time.Duration(0), slices.Max(r.spellLens)
	if over(lo) <= allowed {
		return 0
	}
	for hi-lo > time.Microsecond {
		mid := lo + (hi-lo)/2
		if over(mid) <= allowed {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}
