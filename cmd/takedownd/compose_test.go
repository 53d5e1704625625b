package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"go.yaml.in/yaml/v3"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/tracker/redisserver"
)

// repoRoot is where docker-compose.yml and its bind mounts are, seen from
// this package.
const repoRoot = "../.."

// compose is the part of docker-compose.yml the checks read.
type compose struct {
	Services map[string]struct {
		Image string
		Build *struct {
			Context    string
			Dockerfile string
		}
		Command []string
		Volumes []string
		Secrets []string
	}
	Secrets map[string]struct{ File string }
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, name := range []string{"nats", "redis", "takedownd", "prometheus", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("docker-compose.yml has no service %q", name)
		}
	}
	return c
}

// hostPath maps a path inside service's container to the repository file
// or directory mounted there (a bind mount or a secret), or "".
func (c compose) hostPath(service, inContainer string) string {
	s := c.Services[service]
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || !strings.HasPrefix(parts[0], "./") {
			continue // a named volume
		}
		src, dst := filepath.Join(repoRoot, parts[0]), parts[1]
		if inContainer == dst {
			return src
		}
		if rest, ok := strings.CutPrefix(inContainer, dst+"/"); ok {
			return filepath.Join(src, rest)
		}
	}
	for _, name := range s.Secrets {
		if inContainer == "/run/secrets/"+name {
			return filepath.Join(repoRoot, c.Secrets[name].File)
		}
	}
	return ""
}

// docker-compose.yml is a valid Compose file as Docker Compose itself reads
// it: compose-go (the library docker compose is built on) loads it with the
// Compose Specification's schema and its consistency checks (services,
// volumes and secrets that are referred to exist, healthcheck and
// dependency conditions are well formed).
func TestComposeFileLoads(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{filepath.Join(repoRoot, "docker-compose.yml")},
		cli.WithWorkingDirectory(repoRoot), cli.WithConsistency(true), cli.WithNormalization(true))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	if project.Name != "takedown" || len(project.Services) != 5 {
		t.Errorf("project %q with %d services", project.Name, len(project.Services))
	}
	td, err := project.GetService("takedownd")
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range []string{"nats", "redis"} {
		if td.DependsOn[dep].Condition != "service_healthy" {
			t.Errorf("takedownd starts without waiting for %s to be healthy", dep)
		}
		if s, _ := project.GetService(dep); s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
			t.Errorf("%s has no healthcheck for takedownd to wait on", dep)
		}
	}
	cfg, err := parseConfig(td.Command, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if td.StopGracePeriod == nil || time.Duration(*td.StopGracePeriod) <= cfg.ShutdownTimeout {
		t.Errorf("takedownd's stop grace period %v does not exceed its shutdown timeout %v: in-flight work would be killed", td.StopGracePeriod, cfg.ShutdownTimeout)
	}
}

// Everything docker-compose.yml points at exists and agrees: mounts and
// secrets, takedownd's flags (parsed by takedownd itself), its seed against
// the NATS users, the host names and ports between the services, the Redis
// settings the design asks for, Prometheus's target and Grafana's
// provisioning.
func TestComposeFileIsConsistent(t *testing.T) {
	c := loadCompose(t)
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			if src := strings.Split(v, ":")[0]; strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			}
		}
		for _, sec := range s.Secrets {
			if _, ok := c.Secrets[sec]; !ok {
				t.Errorf("service %s uses undeclared secret %s", name, sec)
			}
		}
		if s.Image == "" && s.Build == nil {
			t.Errorf("service %s has neither image nor build", name)
		}
	}
	for name, sec := range c.Secrets {
		if _, err := os.Stat(filepath.Join(repoRoot, sec.File)); err != nil {
			t.Errorf("secret %s: %v", name, err)
		}
	}

	td := c.Services["takedownd"]
	if td.Build == nil {
		t.Fatal("takedownd is not built from the repository")
	}
	dockerfile, err := os.ReadFile(filepath.Join(repoRoot, td.Build.Context, td.Build.Dockerfile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dockerfile), "./cmd/takedownd") || !strings.Contains(string(dockerfile), `ENTRYPOINT ["/usr/local/bin/takedownd"]`) {
		t.Errorf("%s does not build and run takedownd", td.Build.Dockerfile)
	}
	cfg, err := parseConfig(td.Command, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("takedownd's command in docker-compose.yml: %v", err)
	}
	if _, err := pipeline.LoadDirectory(c.hostPath("takedownd", cfg.Directory)); err != nil {
		t.Errorf("-directory %s: %v", cfg.Directory, err)
	}

	// NATS: takedownd reaches the nats service on the port its configuration
	// listens on, with a seed whose public key is a user there.
	natsConf := c.hostPath("nats", c.Services["nats"].Command[slices.Index(c.Services["nats"].Command, "-c")+1])
	opts, err := server.ProcessConfigFile(natsConf)
	if err != nil {
		t.Fatalf("NATS configuration %s: %v", natsConf, err)
	}
	if u, err := url.Parse(cfg.NATSURL); err != nil || u.Hostname() != "nats" || u.Port() != fmt.Sprint(opts.Port) {
		t.Errorf("-nats-url %s does not reach the nats service on port %d", cfg.NATSURL, opts.Port)
	}
	seed, err := os.ReadFile(c.hostPath("takedownd", cfg.NATSNKeySeed))
	if err != nil {
		t.Fatalf("-nats-nkey-seed-file %s: %v", cfg.NATSNKeySeed, err)
	}
	kp, err := nkeys.ParseDecoratedNKey(seed)
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	pub, _ := kp.PublicKey()
	if !slices.ContainsFunc(opts.Nkeys, func(u *server.NkeyUser) bool { return u.Nkey == pub }) {
		t.Errorf("takedownd's seed (public key %s) is no user of %s", pub, natsConf)
	}

	// Redis: the service and the settings the design asks for.
	if u, err := url.Parse(cfg.RedisURL); err != nil || u.Hostname() != "redis" || u.Port() != "6379" {
		t.Errorf("-redis-url %s does not reach the redis service", cfg.RedisURL)
	}
	redisArgs := strings.Join(c.Services["redis"].Command, " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"} {
		if !strings.Contains(redisArgs, want) {
			t.Errorf("redis runs without %s", want)
		}
	}

	// Prometheus scrapes takedownd where it serves /metrics.
	_, httpPort, _ := net.SplitHostPort(cfg.HTTPAddr)
	prom, err := os.ReadFile(c.hostPath("prometheus", "/etc/prometheus/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(prom), `"takedownd:`+httpPort+`"`) {
		t.Errorf("prometheus.yml does not scrape takedownd:%s", httpPort)
	}
	if !slices.Contains(c.Services["prometheus"].Command, "--config.file=/etc/prometheus/prometheus.yml") {
		t.Error("prometheus does not load /etc/prometheus/prometheus.yml")
	}

	// Grafana: its data source is the prometheus service, and the
	// dashboards directory it is told to load holds the dashboard.
	var ds struct {
		Datasources []struct{ URL string } `yaml:"datasources"`
	}
	readYAML(t, c.hostPath("grafana", "/etc/grafana/provisioning/datasources/prometheus.yml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("grafana data sources %+v, want http://prometheus:9090", ds.Datasources)
	}
	var dash struct {
		Providers []struct {
			Options struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, c.hostPath("grafana", "/etc/grafana/provisioning/dashboards/takedown.yml"), &dash)
	if len(dash.Providers) != 1 {
		t.Fatalf("grafana dashboard providers %+v", dash.Providers)
	}
	if _, err := os.Stat(c.hostPath("grafana", path.Join(dash.Providers[0].Options.Path, "takedown.json"))); err != nil {
		t.Errorf("grafana loads dashboards from %s, which does not hold takedown.json: %v", dash.Providers[0].Options.Path, err)
	}
}

// composeNATS runs a NATS server with the nats service's configuration,
// on a free port and a temporary store.
func composeNATS(t *testing.T, c compose) *testenv.NATSServer {
	t.Helper()
	natsCmd := c.Services["nats"].Command
	return testenv.StartNATSFromConfig(t, c.hostPath("nats", natsCmd[slices.Index(natsCmd, "-c")+1]))
}

// A NATS server that refuses takedownd's credentials is not an outage to
// wait out: takedownd stops at once and says what to check.
func TestDaemonRefusedByNATSSaysWhy(t *testing.T) {
	ns := composeNATS(t, loadCompose(t))
	rdb := testenv.Redis(t)
	dir := t.TempDir()
	dirFile := filepath.Join(dir, "directory.yaml")
	if err := os.WriteFile(dirFile, []byte(testDirectory), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := run(ctx, []string{"-directory", dirFile, "-nats-url", ns.URL(), "-redis-url", "redis://" + rdb.Options().Addr + "/0",
		"-http", "127.0.0.1:0"}, func(string) string { return "" }, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "Authorization Violation") || !strings.Contains(err.Error(), "-nats-nkey-seed-file") {
		t.Fatalf("run without credentials: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("takedownd waited for the refusing server instead of stopping")
	}
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// The services of docker-compose.yml as they would run, without Docker:
// NATS from the nats service's configuration (NKey users, JetStream),
// redis-server with the redis service's arguments, and takedownd with the
// takedownd service's command — host names and ports swapped for the test's
// own, container paths for the files mounted there. A notice submitted with
// the example issuer's token is delivered, which takes takedownd
// authenticating to NATS with its seed, creating the streams and publishing
// to the provider.
func TestComposeStack(t *testing.T) {
	c := loadCompose(t)
	ns := composeNATS(t, c)

	redisCmd := c.Services["redis"].Command
	if redisCmd[0] != "redis-server" {
		t.Fatalf("redis service runs %q", redisCmd[0])
	}
	ctx := context.Background()
	rs, err := redisserver.Start(ctx, redisserver.Options{Dir: t.TempDir(), Args: redisCmd[1:]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Stop)

	var args []string
	for _, a := range c.Services["takedownd"].Command {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "-"), "=")
		switch name {
		case "nats-url":
			value = ns.URL()
		case "redis-url":
			value = "redis://" + rs.Addr() + "/0"
		case "http":
			value = "127.0.0.1:0"
		case "directory", "nats-nkey-seed-file":
			if value = c.hostPath("takedownd", value); value == "" {
				t.Fatalf("%s: nothing is mounted at %s", name, a)
			}
		}
		args = append(args, "-"+name+"="+value)
	}
	rctx, cancel := context.WithCancel(ctx)
	stderr := &syncBuffer{}
	done := make(chan error, 1)
	started := make(chan string, 1)
	go func() {
		done <- run(rctx, args, func(string) string { return "" }, stderr, func(h, _ string) { started <- h })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("takedownd returned %v", err)
			}
		case <-time.After(40 * time.Second):
			t.Error("takedownd did not stop")
		}
	})
	var base string
	select {
	case h := <-started:
		base = "http://" + h
	case err := <-done:
		done <- nil // for the cleanup
		t.Fatalf("takedownd exited at start: %v\n%s", err, stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("takedownd did not start\n%s", stderr)
	}
	testenv.WaitFor(t, 20*time.Second, "takedownd ready", func() bool {
		code, body := get(t, base+"/readyz")
		return code == 200 && strings.Contains(body, `"ready":true`)
	})

	order, err := os.Open(filepath.Join(repoRoot, "deploy/example-order.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer order.Close()
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/notices", order)
	req.Header.Set("Authorization", "Bearer example-bka-token")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var accepted struct{ ID string }
	err = json.NewDecoder(resp.Body).Decode(&accepted)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || err != nil || accepted.ID == "" {
		t.Fatalf("submit: %d %+v %v\n%s", resp.StatusCode, accepted, err, stderr)
	}
	testenv.WaitFor(t, 20*time.Second, "the example order delivered", func() bool {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/notices/"+accepted.ID, nil)
		req.Header.Set("Authorization", "Bearer example-bka-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct{ State pipeline.State }
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return st.State == pipeline.StateDelivered
	})

	// takedownd verify with the service's NATS credentials and Redis, as
	// the README runs it with `docker compose run`.
	var verifyArgs []string
	for _, a := range args {
		if name, _, _ := strings.Cut(strings.TrimPrefix(a, "-"), "="); slices.Contains([]string{"nats-url", "nats-nkey-seed-file", "redis-url"}, name) {
			verifyArgs = append(verifyArgs, a)
		}
	}
	var out bytes.Buffer
	if err := verify(ctx, verifyArgs, func(string) string { return "" }, &out, io.Discard); err != nil || !strings.Contains(out.String(), "of 1 notices") {
		t.Errorf("verify %v: %v\n%s", verifyArgs, err, out.String())
	}
}
