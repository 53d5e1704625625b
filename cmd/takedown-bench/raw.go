package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

type rawResult struct {
	publishPerSec, consumePerSec, luaPerSec float64
	messages, luaCalls                      int
	// CPU time (this process: client and embedded server) per stored
	// message while publishing, and per delivered and acknowledged
	// message while consuming: the engine's cost of one operation at its
	// best, batched and asynchronous.
	cpuPerPublish, cpuPerConsume time.Duration
}

func measureRaw(ctx context.Context, e *env, o options) (rawResult, error) {
	r := rawResult{messages: o.rawMessages}
	s, err := e.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BENCH_RAW", Subjects: []string{"bench.raw"}, Storage: jetstream.FileStorage})
	if err != nil {
		return r, err
	}
	defer func() { _ = e.js.DeleteStream(context.Background(), "BENCH_RAW") }()
	payload := make([]byte, 512)
	cpu0 := e.cpu()
	start := time.Now()
	for i := 0; i < o.rawMessages; i++ {
		if _, err := e.js.PublishAsync("bench.raw", payload); err != nil {
			return r, err
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-ctx.Done():
		return r, ctx.Err()
	}
	r.publishPerSec = float64(o.rawMessages) / time.Since(start).Seconds()
	r.cpuPerPublish = (e.cpu() - cpu0) / time.Duration(o.rawMessages)

	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 20000})
	if err != nil {
		return r, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2000))
	if err != nil {
		return r, err
	}
	cpu0 = e.cpu()
	start = time.Now()
	for n := 0; n < o.rawMessages; n++ {
		m, err := it.Next()
		if err != nil {
			return r, err
		}
		if err := m.Ack(); err != nil {
			return r, err
		}
	}
	it.Stop()
	r.consumePerSec = float64(o.rawMessages) / time.Since(start).Seconds()
	r.cpuPerConsume = (e.cpu() - cpu0) / time.Duration(o.rawMessages)

	// Lua: a small script, pipelined from several connections.
	sc := redis.NewScript(`return redis.call('INCR', KEYS[1])`)
	if err := sc.Load(ctx, e.rdb).Err(); err != nil {
		return r, err
	}
	const conns, batch, rounds = 8, 100, 250
	r.luaCalls = conns * batch * rounds
	start = time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("bench:{%d}:lua", c)
			for range rounds {
				_, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
					for range batch {
						sc.EvalSha(ctx, p, []string{key})
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return r, err
	}
	r.luaPerSec = float64(r.luaCalls) / time.Since(start).Seconds()
	return r, nil
}

func (r rawResult) print(w io.Writer) {
	fmt.Fprintf(w, "raw ceiling (%d messages of 512 B, file store)\n", r.messages)
	fmt.Fprintf(w, "  JetStream async publish      %10.0f msgs/s (%s CPU each)\n", r.publishPerSec, r.cpuPerPublish.Round(100*time.Nanosecond))
	fmt.Fprintf(w, "  JetStream consume with acks  %10.0f msgs/s (%s CPU each)\n", r.consumePerSec, r.cpuPerConsume.Round(100*time.Nanosecond))
	fmt.Fprintf(w, "  Redis Lua script calls       %10.0f calls/s (%d calls, 8 connections, pipelines of 100)\n\n", r.luaPerSec, r.luaCalls)
}
