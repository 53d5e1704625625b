// Package apitest runs the whole pipeline in-process behind its HTTP API,
// on an embedded NATS server and a real redis-server, for tests of the API
// and of its clients. It fakes nothing.
//
//	p := apitest.Start(t, apitest.Options{})
//	resp, _ := http.Get(p.URL + "/v1/openapi.json")
package apitest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/metrics"
	"github.com/takedown-eu/takedown/notifier"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/api"
	"github.com/takedown-eu/takedown/pipeline/bus"
	"github.com/takedown-eu/takedown/pipeline/worker"
	"github.com/takedown-eu/takedown/tracker"
)

// Tokens are the bearer tokens of the test directory's principals, keyed
// "kind:id".
var Tokens = map[string]string{
	"issuer:de-bka": "tok-bka", "issuer:fr-pharos": "tok-pharos",
	"provider:videohost": "tok-vh", "provider:filedrop": "tok-fd", "operator:ops": "tok-ops",
}

// DirectoryYAML is the test directory: two issuers, two providers, one
// operator, all with tokens.
func DirectoryYAML() string {
	d := func(k string) string { return api.TokenDigest(Tokens[k]) }
	return fmt.Sprintf(`
issuers:
  - {id: de-bka, name: BKA, member_state: DE, token_sha256: [%s]}
  - {id: fr-pharos, name: PHAROS, member_state: FR, token_sha256: [%s]}
providers:
  - {id: videohost, name: VideoHost, token_sha256: [%s]}
  - {id: filedrop, name: FileDrop, token_sha256: [%s]}
operators:
  - {id: ops, name: Operations, token_sha256: [%s]}
`, d("issuer:de-bka"), d("issuer:fr-pharos"), d("provider:videohost"), d("provider:filedrop"), d("operator:ops"))
}

// Options adjust the pipeline.
type Options struct {
	// Rate and Burst of the API's per-principal limit (defaults: generous).
	Rate  float64
	Burst int
}

// Pipeline is a running pipeline with its API.
type Pipeline struct {
	URL   string
	API   *api.Server
	Store *tracker.Store
	Bus   *bus.Bus
}

// Start runs the pipeline until the test ends: intake and feedback workers,
// the relay, and the API on an httptest server.
func Start(t testing.TB, o Options) *Pipeline {
	t.Helper()
	if o.Rate == 0 {
		o.Rate, o.Burst = 1000, 1000
	}
	ctx, cancel := context.WithCancel(context.Background())
	_, _, js := testenv.NATS(t)
	b, err := bus.New(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := pipeline.ParseDirectory([]byte(DirectoryYAML()), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := tracker.New(testenv.Redis(t), tracker.Config{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry())
	log := slog.New(slog.DiscardHandler)
	clock := pipeline.SystemClock{}
	notif := notifier.New(dir, map[pipeline.Channel]notifier.Channel{pipeline.ChannelNATS: notifier.NewNATS(b, clock)})
	deliv := &worker.Deliveries{Dispatch: notif, Store: st, Dir: dir, Clock: clock, Metrics: m, Logger: log}
	in := &worker.Intake{Bus: b, Store: st, Deliveries: deliv, Dir: dir, Clock: clock, Metrics: m, Logger: log}
	fb := &worker.Feedback{Bus: b, Store: st, Dir: dir, Clock: clock, Metrics: m, Logger: log}
	relay := &worker.Relay{Store: st, Bus: b, Metrics: m, Logger: log, Interval: 10 * time.Millisecond}
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{in.Run, fb.Run, relay.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(ctx) }()
	}
	a := api.New(api.Config{Dir: dir, Store: st, Intake: b, Actions: in, Feedback: fb, Parked: b, Events: b, Rate: o.Rate, Burst: o.Burst})
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() { srv.Close(); cancel(); wg.Wait() })
	return &Pipeline{URL: srv.URL, API: a, Store: st, Bus: b}
}

// WaitState waits until notice id is in state st.
func (p *Pipeline) WaitState(t testing.TB, id string, st pipeline.State) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, "state "+string(st), func() bool {
		rec, err := p.Store.Get(context.Background(), id)
		return err == nil && rec.State == st
	})
}
