// Command takedown-bench measures the pipeline on the machine at hand, in
// one run against one NATS server (file store; embedded, or with
// -nats-apart a process of its own) and one redis-server child (AOF
// everysec, the production setting; -redis-appendfsync always to price
// an fsync before every reply), and prints the figures:
//
//   - how steady the idle machine's CPUs are: a fixed unit of work timed
//     every 5 ms on each CPU, so that latencies can be read against the
//     machine's own slow spells;
//
//   - the raw ceiling: JetStream asynchronous publish of 512-byte messages,
//     durable consume with acks, and Redis Lua script calls per second;
//
//   - the pipeline end to end (closed loop): N notices submitted at once
//     to simulated providers that confirm removal at once — notices per
//     second, submit→delivered and submit→removed percentiles, CPU seconds
//     per 1,000 notices, and its ratio to the raw publish rate;
//
//   - open loop at a fixed rate, latency counted from each notice's
//     scheduled send time (no coordinated omission);
//
//   - the scheduler with many open notices: how late escalations fire and
//     what one pass costs;
//
//   - Redis memory per open notice, and nats-server's memory per message
//     id for the duplicate window.
//
//     make bench      # or: go build -o bin/ ./cmd/... && bin/takedown-bench
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/takedown-eu/takedown/pipeline/bus"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == natsServerArg {
		os.Exit(runNATSServer(os.Args[2:], os.Stdout, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "takedown-bench:", err)
		os.Exit(1)
	}
}

type options struct {
	rawMessages int
	notices     int
	workers     int
	openRate    int
	openFor     time.Duration
	openNotices int
	probes      int
	// schedLead is the time from loading the scheduler run's probes to
	// the first of them falling due; schedSpread, the time over which
	// they fall due.
	schedLead, schedSpread time.Duration
	memoryNotices          int
	dedupeIDs              int
	natsApart              bool
	// duplicateWindow is the streams' duplicate window.
	duplicateWindow time.Duration
	skipScheduler   bool
	only            map[string]bool
	cpuProfile      string
	memProfile      string
	traceFile       string
	// openCPUProfile is where a CPU profile of the open loop goes.
	openCPUProfile string
	relayLinger    time.Duration
	autoRewrite    bool
	appendFsync    string
	steadyFor      time.Duration
}

// parts of a run, in order; -only selects some.
var parts = []string{"steady", "raw", "e2e", "open", "memory", "scheduler"}

func (o options) runs(part string) bool {
	if part == "scheduler" && o.skipScheduler {
		return false
	}
	return len(o.only) == 0 || o.only[part]
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("takedown-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.steadyFor, "steady-for", 10*time.Second, "how long to time the idle machine's CPU steadiness before the other parts (0: skip)")
	fs.IntVar(&o.rawMessages, "raw-messages", 200000, "messages for the raw JetStream measurements")
	fs.IntVar(&o.notices, "notices", 50000, "notices for the closed-loop end-to-end run")
	fs.IntVar(&o.workers, "workers", 128, "intake and feedback workers")
	fs.IntVar(&o.openRate, "rate", 1000, "notices per second in the open-loop run")
	fs.DurationVar(&o.openFor, "open-for", 20*time.Second, "duration of the open-loop run")
	fs.IntVar(&o.openNotices, "open-notices", 1000000, "open notices tracked during the scheduler run")
	fs.IntVar(&o.probes, "probes", 20000, "notices whose follow-ups (escalations and reminders, half each) are timed in the scheduler run")
	fs.IntVar(&o.memoryNotices, "memory-notices", 100000, "open notices used to measure Redis memory per notice")
	fs.IntVar(&o.dedupeIDs, "dedupe-ids", 1000000, "message ids published to measure nats-server's memory for duplicate detection (part of the memory part)")
	fs.DurationVar(&o.duplicateWindow, "duplicate-window", bus.DefaultDuplicateWindow, "the streams' duplicate window (takedownd -duplicate-window)")
	fs.BoolVar(&o.natsApart, "nats-apart", false, "run the NATS server as a process of its own (as a separate nats-server runs beside takedownd -nats-url) instead of inside this process (as takedownd runs it without -nats-url)")
	fs.StringVar(&o.appendFsync, "redis-appendfsync", "everysec", "redis-server's AOF fsync policy: everysec (the production setting), always (every write on disk before its reply) or no")
	fs.BoolVar(&o.skipScheduler, "skip-scheduler", false, "skip the scheduler-at-scale run")
	only := fs.String("only", "", "comma-separated parts to run ("+strings.Join(parts, ",")+"); default all")
	fs.BoolVar(&o.autoRewrite, "auto-aof-rewrite", false, "let redis-server rewrite its AOF by itself during the measured parts (by default it is rewritten between them)")
	fs.StringVar(&o.memProfile, "memprofile", "", "write an allocation profile of the end-to-end run to this file")
	fs.DurationVar(&o.relayLinger, "relay-linger", 0, "the relay's pause after a round without a full batch (0: the relay's default)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the end-to-end run to this file")
	fs.StringVar(&o.openCPUProfile, "open-cpuprofile", "", "write a CPU profile of the open-loop run to this file (without the execution trace's overhead; with -trace the profile goes beside the trace instead)")
	fs.StringVar(&o.traceFile, "trace", "", "write an execution trace of the open-loop run to this file (go tool trace), and a CPU profile of it to the file plus .cpu")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.duplicateWindow < bus.MinDuplicateWindow || o.duplicateWindow > bus.MaxDuplicateWindow {
		// As takedownd: other windows are not a configuration the
		// pipeline runs with (and a short one would let ids expire while
		// the memory part counts them).
		return fmt.Errorf("-duplicate-window: %s (want %s to %s, as takedownd)", o.duplicateWindow, bus.MinDuplicateWindow, bus.MaxDuplicateWindow)
	}
	if !slices.Contains([]string{"everysec", "always", "no"}, o.appendFsync) {
		return fmt.Errorf("-redis-appendfsync: %q (want everysec, always or no)", o.appendFsync)
	}
	if *only != "" {
		o.only = map[string]bool{}
		for _, p := range strings.Split(*only, ",") {
			if !slices.Contains(parts, p) {
				return fmt.Errorf("-only: unknown part %q (parts: %s)", p, strings.Join(parts, ","))
			}
			o.only[p] = true
		}
	}
	o.schedLead, o.schedSpread = 30*time.Second, 25*time.Second
	env, err := startEnv(ctx, stderr, envConfig{natsApart: o.natsApart, duplicateWindow: o.duplicateWindow, appendFsync: o.appendFsync})
	if err != nil {
		return err
	}
	defer env.close()
	if !o.autoRewrite {
		// With the few hundred MB a run leaves, redis-server would fork an
		// AOF rewrite every half minute or so, on the same two cores, in
		// the middle of a measurement; with a production-sized dataset
		// rewrites are rare. Each part starts from a rewritten AOF instead
		// (compactAOF), and the parts report any rewrite that still fell
		// into them.
		if err := env.rdb.ConfigSet(ctx, "auto-aof-rewrite-percentage", "0").Err(); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "takedown-bench: %s; redis-server AOF appendfsync %s\n\n", machine(), o.appendFsync)

	var steady steadyResult
	if o.runs("steady") && o.steadyFor > 0 {
		steady = measureSteadiness(ctx, o.steadyFor)
		steady.print(stdout)
	}
	var raw rawResult
	if o.runs("raw") {
		if raw, err = measureRaw(ctx, env, o); err != nil {
			return fmt.Errorf("raw: %w", err)
		}
		raw.print(stdout)
	}
	var e2e e2eResult
	if o.runs("e2e") {
		if e2e, err = measureClosedLoop(ctx, env, o); err != nil {
			return fmt.Errorf("end to end: %w", err)
		}
		e2e.print(stdout, raw)
	}
	if o.runs("open") {
		open, err := measureOpenLoop(ctx, env, o)
		if err != nil {
			return fmt.Errorf("open loop: %w", err)
		}
		open.print(stdout, steady)
	}
	if o.runs("memory") {
		mem, err := measureMemory(ctx, env, o)
		if err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		mem.print(stdout)
		dd, err := measureDedupe(ctx, o.dedupeIDs, o.duplicateWindow)
		if err != nil {
			return fmt.Errorf("duplicate detection: %w", err)
		}
		var idsPerNotice float64
		if e2e.notices > 0 {
			idsPerNotice = float64(e2e.nats.stored) / float64(e2e.notices)
		}
		dd.print(stdout, idsPerNotice)
	}
	if o.runs("scheduler") {
		sch, err := measureScheduler(ctx, env, o)
		if err != nil {
			return fmt.Errorf("scheduler: %w", err)
		}
		sch.print(stdout)
	}
	return nil
}
