// Package deploy_test checks the deployment files with the tools that run
// them: promtool for the Prometheus configuration, alert rules and their
// unit tests, and the metrics catalogue for the Grafana dashboard.
package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/takedown-eu/takedown/metrics"
)

// promtool returns the promtool binary. Debian's prometheus package has
// it; CI installs it, so there its absence is a failure.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not on PATH (apt-get install prometheus)")
		}
		t.Skip("promtool not on PATH (apt-get install prometheus); CI runs this check")
	}
	return p
}

func TestPrometheusFiles(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "config", "prometheus/prometheus.yml"},
		{"check", "rules", "prometheus/alerts.yml"},
		{"test", "rules", "prometheus/alerts_test.yml"},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

var metricName = regexp.MustCompile(`\btakedown_[a-z_]+`)

// known reports whether name (maybe a histogram series) is exported.
func known(exported []string, name string) bool {
	for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
		if slices.Contains(exported, strings.TrimSuffix(name, suffix)) && strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	exported := metrics.Names()
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile("grafana/dashboards/takedown.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	if len(dash.Panels) < 8 {
		t.Fatalf("dashboard has %d panels", len(dash.Panels))
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names := metricName.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query names no takedown metric: %s", p.Title, tg.Expr)
			}
			for _, n := range names {
				if !known(exported, n) {
					t.Errorf("panel %q: %s is not exported by takedownd", p.Title, n)
				}
			}
		}
	}
}

func TestAlertRulesNameExportedMetrics(t *testing.T) {
	exported := metrics.Names()
	b, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range metricName.FindAllString(string(b), -1) {
		if !known(exported, n) {
			t.Errorf("alerts.yml names %s, which takedownd does not export", n)
		}
	}
}

// The check must be able to fail.
func TestUnknownMetricIsCaught(t *testing.T) {
	if known(metrics.Names(), "takedown_removals_in_time_total") {
		t.Fatal("an invented metric passed")
	}
	if !known(metrics.Names(), "takedown_time_to_removal_seconds_bucket") {
		t.Fatal("a histogram series failed")
	}
}
