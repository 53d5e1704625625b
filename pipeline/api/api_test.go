package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/metrics"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/api"
	"github.com/takedown-eu/takedown/pipeline/worker"
	"github.com/takedown-eu/takedown/tracker"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Now().UTC().Truncate(time.Second)

func setup(t testing.TB) (*httptest.Server, *tracker.Store, *metrics.Metrics) {
	t.Helper()
	dir, err := pipeline.ParseDirectory([]byte(`
issuers: [{id: de-bka, name: BKA, member_state: DE}]
providers:
  - {id: videohost, name: VideoHost, token_sha256: [`+api.TokenDigest("vh-token")+`]}
  - {id: filedrop, name: FileDrop, token_sha256: [`+api.TokenDigest("fd-token")+`]}
`), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := tracker.New(testenv.Redis(t), tracker.Config{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry())
	fw := &worker.Feedback{Store: st, Dir: dir, Clock: pipeline.SystemClock{}, Metrics: m, Logger: slog.New(slog.DiscardHandler)}
	srv := httptest.NewServer(api.New(api.Config{Dir: dir, Feedback: fw}).Handler())
	t.Cleanup(srv.Close)
	return srv, st, m
}

func delivered(t *testing.T, st *tracker.Store, ref, provider string) string {
	t.Helper()
	ctx := context.Background()
	n := testenv.Notice("de-bka", ref, provider, pipeline.KindRemovalOrder)
	if _, err := st.Create(ctx, &n, testenv.JSON(n), t0, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Delivered(ctx, n.ID(), t0, time.Hour, t0.Add(time.Minute), nil); err != nil {
		t.Fatal(err)
	}
	return n.ID()
}

type call struct {
	token, path, body string
	header            map[string]string
}

func do(t *testing.T, srv *httptest.Server, c call) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+c.path, strings.NewReader(c.body))
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: body %q is not JSON", c.path, resp.Status, b)
	}
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("%s: error with content type %q", c.path, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, out
}

func fb(id, provider, typ string) string {
	extra := ""
	if typ == "removed" {
		extra = `,"action_at":"` + t0.Add(time.Minute).Format(time.RFC3339) + `"`
	}
	return `{"schema":"takedown.feedback/v1","notice_id":"` + id + `","provider":"` + provider + `","type":"` + typ + `"` + extra + `}`
}

func TestFeedbackOverHTTP(t *testing.T) {
	srv, st, m := setup(t)
	id := delivered(t, st, "API-1", "videohost")
	other := delivered(t, st, "API-2", "filedrop")
	path := "/v1/notices/" + id + "/feedback"
	unknown := pipeline.NoticeID("de-bka", "never")

	tests := []struct {
		name       string
		call       call
		wantStatus int
		wantFields []string
	}{
		{"no token", call{path: path, body: fb(id, "videohost", "acknowledged")}, 401, nil},
		{"wrong token", call{token: "guess", path: path, body: fb(id, "videohost", "acknowledged")}, 401, nil},
		{"another provider's notice", call{token: "fd-token", path: path, body: fb(id, "filedrop", "acknowledged")}, 404, nil},
		{"claims to be another provider", call{token: "fd-token", path: path, body: fb(id, "videohost", "acknowledged")}, 403, []string{"provider"}},
		{"unknown notice", call{token: "vh-token", path: "/v1/notices/" + unknown + "/feedback", body: fb(unknown, "videohost", "acknowledged")}, 404, nil},
		{"path and body disagree", call{token: "vh-token", path: "/v1/notices/" + other + "/feedback", body: fb(id, "videohost", "acknowledged")}, 400, []string{"notice_id"}},
		{"invalid", call{token: "vh-token", path: path, body: `{"schema":"takedown.feedback/v1","notice_id":"` + id + `","provider":"videohost","type":"removed"}`}, 400, []string{"action_at"}},
		{"unknown field", call{token: "vh-token", path: path, body: `{"schema":"takedown.feedback/v1","extra":true}`}, 400, []string{"extra"}},
		{"too large", call{token: "vh-token", path: path, body: `{"x":"` + strings.Repeat("a", pipeline.MaxFeedbackBytes) + `"}`}, 413, nil},
		{"acknowledged", call{token: "vh-token", path: path, body: fb(id, "videohost", "acknowledged"), header: map[string]string{"Idempotency-Key": "k1"}}, 200, nil},
		{"same request again", call{token: "vh-token", path: path, body: fb(id, "videohost", "acknowledged"), header: map[string]string{"Idempotency-Key": "k1"}}, 200, nil},
		{"removed", call{token: "vh-token", path: path, body: fb(id, "videohost", "removed")}, 200, nil},
		{"illegal after removal", call{token: "vh-token", path: path, body: fb(id, "videohost", "resumed")}, 409, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := do(t, srv, tt.call)
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %v", status, tt.wantStatus, body)
			}
			var fields []string
			if errs, ok := body["errors"].([]any); ok {
				for _, e := range errs {
					fields = append(fields, e.(map[string]any)["field"].(string))
				}
			}
			if diff := cmp.Diff(tt.wantFields, fields); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
		})
	}
	rec, _ := st.Get(context.Background(), id)
	if rec.State != pipeline.StateRemoved {
		t.Fatalf("state %s, want removed", rec.State)
	}
	if rec, _ := st.Get(context.Background(), other); rec.State != pipeline.StateDelivered {
		t.Fatalf("other provider's notice changed to %s", rec.State)
	}
	if got := testutil.ToFloat64(m.Removals.WithLabelValues("removal_order", "videohost", "in_time")); got != 1 {
		t.Errorf("removals counted %v", got)
	}
	if got := testutil.ToFloat64(m.Rejected.WithLabelValues("http", "forbidden")); got != 1 {
		t.Errorf("forbidden rejections counted %v", got)
	}
}

func TestUnknownRouteIsProblem(t *testing.T) {
	srv, _, _ := setup(t)
	status, body := do(t, srv, call{path: "/v1/nothing"})
	if status != 404 || body["type"] != "urn:takedown:problem:not-found" {
		t.Fatalf("%d %v", status, body)
	}
}

func FuzzFeedbackBody(f *testing.F) {
	f.Add(fb(pipeline.NoticeID("de-bka", "x"), "videohost", "acknowledged"))
	f.Add(`{"schema":"takedown.feedback/v1"}`)
	srv, _, _ := setup(f)
	f.Fuzz(func(t *testing.T, body string) {
		id := pipeline.NoticeID("de-bka", "fuzz")
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/notices/"+id+"/feedback", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer vh-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 && resp.StatusCode != 503 {
			t.Fatalf("status %d for %q", resp.StatusCode, body)
		}
	})
}
