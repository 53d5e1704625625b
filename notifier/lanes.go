package notifier

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/takedown-eu/takedown/pipeline"
)

// LaneConfig bounds the traffic to one provider.
type LaneConfig struct {
	Concurrency     int
	Rate            float64 // requests per second
	BreakerFailures int
	BreakerCooldown time.Duration
	// Queue is how many deliveries may wait for a free slot. Default 1024.
	Queue int
}

// LaneHooks report what happens in the lanes (metrics). All optional.
type LaneHooks struct {
	// Breaker is told of every circuit state change.
	Breaker func(provider string, s BreakerState)
}

// Done receives the outcome of a dispatched delivery.
type Done func(Receipt, error)

type job struct {
	d    Delivery
	done Done
}

// Lanes deliver to each provider through its own bounded queue and workers,
// rate limiter and circuit breaker, so one slow or failing provider never
// delays another. Safe for concurrent use.
type Lanes struct {
	ch    Channel
	clock pipeline.Clock
	hooks LaneHooks
	cfg   func(provider string) LaneConfig

	mu     sync.Mutex
	lanes  map[string]*lane
	closed bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

type lane struct {
	queue   chan job
	limiter *rate.Limiter
	breaker *breaker
}

// NewLanes delivers over ch with per-provider limits from cfg.
func NewLanes(ch Channel, clock pipeline.Clock, cfg func(provider string) LaneConfig, hooks LaneHooks) *Lanes {
	return &Lanes{ch: ch, clock: clock, cfg: cfg, hooks: hooks, lanes: map[string]*lane{}, stop: make(chan struct{})}
}

// Submit queues a delivery; done runs when the attempt finishes. It
// returns false when the provider's queue is full or the lanes are closed:
// the caller leaves the notice to the scheduler.
func (l *Lanes) Submit(d Delivery, done Done) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	ln, ok := l.lanes[d.Provider]
	if !ok {
		ln = l.start(d.Provider)
		l.lanes[d.Provider] = ln
	}
	select {
	case ln.queue <- job{d, done}:
		return true
	default:
		return false
	}
}

func (l *Lanes) start(provider string) *lane {
	c := l.cfg(provider)
	if c.Concurrency < 1 {
		c.Concurrency = 1
	}
	if c.Queue < 1 {
		c.Queue = 1024
	}
	if c.Rate <= 0 {
		c.Rate = 20
	}
	if c.BreakerFailures < 1 {
		c.BreakerFailures = 5
	}
	ln := &lane{
		queue:   make(chan job, c.Queue),
		limiter: rate.NewLimiter(rate.Limit(c.Rate), max(1, c.Concurrency)),
		breaker: &breaker{threshold: c.BreakerFailures, cooldown: c.BreakerCooldown, now: l.clock.Now},
	}
	if l.hooks.Breaker != nil {
		ln.breaker.onChange = func(s BreakerState) { l.hooks.Breaker(provider, s) }
		l.hooks.Breaker(provider, BreakerClosed)
	}
	for range c.Concurrency {
		l.wg.Add(1)
		go l.work(ln)
	}
	return ln
}

func (l *Lanes) work(ln *lane) {
	defer l.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-l.stop:
			cancel() // only the rate limiter's wait; a request in flight finishes
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-l.stop:
			return // queued deliveries are left to the scheduler
		case j := <-ln.queue:
			l.attempt(ctx, ln, j)
		}
	}
}

func (l *Lanes) attempt(ctx context.Context, ln *lane, j job) {
	if !ln.breaker.allow() {
		j.done(Receipt{}, &AttemptError{Err: ErrCircuitOpen})
		return
	}
	if err := ln.limiter.Wait(ctx); err != nil {
		ln.breaker.record(true) // not the endpoint's fault; release the probe
		j.done(Receipt{}, &AttemptError{Err: err})
		return
	}
	r, err := l.ch.Deliver(context.WithoutCancel(ctx), j.d)
	// A permanent failure (a 4xx) is an answer: the endpoint is up.
	ln.breaker.record(err == nil || Permanent(err))
	j.done(r, err)
}

// Close stops taking deliveries, waits for the attempts in flight (until
// ctx ends) and drops the queued ones, which the scheduler retries.
func (l *Lanes) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.stop)
	l.mu.Unlock()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
