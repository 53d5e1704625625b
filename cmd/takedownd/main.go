// Command takedownd runs the takedown pipeline: intake, feedback,
// scheduler and relay roles (all by default), with /healthz, /readyz and
// /metrics on -http. With no -nats-url it embeds a NATS server with
// JetStream; with -dev it starts a local redis-server when none answers.
//
//	takedownd -directory directory.yaml -dev
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/metrics"
	"github.com/takedown-eu/takedown/notifier"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/api"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/pipeline/worker"
	"github.com/takedown-eu/takedown/tracker"
	"github.com/takedown-eu/takedown/tracker/redisserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "takedownd:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "takedownd:", err)
		os.Exit(1)
	}
}

// started, if not nil, receives the HTTP and NATS client addresses once
// the process serves; end-to-end tests use it.
type started func(httpAddr, natsURL string)

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, onStart started) error {
	if len(args) > 0 && args[0] == "nats-config" {
		return natsConfig(args[1:], getenv, os.Stdout, stderr)
	}
	if len(args) > 0 && args[0] == "verify" {
		return verify(ctx, args[1:], getenv, os.Stdout, stderr)
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	redis.SetLogger(redisLogger{log.With("component", "redis-client")})
	dir, err := pipeline.LoadDirectory(cfg.Directory)
	if err != nil {
		return err
	}
	log.Info("directory loaded", "issuers", len(dir.Issuers), "providers", len(dir.Providers))

	// Redis, started as a child in development mode when none answers.
	ropts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("%w: -redis-url: %v", errUsage, err)
	}
	if cfg.Dev && !redisserver.Reachable(ropts.Addr) {
		child, err := startDevRedis(ctx, cfg, ropts.Addr)
		if err != nil {
			return err
		}
		defer child.Stop()
		log.Info("development redis-server started", "addr", child.Addr(), "dir", child.Dir())
	}
	ropts.MaxRetries = 2
	rdb := redis.NewClient(ropts)
	defer rdb.Close()

	// NATS, embedded when no URL is given.
	natsURL := cfg.NATSURL
	if natsURL == "" {
		ns, err := startEmbeddedNATS(cfg)
		if err != nil {
			return err
		}
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
		natsURL = ns.ClientURL()
		log.Info("embedded NATS server started", "url", natsURL, "store", filepath.Join(cfg.DataDir, "nats"))
	}
	auth, err := natsAuth(cfg)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(natsURL, nats.Name("takedownd"), auth, nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed it ourselves
				log.Error("NATS connection lost; reconnecting", "component", "nats", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "component", "nats", "url", c.ConnectedUrlRedacted()) }),
		// Errors the server reports without closing (a permissions
		// violation), and the end of a connection NATS gave up on (an
		// authorization refused twice: wrong seed or credentials).
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Error("NATS reported an error", "component", "nats", "err", err)
		}),
		nats.ClosedHandler(func(c *nats.Conn) {
			if err := c.LastError(); err != nil {
				log.Error("NATS connection closed", "component", "nats", "err", err)
			}
		}))
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	b, err := ensureStreams(ctx, js, cfg, log)
	if err != nil {
		return err
	}

	store, err := tracker.New(rdb, tracker.Config{Shards: cfg.Shards, NoAutoPipeline: !cfg.AutoPipeline})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(metrics.NewClusterCollector(store, 2*time.Second).WithParked(b))
	m := metrics.New(reg)
	clock := pipeline.SystemClock{}
	health := &worker.Health{RedisPing: store.Ping, NATS: nc, Metrics: m, Logger: log}
	health.Check(ctx)
	webhook, err := notifier.NewWebhook(dir, clock, func(ctx context.Context, provider string) (bool, error) {
		d, err := store.EndpointDisabled(ctx, provider)
		return d != nil, err
	})
	if err != nil {
		return err
	}
	lanes := notifier.NewLanes(webhook, clock, func(provider string) notifier.LaneConfig {
		p, _ := dir.Provider(provider)
		if p == nil || p.Webhook == nil {
			return notifier.LaneConfig{}
		}
		return notifier.LaneConfig{Concurrency: p.Webhook.Concurrency, Rate: p.Webhook.Rate,
			BreakerFailures: p.Webhook.BreakerFailures, BreakerCooldown: p.Webhook.BreakerCooldown.D()}
	}, notifier.LaneHooks{Breaker: func(provider string, st notifier.BreakerState) {
		m.WebhookCircuit.WithLabelValues(provider).Set(float64(st))
		if st != notifier.BreakerClosed {
			log.Warn("webhook circuit "+st.String(), "component", "delivery", "provider", provider)
		}
	}})
	notif := notifier.New(dir, map[pipeline.Channel]notifier.Channel{
		pipeline.ChannelNATS: notifier.NewNATS(b, clock), pipeline.ChannelWebhook: webhook,
	}).WithLanes(pipeline.ChannelWebhook, lanes)
	deliveries := &worker.Deliveries{Dispatch: notif, Store: store, Dir: dir, Clock: clock, Metrics: m, Logger: log, System: b}

	// HTTP: health, readiness, metrics.
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	feedback := &worker.Feedback{Bus: b, Store: store, Dir: dir, Clock: clock, Metrics: m, Logger: log,
		Workers: cfg.FeedbackWorkers, Ready: health.Ready, Consumer: bus.ConsumerConfig{MaxDeliver: cfg.MaxDeliver}}
	intake := &worker.Intake{Bus: b, Store: store, Deliveries: deliveries, Dir: dir, Clock: clock, Metrics: m, Logger: log,
		Workers: cfg.IntakeWorkers, Ready: health.Ready, Consumer: bus.ConsumerConfig{MaxDeliver: cfg.MaxDeliver}}
	var apiHandler http.Handler
	if cfg.has("api") {
		apiHandler = api.New(api.Config{Dir: dir, Store: store, Intake: b, Actions: intake, Feedback: feedback, Parked: b, Events: b,
			Clock: clock, Logger: log, Prefix: cfg.Prefix, Rate: cfg.APIRate, Burst: cfg.APIBurst}).Handler()
	}
	srv := &http.Server{Handler: httpHandler(reg, health, apiHandler), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute}
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Serve(httpLn) }()
	log.Info("serving", "http", httpLn.Addr().String(), "roles", cfg.Roles, "nats", nc.ConnectedUrlRedacted())
	if onStart != nil {
		onStart(httpLn.Addr().String(), natsURL)
	}

	// Workers stop first and drain; the relay stops after them so the
	// events of their last transitions leave too.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	defer stopRelay()
	failed := make(chan error, 8)
	var workers, relays sync.WaitGroup
	start := func(wg *sync.WaitGroup, c context.Context, name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(c); err != nil {
				failed <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	start(&workers, workCtx, "health", health.Run)
	if cfg.has("intake") {
		start(&workers, workCtx, "intake", intake.Run)
	}
	if cfg.has("feedback") {
		start(&workers, workCtx, "feedback", feedback.Run)
	}
	if cfg.has("scheduler") {
		start(&workers, workCtx, "scheduler", (&worker.Scheduler{Store: store, Deliveries: deliveries, Dir: dir, Clock: clock, Metrics: m, Logger: log,
			Interval: cfg.SchedulerEvery}).Run)
	}
	if cfg.has("relay") {
		start(&relays, relayCtx, "relay", (&worker.Relay{Store: store, Bus: b, Metrics: m, Logger: log, Linger: relayLinger(cfg.RelayLinger)}).Run)
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining in-flight work", "timeout", cfg.ShutdownTimeout)
	case runErr = <-failed:
		log.Error("a role failed; shutting down", "err", runErr)
	case err := <-httpDone:
		runErr = fmt.Errorf("http: %w", err)
	}
	deadline := time.Now().Add(cfg.ShutdownTimeout)
	stopWork()
	if !waitUntil(&workers, deadline) {
		log.Warn("workers did not drain in time; unacknowledged messages will be redelivered")
	}
	lctx, lcancel := context.WithDeadline(context.Background(), deadline)
	if err := notif.Close(lctx); err != nil {
		log.Warn("webhook attempts still in flight at the deadline; the scheduler retries them", "err", err)
	}
	lcancel()
	stopRelay()
	if !waitUntil(&relays, deadline) {
		log.Warn("relay did not finish in time; its outbox entries stay for the next relay")
	}
	sctx, cancel := context.WithDeadline(context.Background(), deadline.Add(time.Second))
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := nc.Drain(); err != nil {
		log.Warn("NATS drain", "err", err)
	}
	log.Info("stopped")
	return runErr
}

func waitUntil(wg *sync.WaitGroup, deadline time.Time) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(time.Until(deadline)):
		return false
	}
}

// ensureStreams creates or updates the streams, waiting for NATS while it
// is not there yet.
func ensureStreams(ctx context.Context, js jetstream.JetStream, cfg config, log *slog.Logger) (*bus.Bus, error) {
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		b, err := bus.New(cctx, js, bus.Config{Prefix: cfg.Prefix, Replicas: cfg.Replicas, DuplicateWindow: cfg.DuplicateWindow})
		cancel()
		if err == nil {
			return b, nil
		}
		if nc := js.Conn(); nc.IsClosed() {
			// Not an outage to wait out: the client gave up, most often
			// because the server refused takedownd's credentials.
			return nil, fmt.Errorf("NATS closed the connection (%v): check -nats-url and -nats-nkey-seed-file against the server's users", nc.LastError())
		}
		if attempt == 1 || attempt%10 == 0 {
			log.Error("cannot set up JetStream streams; retrying", "component", "nats", "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("set up streams: %w", err)
		case <-time.After(time.Second):
		}
	}
}

// natsAuth is how takedownd proves who it is to NATS: the NKey of
// -nats-nkey-seed-file, or nothing. A seed that cannot be read is a
// configuration error, reported before connecting.
func natsAuth(cfg config) (nats.Option, error) {
	if cfg.NATSNKeySeed == "" {
		return func(*nats.Options) error { return nil }, nil
	}
	opt, err := nats.NkeyOptionFromSeed(cfg.NATSNKeySeed)
	if err != nil {
		return nil, fmt.Errorf("%w: -nats-nkey-seed-file %s: %v", errUsage, cfg.NATSNKeySeed, err)
	}
	return opt, nil
}

func startEmbeddedNATS(cfg config) (*server.Server, error) {
	host, portStr, _ := net.SplitHostPort(cfg.NATSListen)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("%w: -nats-listen: bad port %q", errUsage, portStr)
	}
	if port == 0 {
		port = server.RANDOM_PORT // the server reads 0 as its default, 4222
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "takedownd", Host: host, Port: port, JetStream: true,
		StoreDir: filepath.Join(cfg.DataDir, "nats"), NoSigs: true, NoLog: true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready on %s within 10s (is the port in use?)", cfg.NATSListen)
	}
	return ns, nil
}

func startDevRedis(ctx context.Context, cfg config, addr string) (*redisserver.Server, error) {
	host, portStr, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("-dev starts redis-server only on a loopback address, not %s; start Redis yourself", addr)
	}
	port, _ := strconv.Atoi(portStr)
	child, err := redisserver.Start(ctx, redisserver.Options{Dir: filepath.Join(cfg.DataDir, "redis"), Port: port})
	if err != nil {
		return nil, fmt.Errorf("-dev: %w", err)
	}
	return child, nil
}

func httpHandler(reg *prometheus.Registry, health *worker.Health, apiHandler http.Handler) http.Handler {
	mux := http.NewServeMux()
	if apiHandler != nil {
		mux.Handle("/v1/", apiHandler)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		health.Check(r.Context())
		w.Header().Set("Content-Type", "application/json")
		redisUp, natsUp := health.RedisUp(), health.NATSUp()
		if !redisUp || !natsUp {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintf(w, "{\"ready\":%t,\"redis\":%t,\"nats\":%t}\n", redisUp && natsUp, redisUp, natsUp)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// redisLogger routes go-redis's own messages (dial failures while Redis is
// away) to debug level: the health monitor reports outages once, clearly.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}

// natsConfig prints the NATS authorization block for the directory.
func natsConfig(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("takedownd nats-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	directory := fs.String("directory", getenv("TAKEDOWN_DIRECTORY"), "issuers and providers file")
	prefix := fs.String("subject-prefix", "takedown", "NATS subject prefix")
	pipelineKey := fs.String("pipeline-nkey", getenv("TAKEDOWN_PIPELINE_NKEY"), "public NKey takedownd itself connects with")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: takedownd nats-config -directory FILE -pipeline-nkey U...\n\nPrints a NATS server authorization block: one NKey user per issuer and\nprovider with a nats_nkey, allowed only its own subjects.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *directory == "" || *pipelineKey == "" {
		fs.Usage()
		return fmt.Errorf("%w: -directory and -pipeline-nkey are required", errUsage)
	}
	dir, err := pipeline.LoadDirectory(*directory)
	if err != nil {
		return err
	}
	out, err := bus.RenderAuthorization(dir, bus.AuthConfig{Prefix: *prefix, PipelineNKey: *pipelineKey})
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, out)
	return err
}

// relayLinger maps the flag (0: none) to worker.Relay.Linger (0: the
// default, negative: none).
func relayLinger(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
