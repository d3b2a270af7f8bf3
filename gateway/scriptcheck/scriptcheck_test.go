package scriptcheck

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/rollcall-edge/rollcall/contract"
)

// Tests are not parallel on purpose: writing a script while another test forks can make
// exec fail with ETXTBSY.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// script writes a /bin/sh script with body to a temporary directory and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "check.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// readPids reads the space-separated pids a script wrote to path.
func readPids(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("script did not write its pids: %v", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("pid file %q: %v", b, err)
		}
		pids = append(pids, pid)
	}
	if len(pids) == 0 {
		t.Fatalf("pid file is empty")
	}
	return pids
}

// assertDead fails unless process pid has terminated: it no longer exists, or it is a
// zombie waiting for its (new) parent to reap it. A process that got SIGKILL but has not
// finished dying yet is waited for through a pidfd, without sleeping.
func assertDead(t *testing.T, pid int) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return // gone
	}
	if err != nil {
		t.Fatalf("pidfd_open(%d): %v", pid, err)
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 2000) // readable once the process has terminated
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("poll pidfd %d: %v", pid, err)
		}
		if n == 0 {
			t.Errorf("process %d still alive", pid)
		}
		return
	}
}

// assertGroupDead fails if any process of group pgid is still alive.
func assertGroupDead(t *testing.T, pgid int) {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) >= 3 && f[2] == strconv.Itoa(pgid) {
			assertDead(t, pid)
		}
	}
}

func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   int
		status contract.Status
	}{
		{"exit0_passing", 0, contract.Passing},
		{"exit1_warning", 1, contract.Warning},
		{"exit2_critical", 2, contract.Critical},
		{"exit3_critical", 3, contract.Critical},
		{"exit255_critical", 255, contract.Critical},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := script(t, `echo "out $1 $GREETING"; echo "err line" >&2; exit `+strconv.Itoa(tc.code))
			r := Run(context.Background(), []string{p, "arg1"}, 5*time.Second, []string{"GREETING=hello"})
			if r.Status != tc.status || r.ExitCode != tc.code {
				t.Fatalf("got %s/%d (note %q), want %s/%d", r.Status, r.ExitCode, r.Note, tc.status, tc.code)
			}
			if r.Note != "out arg1 hello\nerr line" {
				t.Errorf("note = %q, want stdout then stderr", r.Note)
			}
			if r.Duration <= 0 {
				t.Errorf("duration = %v", r.Duration)
			}
		})
	}
}

func TestRunNoteCleaned(t *testing.T) {
	p := script(t, `printf '  bell\007 and esc\033[0m\n\n'`)
	r := Run(context.Background(), []string{p}, 5*time.Second, nil)
	if r.Status != contract.Passing {
		t.Fatalf("status %s (%q)", r.Status, r.Note)
	}
	if want := contract.CleanNote("  bell\a and esc\x1b[0m\n\n"); r.Note != want {
		t.Errorf("note = %q, want %q", r.Note, want)
	}
}

func TestRunKilledBySignal(t *testing.T) {
	for _, sig := range []string{"TERM", "KILL"} {
		t.Run(sig, func(t *testing.T) {
			p := script(t, "echo before; kill -"+sig+" $$; echo after")
			r := Run(context.Background(), []string{p}, 5*time.Second, nil)
			if r.Status != contract.Critical || r.ExitCode != -1 {
				t.Fatalf("got %s/%d (%q), want critical/-1", r.Status, r.ExitCode, r.Note)
			}
			if !strings.HasPrefix(r.Note, "killed by signal") || !strings.HasSuffix(r.Note, "\nbefore") {
				t.Errorf("note = %q", r.Note)
			}
		})
	}
}

func TestRunTimeoutKillsGroup(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		// sh waits for a foreground sleep that holds the output pipe.
		{"hung", `echo $$ > "$PIDFILE"; echo started; sleep 60`},
		// a background child holds the pipe as well and would outlive sh.
		{"child_holds_stdout", `sleep 60 & echo $$ $! > "$PIDFILE"; echo started; sleep 60`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pidfile := filepath.Join(t.TempDir(), "pids")
			p := script(t, tc.body)
			const timeout = 300 * time.Millisecond
			start := time.Now()
			r := Run(context.Background(), []string{p}, timeout, []string{"PIDFILE=" + pidfile})
			elapsed := time.Since(start)
			if elapsed > timeout+time.Second {
				t.Errorf("Run returned after %v", elapsed)
			}
			if r.Status != contract.Critical || r.ExitCode != -1 {
				t.Errorf("got %s/%d, want critical/-1", r.Status, r.ExitCode)
			}
			if r.Note != "timed out after 300ms; killed\nstarted" {
				t.Errorf("note = %q", r.Note)
			}
			if r.Duration < timeout {
				t.Errorf("duration %v < timeout", r.Duration)
			}
			pids := readPids(t, pidfile)
			for _, pid := range pids {
				assertDead(t, pid)
			}
			assertGroupDead(t, pids[0])
		})
	}
}

func TestRunContextEnd(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		pidfile := filepath.Join(t.TempDir(), "pids")
		p := script(t, `sleep 60 & echo $$ $! > "$PIDFILE"; sleep 60`)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		r := Run(ctx, []string{p}, time.Minute, []string{"PIDFILE=" + pidfile})
		if elapsed := time.Since(start); elapsed > 200*time.Millisecond+time.Second {
			t.Errorf("Run returned after %v", elapsed)
		}
		if r.Status != contract.Critical || r.ExitCode != -1 || r.Note != "interrupted (context deadline exceeded); killed" {
			t.Errorf("got %+v", r)
		}
		pids := readPids(t, pidfile)
		for _, pid := range pids {
			assertDead(t, pid)
		}
		assertGroupDead(t, pids[0])
	})
	t.Run("already_canceled", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "ran")
		p := script(t, `touch "$MARKER"`)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := Run(ctx, []string{p}, time.Second, []string{"MARKER=" + marker})
		if r.Status != contract.Critical || r.ExitCode != -1 || r.Note != "not started: context canceled" {
			t.Errorf("got %+v", r)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Errorf("script ran")
		}
	})
}

// A background child left running when the script exits is killed, and Run does not
// wait for it although it holds the output pipe.
func TestRunKillsLeftovers(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pids")
	p := script(t, `sleep 60 & echo $! > "$PIDFILE"; echo done; exit 1`)
	start := time.Now()
	r := Run(context.Background(), []string{p}, time.Minute, []string{"PIDFILE=" + pidfile})
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Run returned after %v", elapsed)
	}
	if r.Status != contract.Warning || r.ExitCode != 1 || r.Note != "done" {
		t.Errorf("got %+v", r)
	}
	assertDead(t, readPids(t, pidfile)[0])
}

// A process that left the group (setsid) is not killed with it, but Run still returns
// about waitDelay after the script ends although that process holds the output pipe.
func TestRunPipeHeldOutsideGroup(t *testing.T) {
	if _, err := os.Stat("/usr/bin/setsid"); err != nil {
		t.Skip("no setsid")
	}
	for _, tc := range []struct {
		name, tail string
		timeout    time.Duration
		limit      time.Duration // Run's expected time plus slack
		status     contract.Status
	}{
		{"exits", "exit 0", time.Minute, time.Second, contract.Passing},
		{"hangs", "sleep 60", 300 * time.Millisecond, 1300 * time.Millisecond, contract.Critical},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pidfile := filepath.Join(dir, "pids")
			// The fifo makes the script go on only once the holder has left the group.
			p := script(t, `mkfifo "$FIFO"
/usr/bin/setsid sh -c 'echo $$ > "$PIDFILE"; echo ready > "$FIFO"; exec sleep 60' &
read ready < "$FIFO"
echo out
`+tc.tail)
			t.Cleanup(func() {
				for _, pid := range readPids(t, pidfile) {
					_ = unix.Kill(pid, unix.SIGKILL)
					assertDead(t, pid)
				}
			})
			start := time.Now()
			r := Run(context.Background(), []string{p}, tc.timeout,
				[]string{"PIDFILE=" + pidfile, "FIFO=" + filepath.Join(dir, "fifo")})
			if elapsed := time.Since(start); elapsed > tc.limit {
				t.Errorf("Run returned after %v", elapsed)
			}
			if r.Duration < waitDelay {
				t.Errorf("duration %v: the pipe was not held open", r.Duration)
			}
			holder := readPids(t, pidfile)[0]
			if err := unix.Kill(holder, 0); err != nil {
				t.Errorf("holder %d outside the group: %v", holder, err)
			}
			if r.Status != tc.status || !strings.HasSuffix(r.Note, "out") {
				t.Errorf("got %+v", r)
			}
		})
	}
}

func TestRunOutputCapped(t *testing.T) {
	// 1 MiB on stdout and 1 MiB on stderr: the script must not block on a full pipe.
	p := script(t, `echo BEGIN
head -c 1048576 /dev/zero | tr '\0' x
head -c 1048576 /dev/zero | tr '\0' y >&2
exit 0`)
	start := time.Now()
	r := Run(context.Background(), []string{p}, 20*time.Second, nil)
	if r.Status != contract.Passing || r.ExitCode != 0 {
		t.Fatalf("got %s/%d (%.60q)", r.Status, r.ExitCode, r.Note)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("took %v", elapsed)
	}
	if !strings.HasPrefix(r.Note, "BEGIN\nxxx") || len(r.Note) > MaxOutput || len(r.Note) > contract.MaxNoteBytes {
		t.Errorf("note (%d bytes) = %.60q", len(r.Note), r.Note)
	}
}

func TestCapWriterKeepsFirstBytes(t *testing.T) {
	var w capWriter
	chunk := bytes.Repeat([]byte("0123456789"), 100) // 1000 bytes
	total := 0
	for range 1000 {
		n, err := w.Write(chunk)
		if n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		total += n
	}
	if len(w.buf) != MaxOutput || cap(w.buf) > 2*MaxOutput {
		t.Fatalf("kept %d bytes (cap %d) of %d", len(w.buf), cap(w.buf), total)
	}
	if want := bytes.Repeat(chunk, 5)[:MaxOutput]; !bytes.Equal(w.buf, want) {
		t.Errorf("kept bytes are not the first ones")
	}
}

func TestRunStartFailure(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-check")
	notExec := filepath.Join(t.TempDir(), "not-executable.sh")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		argv []string
		want string
	}{
		{"missing_path", []string{missing}, missing},
		{"missing_name", []string{"rollcall-no-such-check"}, "rollcall-no-such-check"},
		{"not_executable", []string{notExec}, notExec},
		{"empty", nil, "empty command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Run(context.Background(), tc.argv, time.Second, nil)
			if r.Status != contract.Critical || r.ExitCode != -1 {
				t.Errorf("got %s/%d", r.Status, r.ExitCode)
			}
			if !strings.HasPrefix(r.Note, "cannot start: ") || !strings.Contains(r.Note, tc.want) {
				t.Errorf("note = %q, want it to name %q", r.Note, tc.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := script(t, "exit 0")
	notExec := filepath.Join(dir, "plain")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		argv []string
		ok   bool
	}{
		{"absolute", []string{good, "-v"}, true},
		{"in_path", []string{"sh", "-c", "true"}, true},
		{"empty", nil, false},
		{"empty_program", []string{""}, false},
		{"relative", []string{"./check.sh"}, false},
		{"relative_dir", []string{"checks/check.sh"}, false},
		{"missing_absolute", []string{filepath.Join(dir, "missing")}, false},
		{"missing_name", []string{"rollcall-no-such-check"}, false},
		{"not_executable", []string{notExec}, false},
		{"directory", []string{dir}, false},
		{"nul_byte", []string{good, "a\x00b"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.argv)
			if (err == nil) != tc.ok {
				t.Errorf("Check(%q) = %v, want ok=%v", tc.argv, err, tc.ok)
			}
		})
	}
}
