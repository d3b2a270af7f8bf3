// Package scriptcheck runs a configured script check with Consul's semantics
// (https://developer.hashicorp.com/consul/docs/services/usage/checks, "script checks"):
// exit code 0 is passing, 1 is warning and anything else critical; the script's
// combined output is the check's note.
//
// A script runs without a shell, in its own process group. At its timeout (or when the
// caller's context ends) the whole group is killed with SIGKILL, so a hung script and
// the children it started die with it; processes it leaves behind in its group when it
// exits are killed too. Only the first MaxOutput bytes of output are kept: the rest is
// read and dropped, so a chatty script neither blocks on a full pipe nor grows memory.
package scriptcheck

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rollcall-edge/rollcall/contract"
)

// MaxOutput is the number of bytes of a script's output (stdout and stderr combined)
// that Run keeps; the rest is drained and dropped.
const MaxOutput = 4096

// DefaultTimeout is the timeout Run applies when given none (Consul's default for
// script checks).
const DefaultTimeout = 30 * time.Second

// waitDelay bounds how long Run waits for the output pipe to reach end of file after
// the script has exited (or was killed): a process outside the script's group (one that
// called setsid) may keep it open forever.
const waitDelay = 100 * time.Millisecond

// Result is one run of a script check.
type Result struct {
	// Status is contract.Passing (exit 0), contract.Warning (exit 1) or
	// contract.Critical (any other exit code, a signal, a timeout, a start failure).
	Status contract.Status
	// Note is the script's combined stdout and stderr (the first MaxOutput bytes)
	// passed through contract.CleanNote. On a timeout, a cancellation, a start failure
	// or a death by signal it begins with a line saying so, e.g.
	// "timed out after 2s; killed" or "cannot start: ...".
	Note string
	// ExitCode is the script's exit code, or -1 when it was killed or not started.
	ExitCode int
	// Duration is the time from start to the end of the run (output collected).
	Duration time.Duration
}

// Check validates a script check's command for configuration: argv must be non-empty,
// without NUL bytes, and argv[0] must be either an absolute path to an executable
// regular file or a bare name found in PATH (a relative path such as "./check.sh"
// would depend on the gateway's working directory and is refused).
func Check(argv []string) error {
	if len(argv) == 0 || argv[0] == "" {
		return errors.New("scriptcheck: empty command")
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("scriptcheck: argument %d contains a NUL byte", i)
		}
	}
	p := argv[0]
	if !filepath.IsAbs(p) && strings.ContainsRune(p, '/') {
		return fmt.Errorf("scriptcheck: %q is a relative path; use an absolute path or a name found in PATH", p)
	}
	if _, err := exec.LookPath(p); err != nil {
		return fmt.Errorf("scriptcheck: %w", err)
	}
	return nil
}

// Run runs argv (argv[0] the program: an absolute path, or a bare name looked up in the
// gateway's PATH; no shell) with the gateway's environment plus env (entries
// "KEY=value", overriding), stdin from /dev/null, in its own process group. A
// timeout <= 0 means DefaultTimeout.
//
// At the timeout, or when ctx ends, the whole process group gets SIGKILL; Run returns
// at most about 100ms later even if a process outside the group keeps the output pipe
// open. When the script exits on its own, whatever it left running in its group is
// killed as well. Run never fails: a start failure, a timeout or a signal is reported as
// a critical Result whose note says why.
func Run(ctx context.Context, argv []string, timeout time.Duration, env []string) Result {
	start := time.Now()
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	fail := func(why string) Result {
		return Result{Status: contract.Critical, Note: contract.CleanNote(why), ExitCode: -1, Duration: time.Since(start)}
	}
	if len(argv) == 0 || argv[0] == "" {
		return fail("cannot start: empty command")
	}
	if err := ctx.Err(); err != nil {
		return fail(fmt.Sprintf("not started: %v", err))
	}

	out := &capWriter{}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = out // the same writer for both: one pipe, output interleaved as written
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		return fail("cannot start: " + err.Error())
	}
	pgid := cmd.Process.Pid // the script leads its own group

	// Learn of the script's exit without reaping it: while it is an unreaped zombie its
	// pid, which is the group's id, cannot be reused, so signalling the group is safe.
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		awaitExit(pgid)
	}()

	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var why string
	select {
	case <-exited:
	case <-tctx.Done():
		killGroup(pgid)
		<-exited
		if err := ctx.Err(); err != nil {
			why = fmt.Sprintf("interrupted (%v); killed", err)
		} else {
			why = fmt.Sprintf("timed out after %s; killed", timeout)
		}
	}
	killGroup(pgid) // leftovers: background children that outlived the script

	waitErr := cmd.Wait() // reaps; returns at most waitDelay later if the pipe is held open
	output := string(out.buf)
	res := Result{Duration: time.Since(start)}
	st := cmd.ProcessState
	switch {
	case why != "":
		res.Status, res.ExitCode = contract.Critical, -1
		res.Note = joinNote(why, output)
	case st == nil:
		res.Status, res.ExitCode = contract.Critical, -1
		res.Note = joinNote(fmt.Sprintf("wait: %v", waitErr), output)
	default:
		res.ExitCode = st.ExitCode()
		ws, _ := st.Sys().(syscall.WaitStatus)
		switch {
		case ws.Signaled():
			res.Status, res.ExitCode = contract.Critical, -1
			res.Note = joinNote(fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal()), output)
		case res.ExitCode == 0:
			res.Status, res.Note = contract.Passing, contract.CleanNote(output)
		case res.ExitCode == 1:
			res.Status, res.Note = contract.Warning, contract.CleanNote(output)
		default:
			res.Status, res.Note = contract.Critical, contract.CleanNote(output)
		}
	}
	return res
}

// joinNote puts the line why before the script's output.
func joinNote(why, output string) string {
	if strings.TrimSpace(output) == "" {
		return contract.CleanNote(why)
	}
	return contract.CleanNote(why + "\n" + output)
}

// awaitExit blocks until process pid has terminated, leaving it unreaped.
func awaitExit(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// killGroup sends SIGKILL to every process of group pgid (an empty group is fine).
func killGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// capWriter keeps the first MaxOutput bytes written to it and accepts (drops) the rest,
// so the pipe keeps being drained. os/exec calls Write from one goroutine at a time
// (Stdout and Stderr are the same writer), and the buffer is read after Wait.
type capWriter struct {
	buf []byte
}

// Write implements io.Writer; it never fails.
func (w *capWriter) Write(p []byte) (int, error) {
	if room := MaxOutput - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
