package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/takedown-eu/takedown/pipeline/bus"
)

// TestMeasureScheduler runs the scheduler part as the bench does, with
// fewer notices: every probe's escalation or reminder fires, none before
// it was due, and both are reported.
func TestMeasureScheduler(t *testing.T) {
	ctx := context.Background()
	var stderr bytes.Buffer
	e, err := startEnv(ctx, &stderr, envConfig{duplicateWindow: bus.DefaultDuplicateWindow})
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	defer e.close()
	o := options{openNotices: 1000, probes: 300, schedLead: 5 * time.Second, schedSpread: time.Second}
	r, err := measureScheduler(ctx, e, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if r.fired < o.probes {
		t.Errorf("%d follow-ups fired, want at least the %d probes'", r.fired, o.probes)
	}
	if r.cpu <= 0 {
		t.Error("the passes' CPU is not counted")
	}
	var out bytes.Buffer
	r.print(&out)
	for _, s := range []string{"1000 open notices tracked, 300 follow-ups due over 1s", "escalation lateness          p50 ", "reminder lateness            p50 ", "CPU per follow-up fired "} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}
}
