package bus_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/pipeline/bus"
)

type principal struct {
	kp   nkeys.KeyPair
	pub  string
	id   string
	errs chan error
}

func newPrincipal(t *testing.T, id string) *principal {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return &principal{kp: kp, pub: pub, id: id, errs: make(chan error, 100)}
}

func (p *principal) connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	seed, _ := p.kp.Seed()
	opt, err := nats.NkeyOptionFromSeed(writeSeed(t, seed))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, opt, nats.CustomInboxPrefix(bus.InboxPrefix(p.id)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { p.errs <- err }))
	if err != nil {
		t.Fatalf("%s connect: %v", p.id, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func writeSeed(t *testing.T, seed []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "seed.nk")
	if err := os.WriteFile(f, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// violation publishes on subject with core NATS and waits for the server's
// permissions violation.
func (p *principal) refusedPublish(t *testing.T, nc *nats.Conn, subject string) {
	t.Helper()
	if err := nc.Publish(subject, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	p.expectViolation(t, "publish to "+subject)
}

func (p *principal) expectViolation(t *testing.T, what string) {
	t.Helper()
	select {
	case err := <-p.errs:
		if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("%s: %s got %v, want a permissions violation", p.id, what, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: %s was not refused", p.id, what)
	}
}

func TestRenderedAuthorizationEnforcesSubjects(t *testing.T) {
	ctx := context.Background()
	pipe, bka, pharos := newPrincipal(t, "takedownd"), newPrincipal(t, "de-bka"), newPrincipal(t, "fr-pharos")
	vh, fd := newPrincipal(t, "videohost"), newPrincipal(t, "filedrop")
	dir, err := pipeline.ParseDirectory([]byte(fmt.Sprintf(`
issuers:
  - {id: de-bka, name: BKA, member_state: DE, nats_nkey: %s}
  - {id: fr-pharos, name: PHAROS, member_state: FR, nats_nkey: %s}
providers:
  - {id: videohost, name: VideoHost, nats_nkey: %s}
  - {id: filedrop, name: FileDrop, nats_nkey: %s}
`, bka.pub, pharos.pub, vh.pub, fd.pub)), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	auth, err := bus.RenderAuthorization(dir, bus.AuthConfig{PipelineNKey: pipe.pub})
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "nats.conf")
	body := fmt.Sprintf("host: 127.0.0.1\nport: -1\njetstream { store_dir: %q }\n%s", t.TempDir(), auth)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	url := testenv.StartNATSFromConfig(t, conf).URL()

	_, pjs := pipe.connect(t, url)
	b, err := bus.New(ctx, pjs, bus.Config{})
	if err != nil {
		t.Fatalf("the pipeline cannot set up its streams: %v", err)
	}
	if _, err := b.Publish(ctx, b.DeliverSubject("videohost"), "n1", []byte(`{"id":"n1"}`), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, b.DeliverSubject("filedrop"), "n2", []byte(`{"id":"n2"}`), nil); err != nil {
		t.Fatal(err)
	}

	// Issuer: its own intake subject, nothing else.
	bnc, bjs := bka.connect(t, url)
	if _, err := bjs.Publish(ctx, "takedown.intake.de-bka", []byte("{}")); err != nil {
		t.Fatalf("issuer on its own intake subject: %v", err)
	}
	bka.refusedPublish(t, bnc, "takedown.intake.fr-pharos")
	bka.refusedPublish(t, bnc, "takedown.feedback.videohost")
	if _, err := bnc.Subscribe("takedown.deliver.videohost", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	_ = bnc.Flush()
	bka.expectViolation(t, "subscribe to a deliver subject")
	if _, err := bjs.OrderedConsumer(ctx, "TAKEDOWN_EVENTS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"takedown.events.de-bka.>"}}); err != nil {
		t.Fatalf("issuer following its own events: %v", err)
	}
	// A refused API request gets no answer: a short timeout keeps the test quick.
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, time.Second)
		t.Cleanup(cancel)
		return c
	}
	if _, err := bjs.CreateOrUpdateConsumer(short(), "TAKEDOWN_EVENTS", jetstream.ConsumerConfig{Name: "peek", FilterSubject: "takedown.events.fr-pharos.>"}); err == nil {
		t.Fatal("issuer created a consumer on another issuer's events")
	}

	// Provider: its own deliver subject through its own durable consumer,
	// its own feedback subject.
	vnc, vjs := vh.connect(t, url)
	cons, err := vjs.CreateOrUpdateConsumer(ctx, "TAKEDOWN_DELIVER", jetstream.ConsumerConfig{Durable: "provider-videohost", FilterSubject: "takedown.deliver.videohost", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("provider creating its own consumer: %v", err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for m := range batch.Messages() {
		got++
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if got != 1 {
		t.Fatalf("provider read %d notices from its own subject, want 1", got)
	}
	if _, err := vjs.Publish(ctx, "takedown.feedback.videohost", []byte("{}")); err != nil {
		t.Fatalf("provider on its own feedback subject: %v", err)
	}
	vh.refusedPublish(t, vnc, "takedown.feedback.filedrop")
	vh.refusedPublish(t, vnc, "takedown.intake.de-bka")
	for _, cfg := range []jetstream.ConsumerConfig{
		{Durable: "provider-filedrop", FilterSubject: "takedown.deliver.filedrop"},
		{Durable: "provider-videohost-2", FilterSubject: "takedown.deliver.filedrop"},
		{Durable: "provider-videohost", FilterSubject: "takedown.deliver.>"},
	} {
		if _, err := vjs.CreateOrUpdateConsumer(short(), "TAKEDOWN_DELIVER", cfg); err == nil {
			t.Errorf("provider created consumer %s on %s", cfg.Durable, cfg.FilterSubject)
		}
	}
	if _, err := vnc.Subscribe("takedown.deliver.filedrop", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	_ = vnc.Flush()
	vh.expectViolation(t, "subscribe to another provider's deliver subject")
	// Another principal's inbox is out of reach too.
	if _, err := vnc.Subscribe(bus.InboxPrefix("filedrop")+".>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	_ = vnc.Flush()
	vh.expectViolation(t, "subscribe to another principal's inbox")

	// Nothing the refused publishes sent landed anywhere.
	for stream, want := range map[string]uint64{"TAKEDOWN_INTAKE": 1, "TAKEDOWN_FEEDBACK": 1} {
		s, _ := pjs.Stream(ctx, stream)
		info, _ := s.Info(ctx)
		if info.State.Msgs != want {
			t.Errorf("%s holds %d messages, want %d", stream, info.State.Msgs, want)
		}
	}
}
