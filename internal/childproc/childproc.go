// Package childproc starts child processes that die with this one.
//
// The parent-death signal (Pdeathsig) is delivered when the thread that
// started the child ends, not when the process does, and the Go runtime
// ends a thread when a goroutine locked to it exits without unlocking. So
// a child started from an ordinary goroutine can be killed at any moment
// by unrelated code that locks a thread and returns. Start keeps the
// starting thread locked to one goroutine for the child's whole life.
package childproc

import (
	"os/exec"
	"runtime"
	"syscall"
)

// Start starts cmd so that it receives sig when this process ends, and
// returns a channel that yields the result of cmd.Wait once the child has
// exited. cmd.SysProcAttr is replaced.
func Start(cmd *exec.Cmd, sig syscall.Signal) (<-chan error, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: sig}
	started := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return done, nil
}
