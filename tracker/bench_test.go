package tracker_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/tracker"
)

// Each benchmark measures one Lua transition round trip against a real
// redis-server on loopback, and reports as redis-µs/op the time
// redis-server itself spent in the scripts (INFO commandstats): the cost
// that bounds a Redis shared by every worker.

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

func newBenchStore(b *testing.B) (*tracker.Store, *redis.Client) {
	b.Helper()
	rdb := testenv.Redis(b)
	st, err := tracker.New(rdb, tracker.Config{})
	if err != nil {
		b.Fatal(err)
	}
	return st, rdb
}

// serverTime starts counting redis-server's own time in scripts (the
// setup's scripts do not count) and reports it per op when the benchmark
// ends. Call it right before b.ResetTimer.
func serverTime(b *testing.B, rdb *redis.Client) {
	b.Helper()
	ctx := context.Background()
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		info, err := rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range strings.Split(info, "\r\n") {
			rest, ok := strings.CutPrefix(l, "cmdstat_evalsha:")
			if !ok {
				continue
			}
			for _, kv := range strings.Split(rest, ",") {
				if usec, ok := strings.CutPrefix(kv, "usec="); ok {
					n, _ := strconv.ParseFloat(usec, 64)
					b.ReportMetric(n/float64(b.N), "redis-µs/op")
				}
			}
		}
	})
}

func BenchmarkCreate(b *testing.B) {
	st, rdb := newBenchStore(b)
	ns, bodies := benchNotices(b, st, false)
	ctx := context.Background()
	b.ReportAllocs()
	serverTime(b, rdb)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := st.Create(ctx, &ns[i], bodies[i], t0, t0.Add(30*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDelivered(b *testing.B) {
	st, rdb := newBenchStore(b)
	ns, bodies := benchNotices(b, st, false)
	ctx := context.Background()
	for i := range ns {
		if _, err := st.Create(ctx, &ns[i], bodies[i], t0, t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	serverTime(b, rdb)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := st.Delivered(ctx, ns[i].ID(), t0, time.Hour, t0.Add(time.Minute), nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAcknowledged(b *testing.B) { benchFeedback(b, pipeline.FeedbackAcknowledged) }

func BenchmarkRemoved(b *testing.B) { benchFeedback(b, pipeline.FeedbackRemoved) }

// benchFeedback applies feedback of one type to delivered notices.
func benchFeedback(b *testing.B, typ pipeline.FeedbackType) {
	st, rdb := newBenchStore(b)
	ns, _ := benchNotices(b, st, true)
	ctx := context.Background()
	b.ReportAllocs()
	serverTime(b, rdb)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := st.ApplyFeedback(ctx, fb(ns[i].ID(), "videohost", typ), "", t0.Add(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClaimAndFollowUp(b *testing.B) {
	st, rdb := newBenchStore(b)
	ns, _ := benchNotices(b, st, true)
	ctx := context.Background()
	now := t0.Add(time.Minute)
	b.ReportAllocs()
	serverTime(b, rdb)
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
