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
)

// A virtual machine's CPUs are not always as fast as they are most of the
// time: the host may run other work on the same cores. The steadiness part
// measures that on the idle machine, before the pipeline runs, so that the
// latency figures can be read against it: one goroutine per CPU, each on
// its own thread, times a fixed unit of work every few milliseconds and
// compares each unit with the fastest one.

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
	// apart that last at least minSpell: their starts and lengths. A lone
	// slow unit (an interrupt, a timer) is not a spell.
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

func measureSteadiness(ctx context.Context, d time.Duration) steadyResult {
	r := steadyResult{duration: d}
	cpus := runtime.NumCPU()
	timings := make([][]unitTiming, cpus)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range cpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			buf := make([]uint64, 4096)
			for ctx.Err() == nil && time.Since(start) < d {
				s := time.Now()
				workUnit(buf)
				timings[c] = append(timings[c], unitTiming{at: s.Sub(start), took: time.Since(s)})
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	var all []unitTiming
	for _, t := range timings {
		all = append(all, t...)
	}
	return r.summarise(all)
}

func (r steadyResult) summarise(all []unitTiming) steadyResult {
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
	fmt.Fprintf(w, "CPU steadiness (idle machine, %s: a fixed %s unit of work every 5 ms on each CPU)\n", r.duration, r.unit.Round(time.Microsecond))
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
		var total time.Duration
		for _, l := range lens {
			total += l
		}
		fmt.Fprintf(w, "  %-33s%d: median %s, longest %s; %.1f %% of the time\n",
			"slow spells (≥"+minSpell.String()+")", n, lens[n/2].Round(time.Millisecond), lens[n-1].Round(time.Millisecond), 100*total.Seconds()/r.duration.Seconds())
	}
	fmt.Fprintln(w)
}
