// Package netns gives tests real multicast between two Linux network namespaces joined
// by a veth pair, so that mDNS (RFC 6762) and other link-local multicast can be tested
// end to end without a single packet leaving the machine (docs/design.md, "Real
// components in tests and deployment").
//
// # The pair
//
// NewPair creates two namespaces, "rc-<pid>-<random>-a" and "…-b", and a veth pair whose
// ends are created directly inside them (the host namespace never sees either end):
//
//	namespace A: lo up, link "rc-a" 192.0.2.1/24, multicast on, route 224.0.0.0/4 dev rc-a
//	namespace B: lo up, link "rc-b" 192.0.2.2/24, multicast on, route 224.0.0.0/4 dev rc-b
//
// The addresses are from TEST-NET-1 (RFC 5737) and exist only inside the two
// namespaces; IPv6 address generation is off on the veth ends (addrgenmode none), so
// they carry no link-local IPv6 address either. Everything is deleted in t.Cleanup.
// NewPair needs root and iproute2's ip: without them the test is skipped, or failed when
// the environment variable CI is "true".
//
// # Running code inside a namespace
//
// A network namespace belongs to a thread, not to a process, and the Go runtime moves
// goroutines between threads freely, so a test cannot "enter" a namespace itself.
// Instead it runs a child process there with "ip netns exec": Exec builds such a command
// for any program, and RunTest builds one that re-executes the current test binary to
// run a single helper test inside the namespace. The helper pattern:
//
//	const helperEnv = "MYPKG_NETNS_HELPER"
//
//	// TestHelperListen is not a test of its own: TestMulticast runs it inside a namespace.
//	func TestHelperListen(t *testing.T) {
//		if os.Getenv(helperEnv) != "listen" {
//			t.Skip("helper process for TestMulticast")
//		}
//		// ... open sockets, print protocol lines to os.Stdout, e.g. "READY" ...
//		_, _ = io.Copy(io.Discard, os.Stdin) // stay up until the parent closes stdin
//	}
//
//	func TestMulticast(t *testing.T) {
//		p := netns.NewPair(t)
//		child := netns.Start(t, p.RunTest(t, "b", "TestHelperListen", helperEnv+"=listen"))
//		child.WaitLine(t, "READY", 10*time.Second)
//		// ... start the other side in "a", read child lines, assert ...
//		if err := child.Wait(); err != nil { // closes stdin, waits for the exit
//			t.Fatalf("helper: %v\n%s", err, child.Stderr())
//		}
//	}
//
// Helpers should end when their stdin reaches EOF, so that they also end if the parent
// dies. The child runs without -test.v: its stdout carries only what the helper prints,
// followed by the test framework's "PASS" (or the failure report), so parents should
// look for lines with a prefix of their own. A helper's own goleak.VerifyTestMain runs
// as usual in the child.
package netns

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/internal/testutil"
)

// Link names and addresses of the two sides; see the package documentation.
const (
	// LinkA and LinkB are the names of the veth ends inside namespaces A and B.
	LinkA = "rc-a"
	LinkB = "rc-b"
	// PrefixA and PrefixB are the addresses of the veth ends with their prefix length
	// (TEST-NET-1, RFC 5737); they exist only inside the two namespaces.
	PrefixA = "192.0.2.1/24"
	PrefixB = "192.0.2.2/24"
)

// LinkUpTimeout bounds how long NewPair waits for both veth ends to report carrier.
const LinkUpTimeout = 10 * time.Second

// StopTimeout is how long Proc.Wait waits for a child to exit after closing its stdin
// before it kills the child.
const StopTimeout = 10 * time.Second

// Side is one namespace of a Pair.
type Side struct {
	// Name is "a" or "b".
	Name string
	// NS is the namespace name as "ip netns" knows it, e.g. "rc-4711-0a1b2c-a".
	NS string
	// Link is the name of the veth end inside NS (LinkA or LinkB).
	Link string
	// Addr is Link's address and prefix length (PrefixA or PrefixB).
	Addr netip.Prefix
}

// Pair is two network namespaces joined by a veth pair; see the package documentation.
type Pair struct {
	// A and B are the two sides.
	A, B Side

	ip string // path of the ip binary
}

// NewPair creates the two namespaces and the veth pair, brings everything up, waits until
// both veth ends have carrier (at most LinkUpTimeout), and registers their deletion
// with t.Cleanup. It skips the test when not running as root or when ip is missing,
// and when a namespace cannot be created (e.g. no CAP_SYS_ADMIN in a container); with
// CI=true each of these fails the test instead. Any later setup error fails the test.
func NewPair(t testing.TB) *Pair {
	t.Helper()
	ip := findIP()
	switch {
	case os.Geteuid() != 0:
		skipOrFatal(t, "netns: network namespaces need root")
	case ip == "":
		skipOrFatal(t, "netns: ip (iproute2) not found in PATH, /usr/sbin or /sbin (apt-get install -y iproute2)")
	}
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatalf("netns: random namespace name: %v", err)
	}
	base := fmt.Sprintf("rc-%d-%s", os.Getpid(), hex.EncodeToString(rnd[:]))
	p := &Pair{
		A:  Side{Name: "a", NS: base + "-a", Link: LinkA, Addr: netip.MustParsePrefix(PrefixA)},
		B:  Side{Name: "b", NS: base + "-b", Link: LinkB, Addr: netip.MustParsePrefix(PrefixB)},
		ip: ip,
	}
	for _, s := range []Side{p.A, p.B} {
		if out, err := p.run("netns", "add", s.NS); err != nil {
			skipOrFatal(t, fmt.Sprintf("netns: ip netns add %s: %v: %s", s.NS, err, out))
		}
		t.Cleanup(func() {
			if out, err := p.run("netns", "del", s.NS); err != nil {
				t.Errorf("netns: ip netns del %s: %v: %s", s.NS, err, out)
			}
		})
	}
	// Both ends are created inside their namespaces: nothing appears in the host's.
	p.must(t, "link", "add", p.A.Link, "netns", p.A.NS, "type", "veth", "peer", "name", p.B.Link, "netns", p.B.NS)
	for _, s := range []Side{p.A, p.B} {
		p.must(t, "-n", s.NS, "link", "set", "dev", s.Link, "addrgenmode", "none")
		p.must(t, "-n", s.NS, "addr", "add", s.Addr.String(), "dev", s.Link)
		p.must(t, "-n", s.NS, "link", "set", "dev", s.Link, "multicast", "on", "up")
		p.must(t, "-n", s.NS, "link", "set", "dev", "lo", "up")
		p.must(t, "-n", s.NS, "route", "add", "224.0.0.0/4", "dev", s.Link)
	}
	p.waitCarrier(t)
	return p
}

// Side returns side "a" or "b" (case-insensitive); anything else fails the test.
func (p *Pair) Side(t testing.TB, side string) Side {
	t.Helper()
	switch strings.ToLower(side) {
	case "a":
		return p.A
	case "b":
		return p.B
	}
	t.Fatalf("netns: side %q: expected \"a\" or \"b\"", side)
	return Side{}
}

// Exec returns a command, not yet started, that runs name with args inside the
// namespace of side ("a" or "b") via "ip netns exec <ns> name args...". Its environment
// is the test's; WaitDelay is 5 s. Start it with Start (which stops it in t.Cleanup) or
// manage it yourself.
func (p *Pair) Exec(t testing.TB, side, name string, args ...string) *exec.Cmd {
	t.Helper()
	s := p.Side(t, side)
	cmd := exec.Command(p.ip, append([]string{"netns", "exec", s.NS, name}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// RunTest returns a command, not yet started, that runs the current test binary inside
// the namespace of side with -test.run '^testName$' (testName is quoted as a regular
// expression) and -test.count=1; env entries ("KEY=value") are appended to the test's
// environment so the helper test knows that it is the helper (see the package
// documentation).
func (p *Pair) RunTest(t testing.TB, side, testName string, env ...string) *exec.Cmd {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		bin = os.Args[0]
	}
	cmd := p.Exec(t, side, bin, "-test.run=^"+regexp.QuoteMeta(testName)+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// waitCarrier polls both veth ends every 10 ms until each is up with carrier.
func (p *Pair) waitCarrier(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(LinkUpTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var last string
		ready := true
		for _, s := range []Side{p.A, p.B} {
			out, err := p.run("-n", s.NS, "-o", "link", "show", "dev", s.Link)
			last = out
			if err != nil || !strings.Contains(out, ",LOWER_UP") || strings.Contains(out, "NO-CARRIER") {
				ready = false
				break
			}
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("netns: veth pair has no carrier after %v: %s", LinkUpTimeout, last)
		}
		<-tick.C
	}
}

// must runs ip with args and fails the test on error.
func (p *Pair) must(t testing.TB, args ...string) {
	t.Helper()
	if out, err := p.run(args...); err != nil {
		t.Fatalf("netns: ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// run runs ip with args and returns its combined output.
func (p *Pair) run(args ...string) (string, error) {
	out, err := exec.Command(p.ip, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// findIP returns the path of iproute2's ip, or "".
func findIP() string {
	if p, err := exec.LookPath("ip"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

func skipOrFatal(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (required when CI=true)")
	}
	t.Skip(msg)
}

// Proc is a started child process with its stdin held open, its stdout delivered line
// by line and its stderr collected; see Start.
type Proc struct {
	// Cmd is the running command.
	Cmd *exec.Cmd
	// Started is when Start started it.
	Started time.Time

	stdin  io.WriteCloser
	lines  chan Line
	stop   chan struct{} // closed by Wait: the reader discards further lines
	exited chan struct{} // closed after cmd.Wait returned
	err    error         // cmd.Wait's result, valid after exited
	stderr testutil.SyncBuffer
	once   sync.Once
}

// Line is one line of a child's stdout, without its newline, and when the parent read
// it.
type Line struct {
	Text string
	At   time.Time
}

// Start starts cmd with a stdin pipe (held open until Wait or CloseStdin), its stdout
// read line by line into Lines, and its stderr collected for Stderr. It registers Wait
// with t.Cleanup (which logs the child's stderr if the test failed) and fails the test
// if the command cannot start. cmd's Stdin, Stdout and Stderr must be nil.
func Start(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{
		Cmd:    cmd,
		lines:  make(chan Line),
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatalf("netns: %s: %v", cmd, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("netns: %s: %v", cmd, err)
	}
	cmd.Stderr = &p.stderr
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("netns: start %s: %v", cmd, err)
	}
	go p.read(stdout) // ends at the child's exit; Wait waits for it
	t.Cleanup(func() {
		err := p.Wait()
		if t.Failed() {
			t.Logf("netns: child %s exited (%v); stderr:\n%s", cmd, err, p.Stderr())
		}
	})
	return p
}

// read delivers stdout lines until EOF (or, after stop, discards them), then waits for
// the process.
func (p *Proc) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		select {
		case p.lines <- Line{Text: sc.Text(), At: time.Now()}:
		case <-p.stop:
		}
	}
	_, _ = io.Copy(io.Discard, stdout) // after a too-long line: keep the child unblocked
	close(p.lines)
	p.err = p.Cmd.Wait()
	close(p.exited)
}

// Lines returns the child's stdout lines; the channel is closed when the child has
// exited. Nothing is buffered: lines not received before Wait are discarded.
func (p *Proc) Lines() <-chan Line { return p.lines }

// WaitLine returns the first line that starts with prefix within timeout, discarding
// the lines before it. It fails the test (with the child's stderr) on timeout or if the
// child exits first.
func (p *Proc) WaitLine(t testing.TB, prefix string, timeout time.Duration) Line {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				<-p.exited
				t.Fatalf("netns: %s exited (%v) before printing %q; stderr:\n%s", p.Cmd, p.err, prefix, p.Stderr())
			}
			if strings.HasPrefix(l.Text, prefix) {
				return l
			}
		case <-timer.C:
			t.Fatalf("netns: no line %q from %s within %v; stderr:\n%s", prefix, p.Cmd, timeout, p.Stderr())
		}
	}
}

// Stdin is the child's standard input, for commands to a helper (one per line).
func (p *Proc) Stdin() io.Writer { return p.stdin }

// CloseStdin closes the child's stdin, which tells a helper to finish.
func (p *Proc) CloseStdin() { _ = p.stdin.Close() }

// Exited is closed once the child has exited and its output has been read.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Wait closes the child's stdin, discards its remaining stdout, waits for it to exit
// (killing it after StopTimeout) and returns the error of exec.Cmd.Wait (an
// *exec.ExitError for a non-zero exit status). It may be called more than once.
func (p *Proc) Wait() error {
	p.once.Do(func() {
		p.CloseStdin()
		close(p.stop)
		timer := time.NewTimer(StopTimeout)
		defer timer.Stop()
		select {
		case <-p.exited:
		case <-timer.C:
			_ = p.Cmd.Process.Kill()
			<-p.exited
		}
	})
	<-p.exited
	return p.err
}

// Stderr returns what the child wrote to stderr so far.
func (p *Proc) Stderr() string { return p.stderr.String() }
