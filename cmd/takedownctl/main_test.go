package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/takedown-eu/takedown/internal/apitest"
	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type result struct {
	code           int
	stdout, stderr string
}

func ctl(t *testing.T, p *apitest.Pipeline, principal string, stdin string, args ...string) result {
	t.Helper()
	env := map[string]string{"TAKEDOWN_TOKEN": apitest.Tokens[principal]}
	if p != nil {
		env["TAKEDOWN_URL"] = p.URL
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func TestHelpAndUsage(t *testing.T) {
	if r := ctl(t, nil, "", "", "-help"); r.code != exitOK || !strings.Contains(r.stderr, "Exit codes") {
		t.Errorf("-help: %d %s", r.code, r.stderr)
	}
	for name := range commands {
		r := ctl(t, nil, "", "", name, "-help")
		if r.code != exitOK || !strings.Contains(r.stderr, "Usage: takedownctl "+name) {
			t.Errorf("%s -help: %d %q", name, r.code, r.stderr)
		}
	}
	for _, args := range [][]string{{}, {"frobnicate"}, {"get"}, {"clarify", "x"}, {"submit"}, {"list", "-bogus"}, {"replay"}} {
		if r := ctl(t, nil, "", "", args...); r.code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, r.code, exitUsage, r.stderr)
		}
	}
}

func TestTransportFailure(t *testing.T) {
	r := ctl(t, nil, "", "", "-server", "http://127.0.0.1:1", "get", "x")
	if r.code != exitTransport || !strings.Contains(r.stderr, "cannot reach") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
}

func TestIssuerProviderOperatorFlow(t *testing.T) {
	p := apitest.Start(t, apitest.Options{})
	r := ctl(t, p, "issuer:de-bka", "", "submit", "-issuer", "de-bka", "-reference", "CTL-1", "-provider", "videohost",
		"-member-state", "DE", "-url", "https://videohost.example/v/1", "-reason", "incitement", "-explanation", "glorifies an attack", "-contact-email", "tco@bka.example")
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "accepted ") {
		t.Fatalf("submit: %d %s %s", r.code, r.stdout, r.stderr)
	}
	id := pipeline.NoticeID("de-bka", "CTL-1")
	p.WaitState(t, id, pipeline.StateDelivered)

	if r = ctl(t, p, "issuer:de-bka", "", "get", id); r.code != exitOK || !strings.Contains(r.stdout, "state      delivered") || !strings.Contains(r.stdout, "delivered    -> delivered") {
		t.Errorf("get: %d\n%s", r.code, r.stdout)
	}
	if r = ctl(t, p, "issuer:fr-pharos", "", "get", id); r.code != exitRejected || !strings.Contains(r.stderr, "404") {
		t.Errorf("another issuer's get: %d %s", r.code, r.stderr)
	}
	if r = ctl(t, p, "provider:videohost", "", "list", "-state", "delivered"); r.code != exitOK || !strings.Contains(r.stdout, id) {
		t.Errorf("provider list: %d\n%s", r.code, r.stdout)
	}
	if r = ctl(t, p, "issuer:de-bka", "", "list", "-o", "json"); r.code != exitOK || !json.Valid([]byte(r.stdout)) {
		t.Errorf("list -o json: %d %s", r.code, r.stdout)
	}

	// watch follows the notice until the provider's removal ends it.
	done := make(chan result, 1)
	go func() { done <- ctl(t, p, "issuer:de-bka", "", "watch", id) }()
	if r = ctl(t, p, "provider:videohost", "", "feedback", id, "-provider", "videohost", "-type", "removed", "-provider-reference", "VH-1"); r.code != exitOK || !strings.Contains(r.stdout, "applied") {
		t.Fatalf("feedback: %d %s %s", r.code, r.stdout, r.stderr)
	}
	select {
	case w := <-done:
		if w.code != exitOK || !strings.Contains(w.stdout, "removed      -> removed") {
			t.Errorf("watch: %d\n%s%s", w.code, w.stdout, w.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("watch did not end at the terminal event")
	}
	if r = ctl(t, p, "provider:videohost", "", "feedback", id, "-provider", "videohost", "-type", "resumed"); r.code != exitRejected || !strings.Contains(r.stderr, "409") {
		t.Errorf("illegal feedback: %d %s", r.code, r.stderr)
	}
	if r = ctl(t, p, "issuer:de-bka", "", "withdraw", id); r.code != exitRejected {
		t.Errorf("withdraw after removal: %d", r.code)
	}
	if r = ctl(t, p, "operator:ops", "", "summary"); r.code != exitOK || !strings.Contains(r.stdout, "removed") {
		t.Errorf("summary: %d %s", r.code, r.stdout)
	}
	if r = ctl(t, p, "operator:ops", "", "replay", id); r.code != exitRejected || !strings.Contains(r.stderr, "409") {
		t.Errorf("replay of a removed notice: %d %s", r.code, r.stderr)
	}
	if r = ctl(t, p, "operator:ops", "", "parked"); r.code != exitOK || !strings.HasPrefix(r.stdout, "SEQ") {
		t.Errorf("parked: %d %s", r.code, r.stdout)
	}
	period := []string{"-from", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), "-to", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}
	testenv.WaitFor(t, 10*time.Second, "report", func() bool {
		r = ctl(t, p, "operator:ops", "", append([]string{"report"}, period...)...)
		return r.code == exitOK && strings.Contains(r.stdout, "| total | 1 | 1 | 1 | 0 |")
	})
	if r = ctl(t, p, "issuer:de-bka", "", append([]string{"report", "-format", "csv"}, period...)...); r.code != exitOK || !strings.Contains(r.stdout, "issuer,de-bka,1,1,1,0") {
		t.Errorf("csv report: %d\n%s", r.code, r.stdout)
	}
	if r = ctl(t, p, "operator:ops", "", "report", "-from", "soon"); r.code != exitUsage {
		t.Errorf("report with a bad time: %d", r.code)
	}
}

func TestSubmitFileAndBatch(t *testing.T) {
	p := apitest.Start(t, apitest.Options{})
	dir := t.TempDir()
	one := testenv.Notice("de-bka", "FILE-1", "videohost", pipeline.KindRemovalOrder)
	file := filepath.Join(dir, "order.json")
	os.WriteFile(file, testenv.JSON(one), 0o600)
	if r := ctl(t, p, "issuer:de-bka", "", "submit", "-f", file); r.code != exitOK {
		t.Fatalf("submit -f: %d %s", r.code, r.stderr)
	}
	p.WaitState(t, one.ID(), pipeline.StateDelivered)
	changed := one
	changed.Explanation = "different"
	os.WriteFile(file, testenv.JSON(changed), 0o600)
	if r := ctl(t, p, "issuer:de-bka", "", "submit", "-f", file); r.code != exitRejected || !strings.Contains(r.stderr, "409") {
		t.Fatalf("conflicting submit: %d %s", r.code, r.stderr)
	}

	var batch strings.Builder
	for _, ref := range []string{"B-1", "B-2", "B-3"} {
		batch.Write(testenv.JSON(testenv.Notice("de-bka", ref, "videohost", pipeline.KindRemovalOrder)))
		batch.WriteString("\n")
	}
	batch.Write(testenv.JSON(one)) // a duplicate
	batch.WriteString("\n{\"schema\":\"takedown.notice/v1\",\"kind\":\"removal_order\"}\n")
	r := ctl(t, p, "issuer:de-bka", batch.String(), "submit", "-ndjson", "-f", "-")
	if r.code != exitRejected {
		t.Fatalf("batch with a bad line: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "5 lines: 3 accepted, 1 duplicate, 1 rejected") || !strings.Contains(r.stdout, "line 5:") {
		t.Errorf("batch summary:\n%s", r.stdout)
	}
}

// A batch faster than the issuer's rate limit is slowed down by the
// server's 429 answers, not refused: takedownctl waits as long as
// Retry-After asks and sends the line again.
func TestSubmitBatchHonoursRateLimits(t *testing.T) {
	p := apitest.Start(t, apitest.Options{Rate: 4, Burst: 2})
	var batch strings.Builder
	for i := range 8 {
		batch.Write(testenv.JSON(testenv.Notice("de-bka", fmt.Sprintf("RL-%d", i), "videohost", pipeline.KindRemovalOrder)))
		batch.WriteString("\n")
	}
	r := ctl(t, p, "issuer:de-bka", batch.String(), "submit", "-ndjson", "-f", "-")
	if r.code != exitOK || !strings.Contains(r.stdout, "8 lines: 8 accepted, 0 duplicate, 0 rejected") {
		t.Fatalf("rate-limited batch: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
