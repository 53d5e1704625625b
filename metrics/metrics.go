// Package metrics defines takedown's Prometheus metrics. Build one Metrics
// per process on a Registerer (never the global one) and pass it to the
// workers; cluster-wide gauges come from Redis through NewClusterCollector.
//
//	reg := prometheus.NewRegistry()
//	m := metrics.New(reg)
//	reg.MustRegister(metrics.NewClusterCollector(store, 2*time.Second))
//
// All names carry the takedown_ prefix and base units; labels come only
// from bounded sets (kind, issuer, provider, channel, outcome, state, type,
// reason), never an id or a URL.
package metrics

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// RemovalBuckets are the time-to-removal histogram buckets in seconds. They
// have a boundary exactly at 3600 s, the one-hour limit of a removal order,
// so "removed within the hour" is read off one bucket; the short ones serve
// test and demo windows.
var RemovalBuckets = []float64{1, 5, 15, 30, 60, 300, 600, 900, 1800, 2700, 3600, 5400, 7200, 14400, 43200, 86400, 259200}

// Metrics holds the process's metrics. Safe for concurrent use.
type Metrics struct {
	// NoticesReceived counts new notices accepted, by kind and issuer.
	NoticesReceived *prometheus.CounterVec
	// Duplicates counts repeated submissions of the same notice.
	Duplicates *prometheus.CounterVec
	// Deliveries counts delivery attempts by channel, provider and outcome
	// (delivered, retry, failed, gone, circuit_open, queue_full).
	Deliveries *prometheus.CounterVec
	// Feedback counts applied provider feedback by provider, type and
	// Annex III ground ("" unless blocked).
	Feedback *prometheus.CounterVec
	// Rejected counts refused inputs by source (intake, feedback) and
	// reason (invalid, conflict, unknown_issuer, forbidden, ...).
	Rejected *prometheus.CounterVec
	// Parked counts messages moved to the parked stream, by source stream
	// and reason.
	Parked *prometheus.CounterVec
	// Transitions counts events written, by event type.
	Transitions *prometheus.CounterVec
	// FollowUps counts scheduler actions by type.
	FollowUps *prometheus.CounterVec
	// TimeToRemoval observes seconds from delivery to the provider's time
	// of action, by kind and provider.
	TimeToRemoval *prometheus.HistogramVec
	// Removals counts removals by kind, provider and timeliness (in_time,
	// late).
	Removals *prometheus.CounterVec
	// AttemptSeconds observes the latency of delivery attempts.
	AttemptSeconds *prometheus.HistogramVec
	// WebhookCircuit is a provider endpoint's circuit state: 0 closed,
	// 1 half-open, 2 open.
	WebhookCircuit *prometheus.GaugeVec
	// EndpointsDisabled counts webhook endpoints disabled after 410 Gone.
	EndpointsDisabled *prometheus.CounterVec
	// EventsRelayed counts events published to the events stream.
	EventsRelayed prometheus.Counter
	// DependencyUp is 1 while Redis or NATS answers, by dependency.
	DependencyUp *prometheus.GaugeVec
}

// New registers the metrics on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		NoticesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takedown_notices_received_total", Help: "New notices accepted from issuers.",
		}, []string{"kind", "issuer"}),
		Duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takedown_notices_duplicate_total", Help: "Repeated submissions of an already accepted notice.",
		}, []string{"issuer"}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takedown_deliveries_total", Help: "Delivery attempts to providers by outcome (delivered, retry, failed, gone, circuit_open, queue_full).",
		}, []string{"channel", "provider", "outcome"}),
		Feedback: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takedown_feedback_total", Help: "Provider feedback applied, by type and Annex III ground (empty unless blocked).",
		}, []string{"provider", "type", "ground"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takedown_rejected_total", Help: "Inputs refused, by source and reason.",
		}, []string{"source", "reason"}),
		Parked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takedown_parked_total", Help: "Messages moved to the parked stream, by source and reason.",
		}, []string{"source", "reason"}),
		Transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takedown_transitions_total", Help: "Notice events written to the tracker, by event type.",
		}, []string{"type"}),
		FollowUps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takedown_followups_total", Help: "Scheduler follow-ups fired, by action.",
		}, []string{"action"}),
		TimeToRemoval: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "takedown_time_to_removal_seconds", Help: "Seconds from delivery to the provider's time of removal.",
			Buckets: RemovalBuckets,
		}, []string{"kind", "provider"}),
		Removals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takedown_removals_total", Help: "Removals by timeliness against the deadline (in_time, late).",
		}, []string{"kind", "provider", "timeliness"}),
		AttemptSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "takedown_delivery_attempt_seconds", Help: "Latency of delivery attempts.",
			Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"channel", "provider"}),
		WebhookCircuit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "takedown_webhook_circuit_state", Help: "Circuit breaker of a provider's webhook endpoint: 0 closed, 1 half-open, 2 open.",
		}, []string{"provider"}),
		EndpointsDisabled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takedown_webhook_endpoints_disabled_total", Help: "Webhook endpoints disabled after answering 410 Gone.",
		}, []string{"provider"}),
		EventsRelayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takedown_events_relayed_total", Help: "Events published from the outbox to the events stream.",
		}),
		DependencyUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "takedown_dependency_up", Help: "1 while the dependency (redis, nats) answers.",
		}, []string{"dependency"}),
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "takedown_build_info", Help: "Always 1; labels say which build is running.",
	}, []string{"version", "revision", "goversion"})
	version, revision, goversion := BuildInfo()
	buildInfo.WithLabelValues(version, revision, goversion).Set(1)
	reg.MustRegister(buildInfo)
	reg.MustRegister(m.NoticesReceived, m.Duplicates, m.Deliveries, m.Feedback, m.Rejected, m.Parked,
		m.Transitions, m.FollowUps, m.TimeToRemoval, m.Removals, m.AttemptSeconds, m.WebhookCircuit, m.EndpointsDisabled,
		m.EventsRelayed, m.DependencyUp)
	return m
}

// BuildInfo reads the module version, VCS revision and Go version of the
// running binary.
func BuildInfo() (version, revision, goversion string) {
	version, revision, goversion = "unknown", "unknown", runtime.Version()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if bi.Main.Version != "" {
		version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			revision = s.Value
		}
	}
	return
}
