package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/takedown-eu/takedown/pipeline"
)

// dedupeResult is what nats-server's duplicate detection keeps in memory:
// every message id published within a stream's duplicate window.
type dedupeResult struct {
	ids    int
	window time.Duration
	perID  float64 // bytes of heap per id
}

// measureDedupe publishes n small messages with ids shaped like the
// pipeline's (a notice id and a version) to a scratch stream with the
// given duplicate window, and n without ids to another, and divides
// the difference in the heap they leave by n: what each id costs the
// server for as long as the window remembers it. The server for this is
// one of its own, embedded in this process so that its heap can be read.
func measureDedupe(ctx context.Context, n int, window time.Duration) (_ dedupeResult, err error) {
	r := dedupeResult{ids: n, window: window}
	dir, err := os.MkdirTemp("", "takedown-bench-dedupe-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	ns, err := startNATS(dir)
	if err != nil {
		return r, err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	srvLog := &serverLog{}
	ns.SetLogger(srvLog, false, false)
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (nats-server: %s)", err, srvLog)
		}
	}()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return r, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		return r, err
	}
	grow := func(name string, withIDs bool) (int64, error) {
		cfg := jetstream.StreamConfig{Name: name, Subjects: []string{"bench." + name}, Storage: jetstream.FileStorage, Duplicates: r.window}
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			return 0, err
		}
		defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), name) }()
		before := heapAfterGC()
		for i := range n {
			m := nats.NewMsg("bench." + name)
			m.Data = []byte("x")
			var opts []jetstream.PublishOpt
			if withIDs {
				opts = append(opts, jetstream.WithMsgID(pipeline.EventID(pipeline.NoticeID("bench", fmt.Sprintf("DEDUPE-%08d", i)), 3)))
			}
			if _, err := js.PublishMsgAsync(m, opts...); err != nil {
				return 0, err
			}
			if i%4096 == 4095 {
				<-js.PublishAsyncComplete()
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			return 0, fmt.Errorf("stream %s: PubAcks missing after a minute", name)
		}
		return heapAfterGC() - before, nil
	}
	// A first, unmeasured round takes the one-time costs (the client's
	// and the server's structures for asynchronous publishing) out of
	// the comparison.
	if _, err := grow("BENCH_DEDUPE_WARMUP", false); err != nil {
		return r, err
	}
	without, err := grow("BENCH_DEDUPE_NOIDS", false)
	if err != nil {
		return r, err
	}
	with, err := grow("BENCH_DEDUPE_IDS", true)
	if err != nil {
		return r, err
	}
	r.perID = float64(with-without) / float64(n)
	return r, nil
}

func heapAfterGC() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// print writes the figure and, given the closed loop's stream writes per
// notice (each carries an id), what it comes to per notice and at a few
// sustained rates.
func (r dedupeResult) print(w io.Writer, idsPerNotice float64) {
	fmt.Fprintf(w, "NATS duplicate detection (%d message ids, %s window, file store; nats-server keeps each id in memory for the window)\n", r.ids, r.window)
	fmt.Fprintf(w, "  per message id               %10.0f B\n", r.perID)
	if idsPerNotice > 0 {
		perNotice := r.perID * idsPerNotice
		fmt.Fprintf(w, "  per notice                   %10.0f B  (%.1f ids: the closed loop's stream writes per notice)\n", perNotice, idsPerNotice)
		for _, rate := range []float64{10, 100, 1000} {
			fmt.Fprintf(w, "    at %4.0f notices/s sustained %8.0f MB of nats-server memory\n", rate, perNotice*rate*r.window.Seconds()/1e6)
		}
	}
	fmt.Fprintln(w)
}
