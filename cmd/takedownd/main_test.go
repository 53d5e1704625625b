package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/tracker/redisserver"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		main()
		os.Exit(0)
	}
	testenv.Main(m)
}

const testDirectory = `
issuers: [{id: de-bka, name: BKA, member_state: DE}]
providers: [{id: videohost, name: VideoHost, member_state: IE}]
`

type daemon struct {
	httpAddr, natsURL string
	stderr            *syncBuffer
	cancel            context.CancelFunc
	done              chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDaemon runs takedownd's run in-process as main would, with extra
// flags, and waits until it serves.
func startDaemon(t *testing.T, extra ...string) *daemon {
	t.Helper()
	dir := t.TempDir()
	dirFile := filepath.Join(dir, "directory.yaml")
	if err := os.WriteFile(dirFile, []byte(testDirectory), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-directory", dirFile, "-data-dir", filepath.Join(dir, "data"), "-http", "127.0.0.1:0",
		"-nats-listen", "127.0.0.1:0", "-scheduler-interval", "100ms", "-log-format", "text", "-log-level", "debug"}, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{stderr: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		d.done <- run(ctx, args, func(string) string { return "" }, d.stderr, func(h, n string) {
			d.httpAddr, d.natsURL = h, n
			close(ready)
		})
	}()
	select {
	case <-ready:
	case err := <-d.done:
		t.Fatalf("takedownd exited at start: %v\n%s", err, d.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("takedownd did not start\n%s", d.stderr)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			t.Error("takedownd did not stop")
		}
	})
	return d
}

func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.cancel()
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("takedownd returned %v", err)
		}
		d.done <- nil // for Cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("takedownd did not drain and stop within 30s")
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDaemonEndToEnd(t *testing.T) {
	rdb := testenv.Redis(t)
	d := startDaemon(t, "-redis-url", "redis://"+rdb.Options().Addr+"/0", "-duplicate-window", "3m")

	if code, body := get(t, "http://"+d.httpAddr+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, "http://"+d.httpAddr+"/readyz"); code != 200 || !strings.Contains(body, `"ready":true`) {
		t.Fatalf("/readyz: %d %q", code, body)
	}

	nc := testenv.Connect(t, d.natsURL)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	for _, name := range []string{"TAKEDOWN_INTAKE", "TAKEDOWN_EVENTS"} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if w := st.CachedInfo().Config.Duplicates; w != 3*time.Minute {
			t.Errorf("%s: duplicate window %s, want -duplicate-window's 3m", name, w)
		}
	}
	n := testenv.Notice("de-bka", "E2E-1", "videohost", pipeline.KindRemovalOrder)
	m := nats.NewMsg("takedown.intake.de-bka")
	m.Data = testenv.JSON(n)
	if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(n.ID())); err != nil {
		t.Fatal(err)
	}
	// The provider reads its own deliver subject with a durable consumer.
	cons, err := js.CreateOrUpdateConsumer(ctx, "TAKEDOWN_DELIVER", jetstream.ConsumerConfig{Durable: "provider-videohost", FilterSubject: "takedown.deliver.videohost", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for msg := range batch.Messages() {
		got = msg.Data()
		_ = msg.Ack()
	}
	var delivered map[string]any
	if err := json.Unmarshal(got, &delivered); err != nil || delivered["id"] != n.ID() {
		t.Fatalf("provider received %s", got)
	}
	now := time.Now().UTC()
	fm := nats.NewMsg("takedown.feedback.videohost")
	fm.Data = testenv.JSON(pipeline.Feedback{Schema: pipeline.FeedbackSchema, NoticeID: n.ID(), Provider: "videohost", Type: pipeline.FeedbackRemoved, ActionAt: &now})
	if _, err := js.PublishMsg(ctx, fm); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 15*time.Second, "removal visible in /metrics", func() bool {
		_, body := get(t, "http://"+d.httpAddr+"/metrics")
		return strings.Contains(body, `takedown_removals_total{kind="removal_order",provider="videohost",timeliness="in_time"} 1`) &&
			strings.Contains(body, `takedown_notices{state="removed"} 1`) &&
			strings.Contains(body, `takedown_events_relayed_total 3`)
	})
	// A live scrape passes promtool's metrics lint (CI installs promtool).
	if bin, err := exec.LookPath("promtool"); err == nil {
		_, body := get(t, "http://"+d.httpAddr+"/metrics")
		cmd := exec.Command(bin, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else if os.Getenv("CI") != "" {
		t.Error("promtool not on PATH (apt-get install prometheus)")
	}
	d.stop(t)
	if log := d.stderr.String(); !strings.Contains(log, "shutting down: draining in-flight work") || !strings.Contains(log, "msg=stopped") {
		t.Errorf("shutdown not logged:\n%s", log)
	}
}

func TestDaemonDevModeStartsAndStopsRedis(t *testing.T) {
	port := freePort(t)
	addr := "127.0.0.1:" + port
	d := startDaemon(t, "-dev", "-redis-url", "redis://"+addr+"/0")
	if !redisserver.Reachable(addr) {
		t.Fatal("-dev did not start redis-server")
	}
	if code, _ := get(t, "http://"+d.httpAddr+"/readyz"); code != 200 {
		t.Fatalf("/readyz = %d", code)
	}
	d.stop(t)
	if redisserver.Reachable(addr) {
		t.Fatal("redis-server child still answers after shutdown")
	}
}

func TestReadyzFalseWhileRedisDown(t *testing.T) {
	srv := testenv.OwnRedis(t)
	d := startDaemon(t, "-redis-url", srv.URL())
	srv.Kill()
	code, body := get(t, "http://"+d.httpAddr+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"redis":false`) {
		t.Fatalf("/readyz with Redis down: %d %s", code, body)
	}
	if err := srv.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "ready again", func() bool {
		code, _ := get(t, "http://"+d.httpAddr+"/readyz")
		return code == 200
	})
	log := d.stderr.String()
	if !strings.Contains(log, "redis unreachable") || strings.Count(log, "redis reachable") < 2 {
		t.Errorf("outage and recovery not logged clearly:\n%s", log)
	}
}

func TestConfig(t *testing.T) {
	env := map[string]string{"TAKEDOWN_DIRECTORY": "d.yaml", "TAKEDOWN_SHARDS": "32", "TAKEDOWN_ROLES": "relay", "TAKEDOWN_REDIS_AUTOPIPELINE": "false"}
	getenv := func(k string) string { return env[k] }
	c, err := parseConfig([]string{"-roles", "intake,scheduler"}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Directory != "d.yaml" || c.Shards != 32 || !c.has("intake") || !c.has("scheduler") || c.has("relay") || c.AutoPipeline {
		t.Errorf("env fallback or flag precedence wrong: %+v", c)
	}
	if c, err := parseConfig([]string{"-directory", "d", "-nats-url", "nats://n:4222"}, func(k string) string {
		return map[string]string{"TAKEDOWN_NATS_NKEY_SEED_FILE": "/run/secrets/k"}[k]
	}, io.Discard); err != nil || c.NATSNKeySeed != "/run/secrets/k" {
		t.Errorf("seed file from the environment: %q, %v", c.NATSNKeySeed, err)
	}
	if _, err := natsAuth(config{NATSNKeySeed: filepath.Join(t.TempDir(), "missing.nk")}); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "-nats-nkey-seed-file") {
		t.Errorf("unreadable seed file: %v", err)
	}
	if c.DuplicateWindow != bus.DefaultDuplicateWindow {
		t.Errorf("-duplicate-window default %s, want the bus's %s", c.DuplicateWindow, bus.DefaultDuplicateWindow)
	}
	if c, err := parseConfig([]string{"-directory", "d"}, func(k string) string {
		return map[string]string{"TAKEDOWN_DUPLICATE_WINDOW": "2m"}[k]
	}, io.Discard); err != nil || c.DuplicateWindow != 2*time.Minute {
		t.Errorf("duplicate window from the environment: %s, %v", c.DuplicateWindow, err)
	}
	if relayLinger(0) >= 0 || relayLinger(c.RelayLinger) != 5*time.Millisecond {
		t.Errorf("-relay-linger 0 must turn the linger off and the default must be 5ms: %v, %v", relayLinger(0), relayLinger(c.RelayLinger))
	}
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-roles", "intake,webhooks"}, nil, `unknown role "webhooks"`},
		{[]string{"-directory", "d", "-redis-url", "http://x"}, nil, "-redis-url"},
		{[]string{"-directory", "d", "-shards", "0", "-log-level", "loud"}, nil, "-shards"},
		{[]string{"-directory", "d", "-relay-linger", "-1ms"}, nil, "-relay-linger"},
		{[]string{"-directory", "d", "-duplicate-window", "10s"}, nil, "-duplicate-window: 10s"},
		{[]string{"-directory", "d", "-duplicate-window", "48h"}, nil, "-duplicate-window: 48h"},
		{[]string{"-directory", "d", "-subject-prefix", "a.b"}, nil, "-subject-prefix"},
		{nil, nil, "-directory: required"},
		{nil, map[string]string{"TAKEDOWN_SHARDS": "many"}, "TAKEDOWN_SHARDS"},
		{[]string{"-directory", "d", "extra"}, nil, "unexpected arguments"},
		{[]string{"-directory", "d", "-nats-nkey-seed-file", "s.nk"}, nil, "needs -nats-url"},
	} {
		_, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v %v: got %v, want a usage error naming %q", tt.args, tt.env, err, tt.want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add("-roles intake -shards 4", "TAKEDOWN_REPLICAS", "3")
	f.Add("-http :1 -nats-listen x", "TAKEDOWN_LOG_LEVEL", "debug")
	f.Fuzz(func(t *testing.T, args, envKey, envVal string) {
		c, err := parseConfig(strings.Fields(args), func(k string) string {
			if k == envKey {
				return envVal
			}
			return ""
		}, io.Discard)
		if err != nil {
			return
		}
		if err := c.validate(); err != nil {
			t.Fatalf("accepted config fails validation: %v", err)
		}
	})
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// The files in deploy/ are product parts: the example directory loads, and
// the NATS configuration parses and carries exactly what nats-config renders
// from that directory today.
func TestDeployFilesAreCurrent(t *testing.T) {
	dir, err := pipeline.LoadDirectory("../../deploy/directory.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(dir.Operators) == 0 {
		t.Error("example directory has no operator")
	}
	if _, err := server.ProcessConfigFile("../../deploy/nats/nats-server.conf"); err != nil {
		t.Fatalf("deploy/nats/nats-server.conf: %v", err)
	}
	committed, err := os.ReadFile("../../deploy/nats/nats-server.conf")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = natsConfig([]string{"-directory", "../../deploy/directory.example.yaml", "-pipeline-nkey", "UC6KF7627ALSQ3Q44NDWMXZZWQIHUVZHX3QFQDBO2PXUT4N7KM5YYYDO"},
		func(string) string { return "" }, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(committed, out.Bytes()) {
		t.Error("deploy/nats/nats-server.conf is out of date: regenerate it with takedownd nats-config (see its header)")
	}
	if err := natsConfig(nil, func(string) string { return "" }, &out, io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("nats-config without flags: %v", err)
	}
}

// The README's flags table documents every flag takedownd has.
func TestREADMEDocumentsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "### `takedownd` flags")
	if !ok {
		t.Fatal("README has no \"### `takedownd` flags\" section")
	}
	table, _, _ = strings.Cut(table, "\n### ")
	var usage bytes.Buffer
	if _, err := parseConfig([]string{"-h"}, func(string) string { return "" }, &usage); err == nil {
		t.Fatal("-h: want flag.ErrHelp")
	}
	n := 0
	for _, line := range strings.Split(usage.String(), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(line, "  -") {
			continue
		}
		n++
		if !strings.Contains(table, "`"+f[0]+"`") {
			t.Errorf("flag %s is not in the README's flags table", f[0])
		}
	}
	if n < 20 {
		t.Fatalf("found %d flags in the usage text, want all of them:\n%s", n, usage.String())
	}
}
