package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestMain lets the test binary serve as the NATS server process, as the
// bench binary does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == natsServerArg {
		os.Exit(runNATSServer(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// With -nats-apart the server is a process of its own: JetStream works
// through it, its CPU is counted, and stop ends it.
func TestNATSApart(t *testing.T) {
	var stderr bytes.Buffer
	c, err := startNATSChild(t.TempDir(), &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if c.pid == os.Getpid() {
		t.Fatal("the server runs in this process")
	}
	nc, err := nats.Connect(c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t"}}); err != nil {
		t.Fatal(err)
	}
	for range 2000 {
		if _, err := js.Publish(ctx, "t", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{natsProc: c}
	if e.natsCPU() <= 0 {
		t.Error("the server process's CPU is not counted")
	}
	c.stop()
	if err := syscall.Kill(c.pid, 0); err == nil {
		t.Error("the server process is still running after stop")
	}
	deadline := time.Now().Add(10 * time.Second)
	for nc.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if nc.IsConnected() {
		t.Error("the client still has a connection after the server stopped")
	}
}

// An embedded server's warnings reach a serverLog, which failures of the
// measurements quote (a client sees only an error code).
func TestServerLogKeepsWarnings(t *testing.T) {
	ns, err := startNATS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	l := &serverLog{}
	if l.String() != "nothing logged" {
		t.Errorf("empty log: %q", l.String())
	}
	ns.SetLogger(l, false, false)
	ns.Warnf("stream create failed: %s", "disk")
	if !strings.Contains(l.String(), "warning: stream create failed: disk") {
		t.Errorf("log: %q", l.String())
	}
}
