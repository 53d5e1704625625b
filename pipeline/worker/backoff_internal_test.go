package worker

import (
	"testing"
	"time"
)

func TestEarlyBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 25 * time.Millisecond, 2: 50 * time.Millisecond, 5: 400 * time.Millisecond, 30: 30 * time.Second} {
		if got := earlyBackoff(n); got != want {
			t.Errorf("earlyBackoff(%d) = %v, want %v", n, got, want)
		}
	}
	// Fifty deliveries (the default MaxDeliver) span well over the
	// scheduler's retry of a delivery whose record was lost (30s).
	var total time.Duration
	for n := 1; n <= 50; n++ {
		total += earlyBackoff(n)
	}
	if total < 10*time.Minute {
		t.Errorf("50 early retries span only %v", total)
	}
}
