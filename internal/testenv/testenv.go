// Package testenv gives tests real servers: an embedded NATS server with
// JetStream on a random port and a real redis-server child on a random
// port, plus a polling WaitFor helper. Nothing here fakes Redis or NATS.
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
//	func TestX(t *testing.T) {
//		rdb := testenv.Redis(t)      // the package's redis-server, flushed
//		nc, js := testenv.NATS(t)    // a fresh embedded server per test
//	}
package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/tracker/redisserver"
)

var shared struct {
	once sync.Once
	srv  *redisserver.Server
	dir  string
	err  error
}

// Main runs the package's tests and stops the shared redis-server after.
// Use it as the body of TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared.srv != nil {
		shared.srv.Stop()
		_ = os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// Redis returns a client of the package's shared redis-server (started on
// first use), with the database flushed. Tests using it must not run in
// parallel with each other.
func Redis(tb testing.TB) *redis.Client {
	tb.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "takedown-redis-")
		if shared.err != nil {
			return
		}
		shared.srv, shared.err = redisserver.Start(context.Background(), redisserver.Options{Dir: shared.dir, AppendFsync: "no"})
	})
	if shared.err != nil {
		tb.Fatalf("redis-server: %v", shared.err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: shared.srv.Addr()})
	tb.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		tb.Fatalf("flush redis: %v", err)
	}
	return rdb
}

// OwnRedis starts a redis-server for this test alone (for tests that stop,
// kill or restart it), with AOF fsync on every write.
func OwnRedis(tb testing.TB) *redisserver.Server {
	tb.Helper()
	srv, err := redisserver.Start(context.Background(), redisserver.Options{Dir: tb.TempDir(), AppendFsync: "always"})
	if err != nil {
		tb.Fatalf("redis-server: %v", err)
	}
	tb.Cleanup(srv.Stop)
	return srv
}

// NATSServer is an embedded NATS server with JetStream.
type NATSServer struct {
	mu   sync.Mutex
	srv  *server.Server
	opts *server.Options
}

// StartNATS runs an embedded NATS server with JetStream on a random port
// and a temporary store, shut down when the test ends.
func StartNATS(tb testing.TB) *NATSServer {
	tb.Helper()
	return startNATS(tb, &server.Options{JetStream: true})
}

// StartNATSFromConfig runs a NATS server with the configuration file conf
// (its users, permissions and JetStream settings), on a random loopback
// port with a temporary store and no monitoring port, shut down when the
// test ends.
func StartNATSFromConfig(tb testing.TB, conf string) *NATSServer {
	tb.Helper()
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		tb.Fatalf("nats configuration %s: %v", conf, err)
	}
	opts.HTTPPort = 0
	return startNATS(tb, opts)
}

func startNATS(tb testing.TB, opts *server.Options) *NATSServer {
	tb.Helper()
	opts.Host, opts.Port, opts.StoreDir, opts.NoLog, opts.NoSigs = "127.0.0.1", server.RANDOM_PORT, tb.TempDir(), true, true
	s := &NATSServer{opts: opts}
	if err := s.start(); err != nil {
		tb.Fatal(err)
	}
	// Restarts come back on the same port and store.
	s.opts.Port = s.srv.Addr().(*net.TCPAddr).Port
	tb.Cleanup(s.Shutdown)
	return s
}

func (s *NATSServer) start() error {
	srv, err := server.NewServer(s.opts)
	if err != nil {
		return fmt.Errorf("nats server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("nats server not ready")
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	return nil
}

// URL is the client URL.
func (s *NATSServer) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.opts.Port) }

// StoreDir is the JetStream store directory (copy it while the server is
// shut down).
func (s *NATSServer) StoreDir() string { return s.opts.StoreDir }

// Shutdown stops the server and waits for it. Safe to call twice.
func (s *NATSServer) Shutdown() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	srv.Shutdown()
	srv.WaitForShutdown()
}

// Restart stops the server and starts it again on the same port and store.
func (s *NATSServer) Restart(tb testing.TB) {
	tb.Helper()
	s.Shutdown()
	var err error
	for try := 0; try < 50; try++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port may linger briefly
	}
	tb.Fatalf("restart nats: %v", err)
}

// NATS starts an embedded server and returns a connection and JetStream
// context to it, closed when the test ends.
func NATS(tb testing.TB) (*NATSServer, *nats.Conn, jetstream.JetStream) {
	tb.Helper()
	s := StartNATS(tb)
	nc := Connect(tb, s.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return s, nc, js
}

// Connect opens a client connection that reconnects forever, closed when
// the test ends.
func Connect(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		tb.Fatalf("nats connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// WaitFor polls cond until it holds or timeout passes, then fails the test
// with msg. Use it instead of sleeping for a guessed time.
func WaitFor(tb testing.TB, timeout time.Duration, msg string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StreamMessages reads every message of a stream with limits retention
// now, or those on subjects matching filter ("" for all).
func StreamMessages(tb testing.TB, js jetstream.JetStream, stream, filter string) []jetstream.Msg {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cfg jetstream.OrderedConsumerConfig
	if filter != "" {
		cfg.FilterSubjects = []string{filter}
	}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var out []jetstream.Msg
	pending := int(info.NumPending)
	for len(out) < pending {
		batch, err := cons.Fetch(pending-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			tb.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			out = append(out, m)
			n++
		}
		if n == 0 {
			tb.Fatalf("stream %s: fetched %d of %d", stream, len(out), pending)
		}
	}
	return out
}
