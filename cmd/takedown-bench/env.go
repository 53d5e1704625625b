package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/metrics"
	"github.com/takedown-eu/takedown/notifier"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/pipeline/worker"
	"github.com/takedown-eu/takedown/tracker"
	"github.com/takedown-eu/takedown/tracker/redisserver"
)

// benchProviders answer at once; four spread the deliver subjects.
var benchProviders = []string{"bench-a", "bench-b", "bench-c", "bench-d"}

const benchDirectory = `
policies:
  removal_order:
    window: 1h
    reminders: [0.5]
    redeliver_every: 10h
    follow_up_every: 10h
issuers:
  - {id: bench, name: Bench, member_state: DE}
providers:
  - {id: bench-a, name: A}
  - {id: bench-b, name: B}
  - {id: bench-c, name: C}
  - {id: bench-d, name: D}
`

type env struct {
	dir string
	// The NATS server: embedded in this process (ns), as takedownd runs
	// it without -nats-url, or a process of its own (natsProc), as a
	// separate nats-server.
	ns       *server.Server
	natsProc *natsChild
	natsURL  string
	nc       *nats.Conn
	js       jetstream.JetStream // the pipeline's
	// The other parties' connections.
	issuer, providers, watcher jetstream.JetStream
	conns                      []*nats.Conn
	bus                        *bus.Bus
	redis                      *redisserver.Server
	rdb                        *redis.Client
	store                      *tracker.Store
	d                          *pipeline.Directory
	m                          *metrics.Metrics
	log                        *slog.Logger
	deliv                      *worker.Deliveries
	stderr                     io.Writer
}

// envConfig is how the engines run.
type envConfig struct {
	// natsApart runs the NATS server as a process of its own.
	natsApart bool
	// duplicateWindow is the streams' duplicate window.
	duplicateWindow time.Duration
	// appendFsync is redis-server's AOF fsync policy (default everysec).
	appendFsync string
}

func startEnv(ctx context.Context, stderr io.Writer, cfg envConfig) (*env, error) {
	e := &env{stderr: stderr, log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	var err error
	if e.dir, err = os.MkdirTemp("", "takedown-bench-"); err != nil {
		return nil, err
	}
	storeDir := filepath.Join(e.dir, "nats")
	if cfg.natsApart {
		if e.natsProc, err = startNATSChild(storeDir, stderr); err != nil {
			return nil, err
		}
		e.natsURL = e.natsProc.url
	} else {
		if e.ns, err = startNATS(storeDir); err != nil {
			return nil, err
		}
		e.natsURL = e.ns.ClientURL()
	}
	// The pipeline, the submitting issuer, the simulated providers and
	// the measuring watcher each have their own connection, as they would
	// in production: one shared connection would serialise all their
	// traffic through one socket and one read loop on each side.
	if e.nc, e.js, err = e.connect("takedownd"); err != nil {
		return nil, err
	}
	if _, e.issuer, err = e.connect("issuer"); err != nil {
		return nil, err
	}
	if _, e.providers, err = e.connect("providers"); err != nil {
		return nil, err
	}
	if _, e.watcher, err = e.connect("watcher"); err != nil {
		return nil, err
	}
	if e.bus, err = bus.New(ctx, e.js, bus.Config{DuplicateWindow: cfg.duplicateWindow}); err != nil {
		return nil, err
	}
	if e.redis, err = redisserver.Start(ctx, redisserver.Options{Dir: filepath.Join(e.dir, "redis"), AppendFsync: cfg.appendFsync}); err != nil {
		return nil, err
	}
	e.rdb = redis.NewClient(&redis.Options{Addr: e.redis.Addr(), PoolSize: 64})
	if e.store, err = tracker.New(e.rdb, tracker.Config{}); err != nil {
		return nil, err
	}
	if e.d, err = pipeline.ParseDirectory([]byte(benchDirectory), "yaml"); err != nil {
		return nil, err
	}
	e.m = metrics.New(prometheus.NewRegistry())
	clock := pipeline.SystemClock{}
	notif := notifier.New(e.d, map[pipeline.Channel]notifier.Channel{pipeline.ChannelNATS: notifier.NewNATS(e.bus, clock)})
	e.deliv = &worker.Deliveries{Dispatch: notif, Store: e.store, Dir: e.d, Clock: clock, Metrics: e.m, Logger: e.log}
	return e, nil
}

// connect opens one more client connection to the embedded server.
func (e *env) connect(name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(e.natsURL, nats.Name(name))
	if err != nil {
		return nil, nil, err
	}
	e.conns = append(e.conns, nc)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	return nc, js, err
}

func (e *env) close() {
	if e.rdb != nil {
		_ = e.rdb.Close()
	}
	if e.redis != nil {
		e.redis.Stop()
	}
	for _, nc := range e.conns {
		nc.Close()
	}
	if e.ns != nil {
		e.ns.Shutdown()
		e.ns.WaitForShutdown()
	}
	if e.natsProc != nil {
		e.natsProc.stop()
	}
	_ = os.RemoveAll(e.dir)
}

// cpu is this process's CPU time plus the redis-server child's and, when
// it runs apart, the NATS server's.
func (e *env) cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	self := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return self + procCPU(e.redis.PID()) + e.natsCPU()
}

// natsCPU is the NATS server process's CPU time (0 when it is embedded:
// this process's time includes it).
func (e *env) natsCPU() time.Duration {
	if e.natsProc == nil {
		return 0
	}
	return procCPU(e.natsProc.pid)
}

// procCPU reads utime+stime of a process from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // clock ticks (USER_HZ = 100)
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s, %s", runtime.NumCPU(), model, runtime.Version(), time.Now().UTC().Format(time.RFC3339))
}

// commandStat is redis-server's own account of one command: calls and
// microseconds spent executing them (scripts include their inner calls).
type commandStat struct {
	name  string
	calls int64
	usec  int64
}

// commandStats reads INFO commandstats, busiest command first.
func commandStats(ctx context.Context, e *env) ([]commandStat, error) {
	info, err := e.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	var out []commandStat
	for _, l := range strings.Split(info, "\r\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(l, "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(l, "cmdstat_") {
			continue
		}
		st := commandStat{name: name}
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				st.calls = n
			case "usec":
				st.usec = n
			}
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].usec > out[j].usec })
	return out, nil
}

// info reads the named fields of one INFO section of redis-server.
func info(ctx context.Context, e *env, section string, fields ...string) (map[string]string, error) {
	text, err := e.rdb.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(fields))
	for _, l := range strings.Split(text, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && slices.Contains(fields, k) {
			out[k] = v
		}
	}
	for _, f := range fields {
		if _, ok := out[f]; !ok {
			return nil, fmt.Errorf("no %s in INFO %s", f, section)
		}
	}
	return out, nil
}

// compactAOF rewrites redis-server's AOF now and waits for the rewrite to
// finish, so that the writes of one part of the run do not bring a
// rewrite into the next part's measurement.
func compactAOF(ctx context.Context, e *env) error {
	if err := e.rdb.BgRewriteAOF(ctx).Err(); err != nil && !strings.Contains(err.Error(), "already in progress") {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		st, err := info(ctx, e, "persistence", "aof_rewrite_in_progress", "aof_rewrite_scheduled")
		if err != nil {
			return err
		}
		if st["aof_rewrite_in_progress"] == "0" && st["aof_rewrite_scheduled"] == "0" {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("AOF rewrite still running after 2 minutes")
}

// aofRewrites is how many AOF rewrites redis-server has started: a rewrite
// forks a child that competes for the same two cores, so the runs report
// the rewrites that fell into them.
func aofRewrites(ctx context.Context, e *env) int {
	st, err := info(ctx, e, "persistence", "aof_rewrites")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(st["aof_rewrites"])
	return n
}

// printAOFRewrites notes the AOF rewrites that fell into a measured part.
func printAOFRewrites(w io.Writer, n int) {
	if n > 0 {
		fmt.Fprintf(w, "    redis-server rewrote its AOF %d time(s) during the run (a forked child on the same cores)\n", n)
	}
}

// natsOps counts what the project's streams have done so far: messages
// stored (the streams' last sequence numbers, which work-queue streams
// keep counting after they delete) and messages handed to consumers
// (each consumer's delivery count, redeliveries included).
type natsOps struct{ stored, delivered uint64 }

func countNATSOps(ctx context.Context, e *env) (natsOps, error) {
	var ops natsOps
	for _, s := range []bus.Stream{bus.Intake, bus.Deliver, bus.Feedback, bus.Events, bus.Parked} {
		st, err := e.js.Stream(ctx, e.bus.StreamName(s))
		if err != nil {
			return ops, err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return ops, err
		}
		ops.stored += info.State.LastSeq
		cl := st.ListConsumers(ctx)
		for ci := range cl.Info() {
			ops.delivered += ci.Delivered.Consumer
		}
		if err := cl.Err(); err != nil {
			return ops, err
		}
	}
	return ops, nil
}

func (a natsOps) sub(b natsOps) natsOps {
	return natsOps{stored: a.stored - b.stored, delivered: a.delivered - b.delivered}
}
