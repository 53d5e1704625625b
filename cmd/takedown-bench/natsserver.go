package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/takedown-eu/takedown/internal/childproc"
)

// natsServerArg, as the first argument, makes this program run only a
// NATS server (see runNATSServer): with -nats-apart the bench starts
// itself that way, so that the server is a process of its own, with its
// own garbage collector, as a separate nats-server is.
const natsServerArg = "nats-server"

// startNATS starts an embedded JetStream server with its file store in dir.
func startNATS(dir string) (*server.Server, error) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: dir, NoLog: true, NoSigs: true, JetStreamMaxMemory: 1 << 30})
	if err != nil {
		return nil, err
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("nats not ready")
	}
	return ns, nil
}

// runNATSServer is the server process: it starts the server, writes its
// client URL as the first line on stdout, and shuts it down on SIGTERM
// or SIGINT.
func runNATSServer(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(natsServerArg, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("store", "", "JetStream store directory")
	if err := fs.Parse(args); err != nil || *dir == "" {
		fmt.Fprintln(stderr, "takedown-bench nats-server: -store DIR is required")
		return 2
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	ns, err := startNATS(*dir)
	if err != nil {
		fmt.Fprintln(stderr, "takedown-bench nats-server:", err)
		return 1
	}
	fmt.Fprintln(stdout, ns.ClientURL())
	<-sigs
	ns.Shutdown()
	ns.WaitForShutdown()
	return 0
}

// natsChild is a NATS server process started by startNATSChild.
type natsChild struct {
	cmd  *exec.Cmd
	done <-chan error
	pid  int
	url  string
}

// startNATSChild starts this program as a NATS server process with its
// store in dir and waits for its client URL. The child ends with this
// process.
func startNATSChild(dir string, stderr io.Writer) (*natsChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, natsServerArg, "-store", dir)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	done, err := childproc.Start(cmd, syscall.SIGKILL)
	if err != nil {
		return nil, err
	}
	c := &natsChild{cmd: cmd, done: done, pid: cmd.Process.Pid}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- strings.TrimSpace(sc.Text())
		}
		close(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case u, ok := <-line:
		if !ok || !strings.HasPrefix(u, "nats://") {
			c.stop()
			return nil, fmt.Errorf("NATS server process gave no client URL (got %q)", u)
		}
		c.url = u
		return c, nil
	case err := <-done:
		return nil, fmt.Errorf("NATS server process exited before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		c.stop()
		return nil, errors.New("NATS server process not ready after 30s")
	}
}

// stop shuts the server down (SIGTERM), and kills it if it has not exited
// after 30 seconds.
func (c *natsChild) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// serverLog keeps an embedded server's warnings and errors, which explain
// what a client sees only as an error code (such as "error creating store
// for stream"): ns.SetLogger(l, false, false).
type serverLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *serverLog) Noticef(string, ...any)    {}
func (l *serverLog) Debugf(string, ...any)     {}
func (l *serverLog) Tracef(string, ...any)     {}
func (l *serverLog) Warnf(f string, v ...any)  { l.add("warning: "+f, v...) }
func (l *serverLog) Errorf(f string, v ...any) { l.add("error: "+f, v...) }
func (l *serverLog) Fatalf(f string, v ...any) { l.add("fatal: "+f, v...) }
func (l *serverLog) add(f string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) < 20 {
		l.lines = append(l.lines, fmt.Sprintf(f, v...))
	}
}

// String is what the server said, or "nothing logged".
func (l *serverLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 0 {
		return "nothing logged"
	}
	return strings.Join(l.lines, "; ")
}
