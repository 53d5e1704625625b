package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestEngineFloor(t *testing.T) {
	raw := rawResult{publishPerSec: 100000, cpuPerPublish: 20 * time.Microsecond, cpuPerConsume: 10 * time.Microsecond}
	// 1,000 notices: 8,000 stream writes, 6,000 consumer deliveries,
	// redis-server 0.3 s per 1,000 notices.
	r := e2eResult{notices: 1000, nats: natsOps{stored: 8000, delivered: 6000}, redisPer1000: 300 * time.Millisecond}
	f := r.engineFloor(raw, 2)
	// 8·20 + 6·10 = 220 µs of NATS, 300 µs of Redis: 520 µs per notice,
	// two CPUs give 3,846 notices/s, 1/26 of 100,000 msgs/s.
	if f.nats != 220*time.Microsecond || f.redis != 300*time.Microsecond || f.total != 520*time.Microsecond {
		t.Fatalf("floor %+v", f)
	}
	if f.perSec < 3846 || f.perSec > 3847 {
		t.Errorf("%.1f notices/s, want 3846.2", f.perSec)
	}
	var out bytes.Buffer
	f.print(&out)
	for _, s := range []string{"520 µs CPU per notice", "8.0 stream writes × 20µs", "6.0 consumer deliveries × 10µs", "3846 notices/s = 1/26.0 of raw publish",
		// 220 µs of stream work alone: 9,091 notices/s, 1/11 of 100,000.
		"9091 notices/s = 1/11.0, if Redis cost nothing too"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}
	if f := (e2eResult{}).engineFloor(raw, 2); f.total != 0 {
		t.Errorf("no notices: floor %+v, want none", f)
	}
}

func TestSplitBySpells(t *testing.T) {
	ms := time.Millisecond
	// One spell from 1,000 to 1,100 ms; notices sent every 10 ms for 2 s,
	// 5 ms each, but 80 ms for those sent during the spell and 60 ms for
	// the first 50 ms after it; and one slow notice far from the spell.
	spells := steadyResult{spellStarts: []time.Duration{1000 * ms}, spellLens: []time.Duration{100 * ms}}
	var sentAt, lat []time.Duration
	for at := time.Duration(0); at < 2*time.Second; at += 10 * ms {
		l := 5 * ms
		switch {
		case at >= 1000*ms && at <= 1100*ms:
			l = 80 * ms
		case at > 1100*ms && at < 1150*ms:
			l = 60 * ms
		case at == 300*ms:
			l = 70 * ms
		}
		sentAt, lat = append(sentAt, at), append(lat, l)
	}
	b := splitBySpells(sentAt, lat, spells, 250*ms, 50*ms)
	// During the spell: 11 notices (1,000 … 1,100 ms); after it, 4 more
	// over 50 ms; the notice at 300 ms is the only one away and over.
	if b.over != 16 || b.overNear != 15 {
		t.Errorf("over %d, near %d; want 16 and 15", b.over, b.overNear)
	}
	// Away: 200 notices minus those from 1,000 to 1,350 ms (36).
	if b.awayCount != 164 || b.totalCount != 200 {
		t.Errorf("away %d of %d, want 164 of 200", b.awayCount, b.totalCount)
	}
	if b.away.max != 70*ms || b.away.p50 != 5*ms {
		t.Errorf("away %s", b.away)
	}
	// Without spells every notice is away.
	if b := splitBySpells(sentAt, lat, steadyResult{}, 250*ms, 50*ms); b.awayCount != 200 || b.overNear != 0 {
		t.Errorf("no spells: %+v", b)
	}
}

func TestByMinute(t *testing.T) {
	ms := time.Millisecond
	// Two notices a second for 150 s: the first minute at 5 ms, the second
	// at 50 ms, the half minute after at 500 ms.
	var lat []time.Duration
	for i := range 300 {
		switch {
		case i < 120:
			lat = append(lat, 5*ms)
		case i < 240:
			lat = append(lat, 50*ms)
		default:
			lat = append(lat, 500*ms)
		}
	}
	lat[0] = 9 * ms // sending order must survive
	got := byMinute(lat, 2)
	if len(got) != 3 {
		t.Fatalf("%d minutes, want 3", len(got))
	}
	if got[0].p50 != 5*ms || got[0].max != 9*ms || got[1].p99 != 50*ms || got[2].p50 != 500*ms {
		t.Errorf("minutes %+v", got)
	}
	if lat[0] != 9*ms || lat[299] != 500*ms {
		t.Error("byMinute reordered its input")
	}
	if byMinute(lat, 0) != nil {
		t.Error("no rate, no minutes")
	}
}
