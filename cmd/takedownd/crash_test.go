package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/internal/childproc"
	"github.com/takedown-eu/takedown/internal/providersim"
	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/api"
	"github.com/takedown-eu/takedown/tracker"
)

// childEnv, when set, makes the test binary run takedownd's main instead
// of the tests: the crash test kills a real takedownd process.
const childEnv = "TAKEDOWND_TEST_RUN_MAIN"

// process is takedownd running as a child process of the test.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	err    error         // its exit status, once exited
	stderr *syncBuffer
}

// startProcess starts takedownd with args and waits until /readyz says
// ready.
func startProcess(t *testing.T, httpAddr string, args []string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(os.Args[0], args...), exited: make(chan struct{}), stderr: &syncBuffer{}}
	p.cmd.Env = append(os.Environ(), childEnv+"=1")
	p.cmd.Stderr = p.stderr
	done, err := childproc.Start(p.cmd, syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = <-done
		close(p.exited)
	}()
	t.Cleanup(p.kill)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("takedownd exited at start: %v\n%s", p.err, p.stderr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("takedownd not ready after 30s\n%s", p.stderr)
		}
	}
}

// kill ends the process with SIGKILL: no drain, no last relay round, no
// lease released.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// stop ends the process with SIGTERM and waits for it to drain and exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("takedownd exited with %v after SIGTERM\n%s", p.err, p.stderr)
		}
	case <-time.After(40 * time.Second):
		t.Errorf("takedownd did not stop within 40s of SIGTERM")
	}
}

// checkRaces fails the test if the race detector (make test runs with
// -race, and so does the child) reported anything in the process.
func (p *process) checkRaces(t *testing.T) {
	t.Helper()
	if log := p.stderr.String(); strings.Contains(log, "DATA RACE") {
		t.Errorf("the race detector reported in takedownd:\n%s", log)
	}
}

// TestKilledDaemonLosesNothing is the design's durability contract run
// against the real process: takedownd, with its embedded NATS server, is
// killed with SIGKILL three times while notices flow to two providers —
// one reading its deliver subject, one taking signed webhooks and
// answering over the HTTP API — and restarted on the same data. Every
// notice an issuer got accepted must end removed, with each of its events
// on the events stream exactly once and in unbroken version order, its
// delivery recorded at the time the deliver stream first stored it, and
// nothing left parked, unacknowledged or unrelayed. Where the kills land
// differs from run to run; what is checked holds wherever they land.
func TestKilledDaemonLosesNothing(t *testing.T) { killTest(t, false) }

// TestKilledReplicaLosesNothing is the same with two replicas sharing a
// NATS server and Redis, as when takedownd is scaled out: one is killed
// three times and restarted, the other runs throughout and must take
// over the dead one's consumers, relay shards and scheduler claims
// without an event published twice or out of order.
func TestKilledReplicaLosesNothing(t *testing.T) { killTest(t, true) }

// killTest runs the kill test with takedownd's embedded NATS server, or
// with replicas: two takedownd sharing a NATS server of the test's.
func killTest(t *testing.T, replicas bool) {
	const notices = 300
	redisSrv := testenv.OwnRedis(t)
	dir := t.TempDir()
	// Two providers: videohost reads its deliver subject, webcast takes
	// signed webhooks and answers over the HTTP API.
	hooks, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	secret, token := "whsec_"+base64.StdEncoding.EncodeToString([]byte("crash-test-webhook-secret")), "crash-test-token"
	directory := fmt.Sprintf(`
issuers: [{id: de-bka, name: BKA, member_state: DE}]
providers:
  - {id: videohost, name: VideoHost, member_state: IE}
  - id: webcast
    name: WebCast
    channel: webhook
    webhook: {url: "http://%s/hooks/webcast", allow_private: true, secrets: [%s]}
    token_sha256: [%s]
`, hooks.Addr(), secret, api.TokenDigest(token))
	dirFile := filepath.Join(dir, "directory.yaml")
	if err := os.WriteFile(dirFile, []byte(directory), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"-directory", dirFile, "-redis-url", redisSrv.URL(), "-scheduler-interval", "100ms", "-log-format", "text"}
	var natsURL string
	if replicas {
		natsURL = testenv.StartNATS(t).URL()
		common = append(common, "-nats-url", natsURL)
	} else {
		natsAddr := "127.0.0.1:" + freePort(t)
		natsURL = "nats://" + natsAddr
		common = append(common, "-nats-listen", natsAddr)
	}
	argsFor := func(name, httpAddr string) []string {
		return append(slices.Clone(common), "-data-dir", filepath.Join(dir, name), "-http", httpAddr)
	}
	// The victim is killed and restarted; with replicas, the survivor
	// runs throughout and serves the HTTP API the webhook provider
	// answers on.
	httpAddr := "127.0.0.1:" + freePort(t)
	args := argsFor("victim", httpAddr)
	proc := startProcess(t, httpAddr, args)
	apiAddr := httpAddr
	var survivor *process
	if replicas {
		apiAddr = "127.0.0.1:" + freePort(t)
		survivor = startProcess(t, apiAddr, argsFor("survivor", apiAddr))
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The issuer and the provider are processes of their own in
	// production: here, connections that reconnect across the restarts.
	issuer, err := jetstream.New(testenv.Connect(t, natsURL))
	if err != nil {
		t.Fatal(err)
	}
	provider, err := jetstream.New(testenv.Connect(t, natsURL))
	if err != nil {
		t.Fatal(err)
	}
	sim := &providersim.Sim{JS: provider, Providers: []providersim.Provider{{ID: "videohost", Behaviour: providersim.Prompt}},
		Webhook: &providersim.WebhookConfig{Providers: []providersim.Provider{{ID: "webcast", Behaviour: providersim.Prompt}},
			Listener: hooks, Secrets: []string{secret}, APIURL: "http://" + apiAddr, Tokens: map[string]string{"webcast": token}}}
	simDone := make(chan error, 1)
	go func() { simDone <- sim.Run(ctx) }()

	ids := make([]string, notices)
	submitted := make(chan error, 1)
	go func() {
		for i := range notices {
			n := testenv.Notice("de-bka", fmt.Sprintf("CRASH-%04d", i), []string{"videohost", "webcast"}[i%2], pipeline.KindRemovalOrder)
			ids[i] = n.ID()
			m := nats.NewMsg("takedown.intake.de-bka")
			m.Data = testenv.JSON(n)
			// An issuer retries until JetStream accepts (the id makes a
			// retry after a lost acknowledgement harmless).
			for {
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := issuer.PublishMsg(pctx, m, jetstream.WithMsgID(n.ID()))
				pcancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					submitted <- ctx.Err()
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		submitted <- nil
	}()

	rdb := redis.NewClient(&redis.Options{Addr: redisSrv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	store, err := tracker.New(rdb, tracker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	counts := func() tracker.Counts {
		c, err := store.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tracked := func() (n int64) {
		for _, v := range counts().ByState {
			n += v
		}
		return n
	}
	var last tracker.Counts
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last counts: %v, %d events not yet relayed; last takedownd's log:\n%s", last.ByState, last.Outbox, proc.stderr)
			if survivor != nil {
				t.Logf("the survivor's log:\n%s", survivor.stderr)
			}
		}
	})
	// Kill while notices are arriving, then twice while they are being
	// delivered and answered.
	removed := func() int64 { return counts().ByState[pipeline.StateRemoved] }
	for k, when := range []struct {
		what string
		n    int64
		of   func() int64
	}{{"tracked", notices / 4, tracked}, {"removed", notices / 3, removed}, {"removed", 2 * notices / 3, removed}} {
		testenv.WaitFor(t, 2*time.Minute, fmt.Sprintf("%d notices %s before kill %d", when.n, when.what, k+1), func() bool {
			return when.of() >= when.n
		})
		c := counts()
		proc.kill()
		proc.checkRaces(t)
		t.Logf("kill %d: tracked %v, %d events not yet relayed", k+1, c.ByState, c.Outbox)
		proc = startProcess(t, httpAddr, args)
		if k == 1 {
			// takedownd verify on the running pipeline, notices flowing:
			// nothing was lost, so whatever is in flight must not look
			// like a disagreement.
			rep, err := compareEvents(ctx, issuer, "TAKEDOWN_EVENTS", store)
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			rep.print(&out, 20)
			if !rep.agree() {
				t.Errorf("verify while notices flow:\n%s", out.String())
			}
			t.Logf("verify while notices flow:\n%s", out.String())
		}
	}
	select {
	case err := <-submitted:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("issuer could not submit every notice in 2 minutes")
	}

	// Messages in flight at a kill come back after the consumers' 30 s
	// ack wait, and a provider's answer that overtook a delivery record
	// the kill held back is taken again at its next retry (up to 30 s
	// apart): a minute or so after the last kill.
	testenv.WaitFor(t, 3*time.Minute, "every notice removed and every event relayed", func() bool {
		last = counts()
		return last.ByState[pipeline.StateRemoved] == notices && last.Outbox == 0
	})
	for st, n := range counts().ByState {
		if st != pipeline.StateRemoved && n != 0 {
			t.Errorf("%d notices %s, want all %d removed", n, st, notices)
		}
	}

	events := testenv.StreamMessages(t, issuer, "TAKEDOWN_EVENTS", "")
	deliveredAt := map[string]time.Time{}
	versions := map[string][]int64{}
	types := map[string][]string{}
	seen := map[string]bool{}
	for _, m := range events {
		msgID := m.Headers().Get(jetstream.MsgIDHeader)
		if seen[msgID] {
			t.Errorf("event %s on the events stream twice", msgID)
		}
		seen[msgID] = true
		id, v, ok := strings.Cut(msgID, ".")
		ver, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil {
			t.Fatalf("event message id %q is not <notice id>.<version>", msgID)
		}
		versions[id] = append(versions[id], ver)
		subject := strings.Split(m.Subject(), ".")
		types[id] = append(types[id], subject[len(subject)-1])
		if subject[len(subject)-1] == "delivered" {
			var ev struct {
				At time.Time `json:"at"`
			}
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				t.Fatalf("delivered event %s: %v", msgID, err)
			}
			deliveredAt[id] = ev.At
		}
	}
	// The legal clock starts when the provider could first read the
	// notice: when the deliver stream first stored it, even when the
	// process died before recording that and took the attempt again.
	firstStored := map[string]time.Time{}
	for _, m := range testenv.StreamMessages(t, issuer, "TAKEDOWN_DELIVER", "") {
		id := m.Headers().Get("Takedown-Notice-Id")
		meta, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if at, ok := firstStored[id]; !ok || meta.Timestamp.Before(at) {
			firstStored[id] = meta.Timestamp
		}
	}
	for _, id := range ids {
		rec, err := store.Get(ctx, id)
		if err != nil {
			t.Fatalf("notice %s: %v", id, err)
		}
		// In the stream's order: 1, 2, 3, … with nothing missing or
		// out of place.
		vs := versions[id]
		for i, v := range vs {
			if v != int64(i+1) {
				t.Errorf("notice %s: event versions %v in the stream's order, want 1 to %d in order", id, vs, rec.Version)
				break
			}
		}
		if int64(len(vs)) != rec.Version {
			t.Errorf("notice %s: %d events on the stream, version %d in Redis", id, len(vs), rec.Version)
		}
		// Over NATS: a receipt a PubAck's round trip after the storing;
		// a repeated attempt's receipt recorded at the repeat would be
		// the ack wait or the redelivery interval (30 s) late. (A
		// webhook's receipt is its 2xx, which leaves no stored time.)
		if at, stored := deliveredAt[id], firstStored[id]; !stored.IsZero() && (at.Before(stored) || at.Sub(stored) > 5*time.Second) {
			t.Errorf("notice %s: delivered at %s, first stored on the deliver stream at %s", id, at.Format(time.RFC3339Nano), stored.Format(time.RFC3339Nano))
		}
		for _, want := range []string{"received", "delivered", "removed"} {
			if !slices.Contains(types[id], want) {
				t.Errorf("notice %s: no %s event (events %v)", id, want, types[id])
			}
		}
	}
	// The work queues are empty once every message was acknowledged.
	for _, name := range []string{"TAKEDOWN_INTAKE", "TAKEDOWN_FEEDBACK"} {
		testenv.WaitFor(t, 30*time.Second, name+" empty", func() bool { return streamInfo(t, issuer, name).State.Msgs == 0 })
	}
	for _, m := range testenv.StreamMessages(t, issuer, "TAKEDOWN_PARKED", "") {
		t.Errorf("parked: %s %s: %s", m.Subject(), m.Headers().Get("Takedown-Park-Reason"), m.Headers().Get("Takedown-Park-Detail"))
	}
	// takedownd verify, which operators run after an incident, finds the
	// same.
	rep, err := compareEvents(ctx, issuer, "TAKEDOWN_EVENTS", store)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.agree() || rep.agreeing != notices {
		var out strings.Builder
		rep.print(&out, 20)
		t.Errorf("verify after the kills:\n%s", out.String())
	}
	for _, p := range []*process{proc, survivor} {
		if p != nil {
			p.stop(t)
			p.checkRaces(t)
		}
	}
	cancel()
	if err := <-simDone; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("providersim: %v", err)
	}
}

func streamInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}
