package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestSteadinessSummary(t *testing.T) {
	ms := time.Millisecond
	u := 40 * time.Microsecond
	var all []unitTiming
	// Two CPUs, a unit every 5 ms for a second, all at full speed ...
	for cpu := range 2 {
		for at := time.Duration(cpu) * ms; at < time.Second; at += 5 * ms {
			all = append(all, unitTiming{at: at, took: u})
		}
	}
	// ... but for a lone slow unit (not a spell), and a 30 ms stretch from
	// 500 ms where units on both CPUs take ten times as long.
	all = append(all, unitTiming{at: 102 * ms, took: 4 * u})
	for at := 500 * ms; at < 530*ms; at += 5 * ms {
		all = append(all, unitTiming{at: at, took: 10 * u}, unitTiming{at: at + 2*ms, took: 12 * u})
	}
	measured := len(all)
	// Units the thread clock did not see take any time are left out
	// (a 12-minute open loop met one, and every other unit then counted
	// as infinitely slow).
	all = append(all, unitTiming{at: 700 * ms, took: 0}, unitTiming{at: 701 * ms, took: -u})
	r := steadyResult{duration: time.Second}.summarise(all)
	if r.unit != u || r.units != measured {
		t.Fatalf("unit %s of %d, want %s of %d", r.unit, r.units, u, measured)
	}
	if r.slow != 13 || r.worst != 12 {
		t.Errorf("slow %d, worst %.1f; want 13 and 12", r.slow, r.worst)
	}
	if len(r.spellStarts) != 1 || r.spellStarts[0] != 500*ms {
		t.Fatalf("spells start at %v, want one at 500ms", r.spellStarts)
	}
	if want := 525*ms + 2*ms + 12*u - 500*ms; r.spellLens[0] != want {
		t.Errorf("spell lasts %s, want %s", r.spellLens[0], want)
	}
	var out bytes.Buffer
	r.print(&out)
	for _, s := range []string{"slowest 12.0×", "1: median 27ms"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("summary lacks %q:\n%s", s, out.String())
		}
	}
}

func TestSteadinessMeasures(t *testing.T) {
	r := measureSteadiness(t.Context(), 50*time.Millisecond)
	if r.units == 0 || r.unit <= 0 {
		t.Fatalf("nothing measured: %+v", r)
	}
}

// A long slow unit on one CPU keeps a spell open past the shorter slow
// units of the other CPU that start after it.
func TestSteadinessSpellSpansCPUs(t *testing.T) {
	ms := time.Millisecond
	u := 40 * time.Microsecond
	all := []unitTiming{
		{at: 0, took: u},
		{at: 600 * ms, took: 30 * ms}, // CPU 1: ends at 630 ms
		{at: 601 * ms, took: 1 * ms},  // CPU 2: ends at 602 ms
		{at: 670 * ms, took: 1 * ms},  // 40 ms after 630 ms: same spell
	}
	r := steadyResult{duration: time.Second}.summarise(all)
	if len(r.spellStarts) != 1 || r.spellLens[0] != 71*ms {
		t.Fatalf("spells %v lasting %v, want one from 600ms lasting 71ms", r.spellStarts, r.spellLens)
	}
}

func TestSpellQuantile(t *testing.T) {
	ms := time.Millisecond
	twelve := make([]time.Duration, 12)
	for i := range twelve {
		twelve[i] = 100 * ms
	}
	for _, c := range []struct {
		name string
		lens []time.Duration
		p    float64
		want time.Duration
	}{
		{"no spells", nil, 0.99, 0},
		// 50 ms of 10 s is 0.5 % of the arrivals: under 1 %, so no wait at p99.
		{"spells shorter than the tail", []time.Duration{30 * ms, 20 * ms}, 0.99, 0},
		// Twelve 100 ms spells: 1 % of 10 s = 100 ms of arrivals may wait
		// longer than q, so 12·(100 ms − q) = 100 ms, q = 91.67 ms.
		{"twelve spells", twelve, 0.99, 91*ms + 666*time.Microsecond},
		// One 300 ms spell and ten short ones: only the long one reaches
		// the tail, 300 ms − q = 100 ms.
		{"one long spell", append([]time.Duration{300 * ms}, make([]time.Duration, 10)...), 0.99, 200 * ms},
		// At p50 of 10 s, 5 s may wait longer: 12·(100 ms − q) ≤ 5 s for any q ≥ 0.
		{"median", twelve, 0.5, 0},
	} {
		r := steadyResult{duration: 10 * time.Second, spellLens: c.lens}
		if c.name == "twelve spells" && r.spellShare() != 0.12 {
			t.Errorf("twelve 100 ms spells in 10 s: share %v, want 0.12", r.spellShare())
		}
		got := r.spellQuantile(c.p)
		if d := got - c.want; d < -2*time.Microsecond || d > 2*time.Microsecond {
			t.Errorf("%s: p%.0f %s, want %s", c.name, 100*c.p, got, c.want)
		}
	}
}
