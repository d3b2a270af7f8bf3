//go:build linux

package modbus

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The lock tests run on real pseudo-terminals (openPTY, rtu_test.go), with holders in
// this process, in a child process running OpenRTU (this test binary re-executed), and
// in flock(1).

// holdBusEnv names the device TestLockHolderProcess opens when this test binary is
// re-executed as a holder.
const holdBusEnv = "ROLLCALL_TEST_HOLD_BUS"

// checkBusInUse checks that err is a refusal of device (resolved to path) naming holder pid,
// and returns it.
func checkBusInUse(t *testing.T, err error, device, path string, pid int) *BusInUseError {
	t.Helper()
	if !errors.Is(err, ErrBusInUse) {
		t.Fatalf("OpenRTU(%s) with the bus held by pid %d: err = %v, want ErrBusInUse", device, pid, err)
	}
	var bu *BusInUseError
	if !errors.As(err, &bu) {
		t.Fatalf("err %T is not a *BusInUseError: %v", err, err)
	}
	msg := err.Error()
	wantName := "modbus: open " + device + ": "
	if device != path {
		wantName = "modbus: open " + device + " (" + path + "): "
	}
	if !strings.HasPrefix(msg, wantName) || !strings.HasSuffix(msg, ": one master per bus") {
		t.Errorf("message %q: want it to start %q and end with the rule", msg, wantName)
	}
	if !strings.Contains(msg, fmt.Sprintf("serial device in use by pid %d (", pid)) {
		t.Errorf("message %q does not name holder pid %d", msg, pid)
	}
	if !slices.ContainsFunc(bu.Holders, func(h BusHolder) bool { return h.PID == pid }) {
		t.Errorf("holders %+v, want pid %d among them", bu.Holders, pid)
	}
	return bu
}

// TestBusLockSameProcess: a second OpenRTU of a held device, by its path or a symlink to
// it, fails at once with ErrBusInUse naming this process; the first master keeps
// working; after its Close the device opens again and works.
func TestBusLockSameProcess(t *testing.T) {
	p := openPTY(t)
	link := filepath.Join(t.TempDir(), "bus1")
	if err := os.Symlink(p.path, link); err != nil {
		t.Fatal(err)
	}
	first, _ := newBusOn(t, p, testConfig(""), statusHandler)
	self := os.Getpid()
	for _, dev := range []string{p.path, link} {
		start := time.Now()
		second, err := OpenRTU(testConfig(dev))
		el := time.Since(start)
		if err == nil {
			second.Close()
		}
		bu := checkBusInUse(t, err, dev, p.path, self)
		msg := err.Error()
		if !strings.Contains(msg, fmt.Sprintf("pid %d (this process: ", self)) || !strings.Contains(msg, filepath.Base(os.Args[0])) {
			t.Errorf("message %q: want this process and its command (%s)", msg, os.Args[0])
		}
		if len(bu.Holders) != 1 {
			t.Errorf("holders %+v, want this process alone", bu.Holders)
		}
		t.Logf("refused in %v (cause: %v): %v", el, errors.Unwrap(err), err)
	}
	if _, err := first.ReadRegisters(context.Background(), 1, FuncReadHoldingRegisters, 0, 2); err != nil {
		t.Fatalf("first master after the refused opens: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	again, err := OpenRTU(testConfig(link))
	if err != nil {
		t.Fatalf("OpenRTU(%s) after the holder closed: %v", link, err)
	}
	defer again.Close()
	if _, err := again.ReadRegisters(context.Background(), 1, FuncReadHoldingRegisters, 0, 2); err != nil {
		t.Fatalf("reopened master: %v", err)
	}
}

// TestBusLockHeldAndReleased: while an RTU is open its device is flock'ed (an
// independent LOCK_EX|LOCK_NB fails); Close releases it; an OpenRTU that fails after
// taking the lock (a file that is not a terminal) releases it too.
func TestBusLockHeldAndReleased(t *testing.T) {
	p := openPTY(t)
	tryLock := func(path string) error {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	}
	rtu, err := OpenRTU(testConfig(p.path))
	if err != nil {
		t.Fatal(err)
	}
	if err := tryLock(p.path); err != unix.EWOULDBLOCK && err != unix.EBUSY {
		t.Errorf("flock of %s while the RTU is open: %v, want EWOULDBLOCK (or EBUSY: TIOCEXCL, unprivileged)", p.path, err)
	}
	if err := rtu.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tryLock(p.path); err != nil {
		t.Errorf("flock of %s after Close: %v", p.path, err)
	}

	file := filepath.Join(t.TempDir(), "not-a-tty")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenRTU(testConfig(file)); err == nil || errors.Is(err, ErrBusInUse) || !strings.Contains(err.Error(), file) {
		t.Fatalf("OpenRTU of a regular file: err = %v, want a port error naming %s", err, file)
	}
	if err := tryLock(file); err != nil {
		t.Errorf("flock of %s after the failed OpenRTU: %v (lock not released)", file, err)
	}
}

// TestLockHolderProcess is not a test of its own: run with holdBusEnv set (by
// startHolder) it opens that device with OpenRTU, says "locked" on stdout and holds the
// bus until its stdin ends.
func TestLockHolderProcess(t *testing.T) {
	dev := os.Getenv(holdBusEnv)
	if dev == "" {
		t.Skip("helper process for TestBusLockOtherProcess")
	}
	rtu, err := OpenRTU(testConfig(dev))
	if err != nil {
		t.Fatalf("holder: %v", err)
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := rtu.Close(); err != nil {
		t.Fatalf("holder: close: %v", err)
	}
}

// startHolder starts cmd, waits until it prints "locked" on stdout, and stops it (ends
// its stdin, waits) when the test ends.
func startHolder(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := func() error {
		stdin.Close()
		return cmd.Wait()
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if sc.Text() == "locked" {
			t.Cleanup(func() {
				if err := stop(); err != nil {
					t.Errorf("holder %v: %v\n%s", cmd.Args, err, stderr.String())
				}
			})
			return
		}
	}
	err = stop()
	t.Fatalf("holder %v ended without taking the lock (%v): %s", cmd.Args, err, stderr.String())
}

// TestBusLockOtherProcess: a master in another process (this test binary re-executed,
// running OpenRTU) holds the device; OpenRTU here fails naming that process's pid and
// command line. Unprivileged, the refusal comes from the child's TIOCEXCL (EBUSY) and
// the holder from the child's flock; as root, from the flock itself.
func TestBusLockOtherProcess(t *testing.T) {
	p := openPTY(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHolderProcess$")
	cmd.Env = append(os.Environ(), holdBusEnv+"="+p.path)
	startHolder(t, cmd)

	start := time.Now()
	rtu, err := OpenRTU(testConfig(p.path))
	el := time.Since(start)
	if err == nil {
		rtu.Close()
	}
	bu := checkBusInUse(t, err, p.path, p.path, cmd.Process.Pid)
	if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("pid %d (%s -test.run=^TestLockHolderProcess$)", cmd.Process.Pid, os.Args[0])) ||
		strings.Contains(msg, "this process") {
		t.Errorf("message %q: want the child's pid %d and command line", msg, cmd.Process.Pid)
	}
	if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EBUSY) {
		t.Errorf("err %v wraps neither EWOULDBLOCK nor EBUSY", err)
	}
	t.Logf("refused in %v (holders %+v): %v", el, bu.Holders, err)
}

// TestBusLockFlockTool: flock(1) holding the device (an operator reserving a bus, or
// any other program using flock) keeps OpenRTU off it, and is named.
func TestBusLockFlockTool(t *testing.T) {
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("flock(1) (util-linux) not installed")
	}
	p := openPTY(t)
	cmd := exec.Command(flock, p.path, "sh", "-c", "echo locked; exec cat")
	startHolder(t, cmd)
	_, err = OpenRTU(testConfig(p.path))
	checkBusInUse(t, err, p.path, p.path, cmd.Process.Pid)
	if want := fmt.Sprintf(`(%s %s sh -c "echo locked; exec cat")`, flock, p.path); !strings.Contains(err.Error(), want) {
		t.Errorf("message %q: want the command %s", err, want)
	}
}

// TestBusInUseExclusiveOpen: a process that opened the device with exclusive access
// (TIOCEXCL) but took no lock (as a program using go.bug.st/serial without OpenRTU
// does) makes an unprivileged OpenRTU fail with EBUSY; the holder is then found among
// the processes with the device open (here this one, which holds the pty's slave).
// Root opens a TIOCEXCL terminal anyway, so the test needs an ordinary user.
func TestBusInUseExclusiveOpen(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root (CAP_SYS_ADMIN) is not stopped by TIOCEXCL; run the test binary as an ordinary user")
	}
	p := openPTY(t)
	excl := func(req uint) {
		rc, err := p.slave.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var ierr error
		if err := rc.Control(func(fd uintptr) { ierr = unix.IoctlSetInt(int(fd), req, 0) }); err != nil || ierr != nil {
			t.Fatalf("ioctl 0x%X on %s: %v %v", req, p.path, err, ierr)
		}
	}
	excl(unix.TIOCEXCL)
	defer excl(unix.TIOCNXCL)
	start := time.Now()
	rtu, err := OpenRTU(testConfig(p.path))
	el := time.Since(start)
	if err == nil {
		rtu.Close()
	}
	checkBusInUse(t, err, p.path, p.path, os.Getpid())
	if !errors.Is(err, unix.EBUSY) {
		t.Errorf("err %v does not wrap EBUSY", err)
	}
	t.Logf("refused in %v (cause: %v): %v", el, errors.Unwrap(err), err)
}

func TestLockHoldersParse(t *testing.T) {
	const locks = `1: FLOCK  ADVISORY  WRITE 4242 00:1a:91 0 EOF
1: -> FLOCK  ADVISORY  WRITE 4343 00:1a:91 0 EOF
2: POSIX  ADVISORY  WRITE 77 fd:01:91 0 EOF
3: OFDLCK ADVISORY  READ  -1 00:1a:91 0 EOF
4: FLOCK  ADVISORY  WRITE 4242 00:1a:91 0 EOF
5: FLOCK  ADVISORY  WRITE 17 00:1a:92 0 EOF
6: POSIX  ADVISORY  WRITE 99 00:1a:91 0 EOF
7: LEASE  ACTIVE    READ 5 <none>:0 0 EOF
8: FLOCK  ADVISORY  WRITE 0 00:1a:91 0 EOF
`
	if got := lockHolders([]byte(locks), 0, 0x1a, 91); !slices.Equal(got, []int{99, 4242}) {
		t.Errorf("holders of 00:1a:91 = %v, want [99 4242] (no waiter, no OFD -1, no pid 0, once each)", got)
	}
	if got := lockHolders([]byte(locks), 253, 1, 91); !slices.Equal(got, []int{77}) {
		t.Errorf("holders of fd:01:91 (253:1, hex) = %v, want [77]", got)
	}
	if got := lockHolders([]byte(locks), 0, 0x1a, 93); got != nil {
		t.Errorf("holders of an unlocked inode = %v", got)
	}
}

func TestBusInUseMessage(t *testing.T) {
	e := &BusInUseError{Device: "/dev/ttyUSB0", Path: "/dev/ttyUSB0", Err: unix.EBUSY}
	if got, want := e.Error(), "modbus: open /dev/ttyUSB0: serial device in use, holder unknown: one master per bus"; got != want {
		t.Errorf("no holder: %q, want %q", got, want)
	}
	e = &BusInUseError{Device: "/dev/serial/by-id/x", Path: "/dev/ttyUSB0", Err: unix.EWOULDBLOCK, Holders: []BusHolder{
		{PID: 4242, Command: formatCommand([]byte("rollcall\x00gateway\x00--config\x00/etc/rollcall/my gw.yaml\x00"))},
		{PID: 1}}}
	want := `modbus: open /dev/serial/by-id/x (/dev/ttyUSB0): serial device in use by pid 4242 (rollcall gateway --config "/etc/rollcall/my gw.yaml"), pid 1 (command unknown): one master per bus`
	if got := e.Error(); got != want {
		t.Errorf("two holders:\n got %q\nwant %q", got, want)
	}
	if !errors.Is(e, ErrBusInUse) || !errors.Is(e, unix.EWOULDBLOCK) {
		t.Errorf("%v does not match ErrBusInUse and EWOULDBLOCK", e)
	}
	if long := formatCommand([]byte(strings.Repeat("x", 1000))); len(long) > maxCommand+len("…") {
		t.Errorf("command of %d bytes not cut at %d", len(long), maxCommand)
	}
}

// BenchmarkOpenRTUBusInUse is the time OpenRTU takes to refuse a held device and name
// its holder (this process).
func BenchmarkOpenRTUBusInUse(b *testing.B) {
	p := openPTY(b)
	first, err := OpenRTU(testConfig(p.path))
	if err != nil {
		b.Fatal(err)
	}
	defer first.Close()
	for b.Loop() {
		if _, err := OpenRTU(testConfig(p.path)); !errors.Is(err, ErrBusInUse) {
			b.Fatalf("err = %v", err)
		}
	}
}
