package childproc_test

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/takedown-eu/takedown/internal/childproc"
)

// TestMain keeps the main thread to itself: the runtime never ends the
// main thread, so a goroutine locked to it could not show what happens
// when the starting thread ends.
func TestMain(m *testing.M) {
	runtime.LockOSThread()
	os.Exit(m.Run())
}

// A child started from a goroutine that then exits locked to its thread
// (so the runtime ends the thread) keeps running: its parent-death signal
// is tied to a thread Start keeps alive.
func TestChildOutlivesTheStartingThread(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	type result struct {
		done <-chan error
		err  error
	}
	res := make(chan result)
	go func() {
		runtime.LockOSThread() // never unlocked: this thread ends with the goroutine
		done, err := childproc.Start(cmd, syscall.SIGKILL)
		res <- result{done, err}
	}()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	// Give the ended thread's signal every chance to arrive: the child must
	// not exit.
	for range 50 {
		select {
		case err := <-r.done:
			t.Fatalf("child ended when an unrelated thread did: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	defer func() { _ = cmd.Process.Kill(); <-r.done }()
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("child gone: %v", err)
	}
}

func TestWaitResult(t *testing.T) {
	cmd := exec.Command("sh", "-c", "exit 3")
	done, err := childproc.Start(cmd, syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := <-done; !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("wait: %v, want exit status 3", err)
	}
	if _, err := childproc.Start(exec.Command("/nonexistent/binary"), syscall.SIGKILL); err == nil {
		t.Fatal("starting a missing binary succeeded")
	}
}
