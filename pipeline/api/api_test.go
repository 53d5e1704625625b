package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/takedown-eu/takedown/internal/apitest"
	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/metrics"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/api"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/pipeline/worker"
	"github.com/takedown-eu/takedown/tracker"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var tokens = apitest.Tokens

func directoryYAML() string { return apitest.DirectoryYAML() }

// env is the API over a real pipeline (see apitest), with the OpenAPI
// document compiled to validate every response.
type env struct {
	t     *testing.T
	srv   struct{ URL string }
	api   *api.Server
	store *tracker.Store
	bus   *bus.Bus
	doc   map[string]any
	comp  *jsonschema.Compiler
	mu    sync.Mutex
	cache map[string]*jsonschema.Schema
}

func newEnv(t *testing.T, rateLimit float64, burst int) *env {
	t.Helper()
	p := apitest.Start(t, apitest.Options{Rate: rateLimit, Burst: burst})
	e := &env{t: t, api: p.API, store: p.Store, bus: p.Bus, cache: map[string]*jsonschema.Schema{}}
	e.srv.URL = p.URL
	if err := json.Unmarshal(api.OpenAPI, &e.doc); err != nil {
		t.Fatal(err)
	}
	docAny, err := jsonschema.UnmarshalJSON(bytes.NewReader(api.OpenAPI))
	if err != nil {
		t.Fatal(err)
	}
	e.comp = jsonschema.NewCompiler()
	if err := e.comp.AddResource("openapi.json", docAny); err != nil {
		t.Fatal(err)
	}
	return e
}

// response is an answer, already checked against the OpenAPI document.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

// do sends a request for the route pattern as principal ("" for nobody)
// and validates the answer against the OpenAPI document.
func (e *env) do(principal, method, pattern, path string, body any, header ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		rd = bytes.NewReader(testenv.JSON(b))
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if principal != "" {
		req.Header.Set("Authorization", "Bearer "+tokens[principal])
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	e.validate(method, pattern, resp, raw)
	return r
}

func (e *env) validate(method, pattern string, resp *http.Response, raw []byte) {
	e.t.Helper()
	paths := e.doc["paths"].(map[string]any)
	op, ok := paths[pattern].(map[string]any)[strings.ToLower(method)].(map[string]any)
	if !ok {
		e.t.Fatalf("%s %s is not in the OpenAPI document", method, pattern)
	}
	status := fmt.Sprint(resp.StatusCode)
	r, ok := op["responses"].(map[string]any)[status].(map[string]any)
	if !ok {
		e.t.Errorf("%s %s answered %d, which the OpenAPI document does not list: %s", method, pattern, resp.StatusCode, raw)
		return
	}
	content, _ := r["content"].(map[string]any)
	ct := strings.Split(resp.Header.Get("Content-Type"), ";")[0]
	if _, ok := content[ct]; !ok {
		e.t.Errorf("%s %s %d: content type %q not documented", method, pattern, resp.StatusCode, ct)
		return
	}
	if ct == "text/event-stream" {
		return
	}
	ptr := "openapi.json#/paths/" + strings.ReplaceAll(strings.ReplaceAll(pattern, "~", "~0"), "/", "~1") + "/" + strings.ToLower(method) +
		"/responses/" + status + "/content/" + strings.ReplaceAll(ct, "/", "~1") + "/schema"
	e.mu.Lock()
	sch, ok := e.cache[ptr]
	if !ok {
		var err error
		if sch, err = e.comp.Compile(ptr); err != nil {
			e.mu.Unlock()
			e.t.Fatalf("compile %s: %v", ptr, err)
		}
		e.cache[ptr] = sch
	}
	e.mu.Unlock()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		e.t.Errorf("%s %s: body is not JSON: %s", method, pattern, raw)
		return
	}
	if err := sch.Validate(inst); err != nil {
		e.t.Errorf("%s %s %d: response does not match the OpenAPI document: %v\n%s", method, pattern, resp.StatusCode, err, raw)
	}
}

func notice(issuer, ref, provider string) pipeline.Notice {
	return testenv.Notice(issuer, ref, provider, pipeline.KindRemovalOrder)
}

// submitted submits through the API and waits until delivered.
func (e *env) submitted(issuer, ref, provider string) string {
	e.t.Helper()
	n := notice(issuer, ref, provider)
	r := e.do("issuer:"+issuer, "POST", "/v1/notices", "/v1/notices", n)
	if r.status != http.StatusAccepted {
		e.t.Fatalf("submit: %d %s", r.status, r.raw)
	}
	e.waitState(n.ID(), pipeline.StateDelivered)
	return n.ID()
}

func (e *env) waitState(id string, st pipeline.State) {
	e.t.Helper()
	testenv.WaitFor(e.t, 10*time.Second, "state "+string(st), func() bool {
		rec, err := e.store.Get(context.Background(), id)
		return err == nil && rec.State == st
	})
}

func fbBody(id, provider, typ string) map[string]any {
	b := map[string]any{"schema": "takedown.feedback/v1", "notice_id": id, "provider": provider, "type": typ}
	if typ == "removed" {
		b["action_at"] = time.Now().UTC().Format(time.RFC3339)
	}
	return b
}

// fuzzServer is the API over a real redis-server, with a publisher that
// accepts every submission (the fuzzers exercise decoding, not delivery).
func fuzzServer(tb testing.TB) *httptest.Server {
	tb.Helper()
	dir, err := pipeline.ParseDirectory([]byte(directoryYAML()), "yaml")
	if err != nil {
		tb.Fatal(err)
	}
	st, err := tracker.New(testenv.Redis(tb), tracker.Config{Shards: 2})
	if err != nil {
		tb.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry())
	log := slog.New(slog.DiscardHandler)
	fb := &worker.Feedback{Store: st, Dir: dir, Clock: pipeline.SystemClock{}, Metrics: m, Logger: log}
	in := &worker.Intake{Store: st, Dir: dir, Clock: pipeline.SystemClock{}, Metrics: m, Logger: log}
	srv := httptest.NewServer(api.New(api.Config{Dir: dir, Store: st, Intake: acceptAll{}, Actions: in, Feedback: fb, Rate: 1e6, Burst: 1e6}).Handler())
	tb.Cleanup(srv.Close)
	return srv
}

type acceptAll struct{}

func (acceptAll) PublishIntake(context.Context, string, string, []byte) error { return nil }
