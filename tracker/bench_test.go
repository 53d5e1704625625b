package tracker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/tracker"
)

// Each benchmark measures one Lua transition round trip against a real
// redis-server on loopback.

func benchNotices(b *testing.B, st *tracker.Store, deliver bool) ([]pipeline.Notice, [][]byte) {
	b.Helper()
	ctx := context.Background()
	ns := make([]pipeline.Notice, b.N)
	bodies := make([][]byte, b.N)
	for i := range ns {
		ns[i] = testenv.Notice("de-bka", fmt.Sprintf("BENCH-%d", i), "videohost", pipeline.KindRemovalOrder)
		bodies[i] = testenv.JSON(ns[i])
		if deliver {
			if _, err := st.Create(ctx, &ns[i], bodies[i], t0, t0); err != nil {
				b.Fatal(err)
			}
			if _, err := st.Delivered(ctx, ns[i].ID(), t0, time.Hour, t0.Add(time.Minute), nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	return ns, bodies
}

func newBenchStore(b *testing.B) *tracker.Store {
	b.Helper()
	st, err := tracker.New(testenv.Redis(b), tracker.Config{})
	if err != nil {
		b.Fatal(err)
	}
	return st
}

func BenchmarkCreate(b *testing.B) {
	st := newBenchStore(b)
	ns, bodies := benchNotices(b, st, false)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := st.Create(ctx, &ns[i], bodies[i], t0, t0.Add(30*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDelivered(b *testing.B) {
	st := newBenchStore(b)
	ns, bodies := benchNotices(b, st, false)
	ctx := context.Background()
	for i := range ns {
		if _, err := st.Create(ctx, &ns[i], bodies[i], t0, t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := st.Delivered(ctx, ns[i].ID(), t0, time.Hour, t0.Add(time.Minute), nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRemoved(b *testing.B) {
	st := newBenchStore(b)
	ns, _ := benchNotices(b, st, true)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := st.ApplyFeedback(ctx, fb(ns[i].ID(), "videohost", pipeline.FeedbackRemoved), "", t0.Add(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClaimAndFollowUp(b *testing.B) {
	st := newBenchStore(b)
	ns, _ := benchNotices(b, st, true)
	ctx := context.Background()
	now := t0.Add(time.Minute)
	b.ReportAllocs()
	b.ResetTimer()
	fired := 0
	for shard := 0; shard < st.Shards() && fired < b.N; shard++ {
		for {
			ids, err := st.Claim(ctx, shard, now, now.Add(time.Minute), 256, "bench")
			if err != nil {
				b.Fatal(err)
			}
			if len(ids) == 0 {
				break
			}
			for _, id := range ids {
				if _, err := st.FollowUp(ctx, id, "bench", 2, "reminder", now, now.Add(time.Hour), pipeline.Event{}, nil); err != nil {
					b.Fatal(err)
				}
				fired++
			}
		}
	}
	if fired != len(ns) {
		b.Fatalf("fired %d of %d", fired, len(ns))
	}
}
