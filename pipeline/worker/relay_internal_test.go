package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/metrics"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/tracker"
)

func TestRelayPause(t *testing.T) {
	r := &Relay{}
	r.defaults()
	for _, tt := range []struct {
		name string
		n    int
		full bool
		err  error
		want time.Duration
	}{
		{"empty outboxes: poll again after the interval", 0, false, nil, r.Interval},
		{"failed round: retry after the interval", 3, false, errors.New("redis away"), r.Interval},
		{"a full batch: go on at once", r.Batch, true, nil, 0},
		{"a partial batch: linger so the next round gathers more", 2, false, nil, r.Linger},
	} {
		if got := r.pause(tt.n, tt.full, tt.err); got != tt.want {
			t.Errorf("%s: pause = %v, want %v", tt.name, got, tt.want)
		}
	}
	r.Linger = -1
	if got := r.pause(2, false, nil); got != 0 {
		t.Errorf("negative linger: pause = %v, want none", got)
	}
}

func TestRelayRoundReportsFullBatches(t *testing.T) {
	ctx := context.Background()
	st, err := tracker.New(testenv.Redis(t), tracker.Config{Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, _, js := testenv.NATS(t)
	b, err := bus.New(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	for i := range 3 {
		n := testenv.Notice("de-bka", fmt.Sprintf("FULL-%d", i), "videohost", pipeline.KindRemovalOrder)
		if _, err := st.Create(ctx, &n, testenv.JSON(n), now, now); err != nil {
			t.Fatal(err)
		}
	}
	r := &Relay{Store: st, Bus: b, Metrics: metrics.New(prometheus.NewRegistry()), Logger: slog.New(slog.DiscardHandler), Batch: 2}
	r.defaults()
	held := map[int]time.Time{}
	for _, want := range []struct {
		n    int
		full bool
	}{{2, true}, {1, false}, {0, false}} {
		n, full, err := r.round(ctx, held)
		if err != nil || n != want.n || full != want.full {
			t.Fatalf("round = %d events, full %v, %v; want %d, %v", n, full, err, want.n, want.full)
		}
	}
}
