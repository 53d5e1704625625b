package worker

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/takedown-eu/takedown/metrics"
)

// Health watches Redis and NATS, logs when either becomes unreachable and
// when it comes back, exports takedown_dependency_up, and answers Ready for
// the workers' gate and /readyz.
type Health struct {
	RedisPing func(ctx context.Context) error
	NATS      *nats.Conn
	Metrics   *metrics.Metrics
	Logger    *slog.Logger
	// Interval between checks. Default 1s.
	Interval time.Duration

	redisUp atomic.Bool
	natsUp  atomic.Bool
}

// Check probes both dependencies once and records the result.
func (h *Health) Check(ctx context.Context) {
	log := h.Logger.With("component", "health")
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := h.RedisPing(cctx)
	cancel()
	h.record(log, "redis", &h.redisUp, err)
	var nerr error
	if s := h.NATS.Status(); s != nats.CONNECTED {
		nerr = &statusErr{s}
	}
	h.record(log, "nats", &h.natsUp, nerr)
}

type statusErr struct{ s nats.Status }

func (e *statusErr) Error() string { return "connection " + e.s.String() }

func (h *Health) record(log *slog.Logger, dep string, up *atomic.Bool, err error) {
	was := up.Swap(err == nil)
	v := 0.0
	if err == nil {
		v = 1
	}
	h.Metrics.DependencyUp.WithLabelValues(dep).Set(v)
	switch {
	case err != nil && was:
		log.Error(dep+" unreachable; work waits until it returns", "dependency", dep, "err", err)
	case err == nil && !was:
		log.Info(dep+" reachable", "dependency", dep)
	}
}

// Run checks every Interval until ctx ends.
func (h *Health) Run(ctx context.Context) error {
	if h.Interval == 0 {
		h.Interval = time.Second
	}
	t := time.NewTicker(h.Interval)
	defer t.Stop()
	for {
		h.Check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RedisUp reports the last Redis check.
func (h *Health) RedisUp() bool { return h.redisUp.Load() }

// Ready reports whether both dependencies answered at the last check.
func (h *Health) Ready() bool { return h.redisUp.Load() && h.natsUp.Load() }

// NATSUp reports the last NATS check.
func (h *Health) NATSUp() bool { return h.natsUp.Load() }
