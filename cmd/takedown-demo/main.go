// Command takedown-demo runs the whole pipeline on one machine for a minute
// and prints what happened: it starts takedownd (embedded NATS, a
// development redis-server) and providersim as child processes, submits a
// few hundred removal orders and referrals with windows of seconds, follows
// the events stream live, and ends with a per-provider table.
//
//	make demo    # or: go build -o bin/ ./cmd/... && bin/takedown-demo
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/takedown-eu/takedown/internal/childproc"
	"github.com/takedown-eu/takedown/pipeline/api"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "takedown-demo:", err)
		os.Exit(1)
	}
}

type options struct {
	takedownd, providersim string
	notices                int
	rate                   float64
	timeout                time.Duration
	keep                   bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("takedown-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.takedownd, "takedownd", "bin/takedownd", "takedownd binary")
	fs.StringVar(&o.providersim, "providersim", "bin/providersim", "providersim binary")
	fs.IntVar(&o.notices, "notices", 300, "notices to submit")
	fs.Float64Var(&o.rate, "rate", 40, "notices submitted per second")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up after this long")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, data) afterwards")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.notices < len(demoProviders) {
		return fmt.Errorf("-notices must be at least %d", len(demoProviders))
	}
	for _, bin := range []*string{&o.takedownd, &o.providersim} {
		if _, err := os.Stat(*bin); err != nil {
			return fmt.Errorf("%s not found: build first (make build)", *bin)
		}
		abs, err := filepath.Abs(*bin)
		if err != nil {
			return err
		}
		*bin = abs
	}
	work, err := os.MkdirTemp("", "takedown-demo-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(stdout, "work directory (logs, data): %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	hookAddr := "127.0.0.1:" + strconv.Itoa(ports[3])
	secret, token := "whsec_"+randomBase64(24), randomBase64(24)
	dirFile := filepath.Join(work, "directory.yaml")
	dirText := demoDirectory("http://"+hookAddr+"/hooks/webcast", secret, api.TokenDigest(token))
	if err := os.WriteFile(dirFile, []byte(dirText), 0o600); err != nil {
		return err
	}
	httpAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	natsURL := "nats://127.0.0.1:" + strconv.Itoa(ports[1])
	redisURL := "redis://127.0.0.1:" + strconv.Itoa(ports[2]) + "/0"

	fmt.Fprintf(stdout, "takedown demo: %d notices to %d simulated providers, removal-order window %s (1h in production)\n",
		o.notices, len(demoProviders), demoWindow)
	daemon, err := startChild(work, "takedownd", o.takedownd,
		"-dev", "-data-dir", filepath.Join(work, "data"), "-directory", dirFile,
		"-redis-url", redisURL,
		"-nats-listen", "127.0.0.1:"+strconv.Itoa(ports[1]), "-http", httpAddr,
		"-scheduler-interval", "200ms", "-log-format", "text", "-shutdown-timeout", "10s")
	if err != nil {
		return err
	}
	defer daemon.stop()
	if err := waitReady(ctx, "http://"+httpAddr+"/readyz", daemon); err != nil {
		return fmt.Errorf("%w\n%s", err, daemon.tail())
	}
	fmt.Fprintf(stdout, "takedownd ready: NATS %s, metrics http://%s/metrics, redis-server started by -dev\n", natsURL, httpAddr)
	simArgs := []string{"-nats-url", natsURL, "-webhook-listen", hookAddr, "-webhook-secret", secret,
		"-api-url", "http://" + httpAddr, "-api-token", "webcast=" + token}
	for _, p := range demoProviders {
		if p.webhook {
			simArgs = append(simArgs, "-webhook-provider", p.flag)
		} else {
			simArgs = append(simArgs, "-provider", p.flag)
		}
	}
	sim, err := startChild(work, "providersim", o.providersim, simArgs...)
	if err != nil {
		return err
	}
	defer sim.stop()

	res, err := drive(ctx, natsURL, o, stdout)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, daemon.tail())
	}
	// The tracker against the audit log, as an operator would check it.
	verified, err := exec.CommandContext(ctx, o.takedownd, "verify", "-nats-url", natsURL, "-redis-url", redisURL).CombinedOutput()
	if err != nil {
		return fmt.Errorf("takedownd verify: %w\n%s", err, verified)
	}
	sim.stop()
	if err := daemon.stop(); err != nil {
		return fmt.Errorf("takedownd did not shut down cleanly: %w\n%s", err, daemon.tail())
	}
	summarize(stdout, res)
	fmt.Fprintf(stdout, "\ntakedownd verify (the tracker in Redis against the events stream):\n%s\n", indent(string(verified)))
	if missing := res.missing(); len(missing) > 0 {
		return fmt.Errorf("the demo did not show: %v", missing)
	}
	fmt.Fprintln(stdout, "takedownd and providersim stopped; nothing left running.")
	return nil
}

// child is a process started by the demo, logging to a file.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan error
	err     error
}

func startChild(work, name, bin string, args ...string) (*child, error) {
	logPath := filepath.Join(work, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = work
	waited, err := childproc.Start(cmd, syscall.SIGTERM)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, logPath: logPath, done: make(chan error, 1)}
	go func() { c.done <- <-waited; f.Close() }()
	return c, nil
}

// stop sends SIGTERM and waits; safe to call twice.
func (c *child) stop() error {
	if c.done == nil {
		return c.err
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case c.err = <-c.done:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		c.err = errors.Join(<-c.done, errors.New("killed after 20s"))
	}
	c.done = nil
	return c.err
}

func (c *child) exited() bool {
	select {
	case err := <-c.done:
		c.err, c.done = err, nil
		return true
	default:
		return c.done == nil
	}
}

func (c *child) tail() string {
	b, _ := os.ReadFile(c.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return "--- " + c.name + " log (last lines) ---\n" + string(b)
}

func waitReady(ctx context.Context, url string, c *child) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c.exited() {
			return fmt.Errorf("takedownd exited at start")
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("takedownd not ready within 30s")
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomBase64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand never fails on Linux
	return base64.StdEncoding.EncodeToString(b)
}

// indent puts two spaces before each line of s.
func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}
