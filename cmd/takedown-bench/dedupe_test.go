package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestDedupePrint(t *testing.T) {
	r := dedupeResult{ids: 1000, window: 10 * time.Minute, perID: 100}
	var out bytes.Buffer
	// 8 ids per notice at 100 B: 800 B per notice; for 600 s at 1,000
	// notices/s, 480 MB.
	r.print(&out, 8)
	for _, s := range []string{"per message id                      100 B", "per notice                          800 B  (8.0 ids",
		"at   10 notices/s sustained        5 MB", "at 1000 notices/s sustained      480 MB"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}
	out.Reset()
	r.print(&out, 0)
	if strings.Contains(out.String(), "per notice") {
		t.Errorf("without a closed loop there is nothing per notice:\n%s", out.String())
	}
}

// TestMeasureDedupe runs the measurement as the bench does, with fewer ids.
func TestMeasureDedupe(t *testing.T) {
	r, err := measureDedupe(context.Background(), 50000, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// Each id is a map entry and a list entry holding a 38-byte string;
	// with this few ids the maps' growth steps make the figure coarse
	// (the bench publishes a million), so only "clearly something, and
	// not absurd" is checked: publishing without the ids gives ~0.
	if r.perID < 16 || r.perID > 1000 {
		t.Errorf("%.0f B per message id, want between 16 and 1,000", r.perID)
	}
}
