package metrics_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/metrics"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/tracker"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestMetricsLintClean(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.TimeToRemoval.WithLabelValues("removal_order", "videohost").Observe(42)
	m.Rejected.WithLabelValues("intake", "invalid").Inc()
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	if !slices.Contains(metrics.RemovalBuckets, 3600) {
		t.Error("time-to-removal buckets lack the one-hour boundary")
	}
	if !slices.IsSorted(metrics.RemovalBuckets) {
		t.Error("buckets not ascending")
	}
}

func TestClusterGaugesComeFromRedis(t *testing.T) {
	ctx := context.Background()
	st, err := tracker.New(testenv.Redis(t), tracker.Config{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for i, ref := range []string{"a", "b", "c"} {
		n := testenv.Notice("de-bka", ref, "videohost", pipeline.KindRemovalOrder)
		if _, err := st.Create(ctx, &n, testenv.JSON(n), t0, t0); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			if _, err := st.Delivered(ctx, n.ID(), t0, time.Hour, t0, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := metrics.NewClusterCollector(st, time.Second)
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
	want := `
# HELP takedown_notices Notices per state, cluster-wide from Redis (terminal states included). Aggregate with max across replicas.
# TYPE takedown_notices gauge
takedown_notices{state="acknowledged"} 0
takedown_notices{state="blocked"} 0
takedown_notices{state="declined"} 0
takedown_notices{state="delivered"} 2
takedown_notices{state="failed"} 0
takedown_notices{state="received"} 1
takedown_notices{state="removed"} 0
takedown_notices{state="withdrawn"} 0
# HELP takedown_outbox_events Events in the Redis outbox not yet relayed to the events stream.
# TYPE takedown_outbox_events gauge
takedown_outbox_events 5
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "takedown_notices", "takedown_outbox_events"); err != nil {
		t.Error(err)
	}
}

type failing struct{}

func (failing) Counts(context.Context) (tracker.Counts, error) {
	return tracker.Counts{}, context.DeadlineExceeded
}

func TestClusterGaugesReportUnreadableRedis(t *testing.T) {
	want := `
# HELP takedown_cluster_gauges_up 1 if the cluster-wide gauges could be read from Redis at this scrape.
# TYPE takedown_cluster_gauges_up gauge
takedown_cluster_gauges_up 0
`
	if err := testutil.CollectAndCompare(metrics.NewClusterCollector(failing{}, time.Second), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
