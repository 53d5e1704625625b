package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/takedown-eu/takedown/pipeline/bus"
)

// config is takedownd's configuration, from flags with environment
// fallbacks (TAKEDOWN_<FLAG>, dashes as underscores).
type config struct {
	Roles           []string
	NATSURL         string
	NATSNKeySeed    string
	NATSListen      string
	RedisURL        string
	AutoPipeline    bool
	Dev             bool
	DataDir         string
	Directory       string
	HTTPAddr        string
	Prefix          string
	Shards          int
	Replicas        int
	IntakeWorkers   int
	FeedbackWorkers int
	MaxDeliver      int
	SchedulerEvery  time.Duration
	RelayLinger     time.Duration
	DuplicateWindow time.Duration
	ShutdownTimeout time.Duration
	APIRate         float64
	APIBurst        int
	LogLevel        string
	LogFormat       string
}

var allRoles = []string{"intake", "feedback", "scheduler", "relay", "api"}

func (c *config) has(role string) bool { return slices.Contains(c.Roles, role) }

// errUsage marks configuration errors (exit code 2).
var errUsage = errors.New("usage")

// envFallback sets each of fs's flags from its environment variable
// TAKEDOWN_<FLAG> (upper case, dashes as underscores), if set; flags
// parsed afterwards win.
func envFallback(fs *flag.FlagSet, getenv func(string) string) error {
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "TAKEDOWN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%w: environment %s=%q: %v", errUsage, name, v, err)
			}
		}
	})
	return envErr
}

func parseConfig(args []string, getenv func(string) string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("takedownd", flag.ContinueOnError)
	fs.SetOutput(out)
	roles := fs.String("roles", strings.Join(allRoles, ","), "comma-separated roles to run: intake, feedback, scheduler, relay, api")
	fs.StringVar(&c.NATSURL, "nats-url", "", "NATS server URL(s), comma-separated; empty runs an embedded NATS server with JetStream")
	fs.StringVar(&c.NATSNKeySeed, "nats-nkey-seed-file", "", "`file` holding takedownd's NKey seed (SU…), for a NATS server with NKey users such as takedownd nats-config renders")
	fs.StringVar(&c.NATSListen, "nats-listen", "127.0.0.1:4222", "client address of the embedded NATS server (when -nats-url is empty)")
	fs.StringVar(&c.RedisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis URL (redis:// or rediss://)")
	fs.BoolVar(&c.AutoPipeline, "redis-autopipeline", true, "share Redis round trips among concurrent workers (go-redis autopipelining); false: one round trip per script")
	fs.BoolVar(&c.Dev, "dev", false, "development mode: start a local redis-server child when none answers at -redis-url")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "data directory (embedded NATS store, development Redis)")
	fs.StringVar(&c.Directory, "directory", "", "issuers and providers file, YAML or JSON (required)")
	fs.StringVar(&c.HTTPAddr, "http", ":8080", "address of /healthz, /readyz, /metrics and (role api) the /v1 API")
	fs.StringVar(&c.Prefix, "subject-prefix", "takedown", "NATS subject prefix")
	fs.IntVar(&c.Shards, "shards", 16, "Redis hash-tag shards (fixed for the life of the data)")
	fs.IntVar(&c.Replicas, "replicas", 1, "JetStream stream replicas (1 on one server, 3 in a cluster)")
	fs.IntVar(&c.IntakeWorkers, "intake-workers", 128, "intake messages handled concurrently")
	fs.IntVar(&c.FeedbackWorkers, "feedback-workers", 128, "feedback messages handled concurrently")
	fs.IntVar(&c.MaxDeliver, "max-deliver", 50, "deliveries of one intake or feedback message before it is parked")
	fs.DurationVar(&c.SchedulerEvery, "scheduler-interval", time.Second, "time between scheduler passes")
	fs.DurationVar(&c.RelayLinger, "relay-linger", 5*time.Millisecond, "the relay's pause after a round without a full batch: the most it delays an event, traded for fewer, larger rounds")
	fs.DurationVar(&c.DuplicateWindow, "duplicate-window", bus.DefaultDuplicateWindow, "how long the streams recognise a repeated message id (a publish retried after a lost acknowledgement or an outage); nats-server keeps every id of the window in memory, about 150 B each and 8 per notice")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long shutdown waits for in-flight work")
	fs.Float64Var(&c.APIRate, "api-rate", 20, "API requests per second allowed to each principal")
	fs.IntVar(&c.APIBurst, "api-burst", 40, "API request burst allowed to each principal")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "json or text")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: takedownd [flags]\n       takedownd nats-config -directory FILE -pipeline-nkey U...\n       takedownd verify -nats-url URL [-redis-url URL]\n\nRuns the takedown pipeline; nats-config prints the NATS authorization for\nthe directory's issuers and providers; verify compares the events stream\nwith the tracker. Every flag can also be set by an\nenvironment variable TAKEDOWN_<FLAG> (upper case, dashes as underscores);\na flag wins.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := envFallback(fs, getenv); err != nil {
		return c, err
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	for _, r := range strings.Split(*roles, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if !slices.Contains(allRoles, r) {
			return c, fmt.Errorf("%w: -roles: unknown role %q (want %s)", errUsage, r, strings.Join(allRoles, ", "))
		}
		if !slices.Contains(c.Roles, r) {
			c.Roles = append(c.Roles, r)
		}
	}
	return c, c.validate()
}

func (c *config) validate() error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if len(c.Roles) == 0 {
		bad("-roles: at least one role")
	}
	if c.Directory == "" {
		bad("-directory: required (issuers and providers file)")
	}
	if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		bad("-redis-url: %q is not a redis:// or rediss:// URL", c.RedisURL)
	}
	if c.NATSURL == "" {
		if _, _, err := net.SplitHostPort(c.NATSListen); err != nil {
			bad("-nats-listen: %q is not host:port", c.NATSListen)
		}
		if c.NATSNKeySeed != "" {
			bad("-nats-nkey-seed-file needs -nats-url (the embedded server has no users)")
		}
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("-http: %q is not host:port", c.HTTPAddr)
	}
	if c.Prefix == "" || strings.ContainsAny(c.Prefix, ".*> \t") {
		bad("-subject-prefix: %q must be one subject token", c.Prefix)
	}
	if c.Shards < 1 || c.Shards > 1024 {
		bad("-shards: %d is not between 1 and 1024", c.Shards)
	}
	if c.Replicas != 1 && c.Replicas != 3 && c.Replicas != 5 {
		bad("-replicas: %d (want 1, 3 or 5)", c.Replicas)
	}
	if c.IntakeWorkers < 1 || c.FeedbackWorkers < 1 {
		bad("-intake-workers and -feedback-workers must be at least 1")
	}
	if c.MaxDeliver < 2 {
		bad("-max-deliver: %d (want at least 2)", c.MaxDeliver)
	}
	if c.APIRate <= 0 || c.APIBurst < 1 {
		bad("-api-rate and -api-burst must be positive")
	}
	if c.SchedulerEvery <= 0 || c.ShutdownTimeout <= 0 {
		bad("-scheduler-interval and -shutdown-timeout must be positive")
	}
	if c.RelayLinger < 0 || c.RelayLinger > time.Second {
		bad("-relay-linger: %s (want 0 to 1s)", c.RelayLinger)
	}
	if c.DuplicateWindow < bus.MinDuplicateWindow || c.DuplicateWindow > bus.MaxDuplicateWindow {
		bad("-duplicate-window: %s (want %s to %s: a shorter window could store an event that a relay publishes again after a failover twice)", c.DuplicateWindow, bus.MinDuplicateWindow, bus.MaxDuplicateWindow)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		bad("-log-level: %q (want debug, info, warn or error)", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		bad("-log-format: %q (want json or text)", c.LogFormat)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", errUsage, strings.Join(problems, "; "))
	}
	return nil
}
