package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/tracker"
)

// CountsSource reads cluster-wide counters. *tracker.Store implements it.
// It must be safe for concurrent use.
type CountsSource interface {
	Counts(ctx context.Context) (tracker.Counts, error)
}

var _ CountsSource = (*tracker.Store)(nil)

// ParkedSource counts the messages in the parked stream. *bus.Bus
// implements it.
type ParkedSource interface {
	ParkedCount(ctx context.Context) (uint64, error)
}

// ClusterCollector exports gauges read from Redis at scrape time. Every
// replica reads the same cluster-wide numbers, so aggregate them with max
// (not sum) across instances, or scrape them from one replica only.
type ClusterCollector struct {
	src     CountsSource
	timeout time.Duration
	byState *prometheus.Desc
	overdue *prometheus.Desc
	outbox  *prometheus.Desc
	up      *prometheus.Desc
	parked  *prometheus.Desc
	parkSrc ParkedSource
}

// WithParked adds the parked-message gauge, read from JetStream.
func (c *ClusterCollector) WithParked(src ParkedSource) *ClusterCollector {
	c.parkSrc = src
	return c
}

// NewClusterCollector returns a collector that reads src with timeout.
func NewClusterCollector(src CountsSource, timeout time.Duration) *ClusterCollector {
	return &ClusterCollector{
		src: src, timeout: timeout,
		byState: prometheus.NewDesc("takedown_notices", "Notices per state, cluster-wide from Redis (terminal states included). Aggregate with max across replicas.", []string{"state"}, nil),
		overdue: prometheus.NewDesc("takedown_notices_overdue", "Open notices past their deadline by kind and provider, cluster-wide from Redis. Aggregate with max across replicas.", []string{"kind", "provider"}, nil),
		outbox:  prometheus.NewDesc("takedown_outbox_events", "Events in the Redis outbox not yet relayed to the events stream.", nil, nil),
		parked:  prometheus.NewDesc("takedown_parked_messages", "Messages waiting in the parked stream for an operator.", nil, nil),
		up:      prometheus.NewDesc("takedown_cluster_gauges_up", "1 if the cluster-wide gauges could be read from Redis at this scrape.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ClusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.byState
	ch <- c.overdue
	ch <- c.outbox
	ch <- c.up
	ch <- c.parked
}

// Collect implements prometheus.Collector.
func (c *ClusterCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if c.parkSrc != nil {
		if n, err := c.parkSrc.ParkedCount(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(c.parked, prometheus.GaugeValue, float64(n))
		}
	}
	counts, err := c.src.Counts(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, st := range pipeline.States {
		ch <- prometheus.MustNewConstMetric(c.byState, prometheus.GaugeValue, float64(counts.ByState[st]), string(st))
	}
	for k, n := range counts.Overdue {
		ch <- prometheus.MustNewConstMetric(c.overdue, prometheus.GaugeValue, float64(n), string(k.Kind), k.Provider)
	}
	ch <- prometheus.MustNewConstMetric(c.outbox, prometheus.GaugeValue, float64(counts.Outbox))
}
