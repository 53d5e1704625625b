// Package redisserver starts and stops a local redis-server child process.
// takedownd uses it in development mode, the demo uses it, and tests use it
// to get a real Redis on a random port.
//
//	srv, err := redisserver.Start(ctx, redisserver.Options{Dir: dir})
//	defer srv.Stop()
//	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
package redisserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/takedown-eu/takedown/internal/childproc"
)

// Options configures a child redis-server.
type Options struct {
	// Binary is the redis-server executable. Default: "redis-server" on PATH.
	Binary string
	// Dir holds the data files (AOF, RDB). Required.
	Dir string
	// Port to listen on, on 127.0.0.1. Zero picks a free port.
	Port int
	// AppendFsync is the AOF fsync policy: "everysec" (default, as in
	// production) or "always" (tests that kill the server).
	AppendFsync string
	// Args are extra "--name value" arguments.
	Args []string
}

// Server is a running child redis-server.
type Server struct {
	opts Options
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
}

// ErrNotFound reports that redis-server is not installed.
var ErrNotFound = errors.New("redis-server not found on PATH (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)")

// Start launches redis-server and waits until it answers PING.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Binary == "" {
		opts.Binary = "redis-server"
	}
	if _, err := exec.LookPath(opts.Binary); err != nil {
		return nil, ErrNotFound
	}
	if opts.Dir == "" {
		return nil, errors.New("redisserver: Dir is required")
	}
	if opts.AppendFsync == "" {
		opts.AppendFsync = "everysec"
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("redisserver: %w", err)
	}
	s := &Server{opts: opts}
	pick := opts.Port == 0
	for try := 0; ; try++ {
		if pick {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			s.opts.Port = p
		}
		err := s.start(ctx)
		if err == nil {
			return s, nil
		}
		if !pick || try == 4 || ctx.Err() != nil {
			return nil, err
		}
	}
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.opts.Port)) }

// URL is the redis:// URL of the server.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Dir is the data directory.
func (s *Server) Dir() string { return s.opts.Dir }

func (s *Server) start(ctx context.Context) error {
	args := []string{
		"--port", strconv.Itoa(s.opts.Port), "--bind", "127.0.0.1",
		"--dir", s.opts.Dir, "--appendonly", "yes", "--appendfsync", s.opts.AppendFsync,
		"--maxmemory-policy", "noeviction", "--save", "", "--daemonize", "no",
		"--logfile", "", "--protected-mode", "yes",
	}
	args = append(args, s.opts.Args...)
	cmd := exec.Command(s.opts.Binary, args...)
	logBuf := &bytes.Buffer{}
	cmd.Stdout = &lockedWriter{w: logBuf}
	cmd.Stderr = cmd.Stdout
	// The child dies with us even if we are killed without cleanup.
	waited, err := childproc.Start(cmd, syscall.SIGKILL)
	if err != nil {
		return fmt.Errorf("redisserver: start: %w", err)
	}
	done := make(chan struct{})
	go func() { <-waited; close(done) }()
	s.mu.Lock()
	s.cmd, s.done, s.log = cmd, done, logBuf
	s.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if ping(s.Addr()) == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redisserver: exited at start: %s", s.Log())
		case <-ctx.Done():
			s.Kill()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redisserver: no answer on %s within 15s: %s", s.Addr(), s.Log())
		}
	}
}

// Log returns what the server printed so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return ""
	}
	if w, ok := s.cmd.Stdout.(*lockedWriter); ok {
		return w.String()
	}
	return ""
}

// Stop shuts the server down gracefully (SIGTERM: it flushes the AOF) and
// waits for it. Safe to call twice.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill stops the server abruptly (SIGKILL), as a crash would.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart starts the server again on the same port and data directory.
func (s *Server) Restart(ctx context.Context) error {
	s.Stop()
	var err error
	for try := 0; try < 50; try++ { // the port may linger briefly
		if err = s.start(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return err
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("redis answered %q", line)
	}
	return nil
}

// Reachable reports whether something answers Redis PING at addr.
func Reachable(addr string) bool { return ping(addr) == nil }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redisserver: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w.Len() > 1<<20 { // keep the tail bounded
		l.w.Reset()
	}
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// DataFile is the path of the AOF directory, for backups.
func (s *Server) DataFile() string { return filepath.Join(s.opts.Dir, "appendonlydir") }

// PID is the process id of the running server (0 when stopped).
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}
