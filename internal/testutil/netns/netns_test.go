package netns

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines, in the parent and in the re-executed helpers.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// helperEnv selects the helper role of a re-executed test binary.
const helperEnv = "RC_NETNS_TEST_HELPER"

// group is an administratively scoped multicast group (RFC 2365) for the self-test.
const group = "239.255.77.1:5400"

func hostLinks(t *testing.T) []string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	slices.Sort(names)
	return names
}

func netnsList(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(findIP(), "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	return string(out)
}

// TestPairSetupAndCleanup checks the addresses and links inside both namespaces, that
// the host's links are untouched, and that the namespaces are gone after cleanup.
func TestPairSetupAndCleanup(t *testing.T) {
	before := hostLinks(t)
	var p *Pair
	t.Run("pair", func(t *testing.T) {
		p = NewPair(t)
		if got := hostLinks(t); !slices.Equal(got, before) {
			t.Errorf("host links changed: %v → %v", before, got)
		}
		for _, s := range []Side{p.A, p.B} {
			if !strings.Contains(netnsList(t), s.NS) {
				t.Errorf("namespace %s not listed", s.NS)
			}
			out, err := p.Exec(t, s.Name, "ip", "-o", "addr", "show").CombinedOutput()
			if err != nil {
				t.Fatalf("ip addr in %s: %v: %s", s.NS, err, out)
			}
			var addrs []string
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				f := strings.Fields(l)
				if len(f) >= 4 {
					addrs = append(addrs, f[1]+" "+f[3])
				}
			}
			slices.Sort(addrs)
			want := []string{s.Link + " " + s.Addr.String(), "lo 127.0.0.1/8", "lo ::1/128"}
			slices.Sort(want)
			if !slices.Equal(addrs, want) {
				t.Errorf("%s: addresses %q, want %q", s.NS, addrs, want)
			}
			link, err := p.Exec(t, s.Name, "ip", "-o", "link", "show", "dev", s.Link).CombinedOutput()
			if err != nil || !strings.Contains(string(link), "MULTICAST") || !strings.Contains(string(link), "LOWER_UP") {
				t.Errorf("%s: link %s: %v: %s", s.NS, s.Link, err, link)
			}
		}
	})
	if p == nil {
		return
	}
	list := netnsList(t)
	for _, s := range []Side{p.A, p.B} {
		if strings.Contains(list, s.NS) {
			t.Errorf("namespace %s still listed after cleanup:\n%s", s.NS, list)
		}
	}
	if got := hostLinks(t); !slices.Equal(got, before) {
		t.Errorf("host links after cleanup: %v, before: %v", got, before)
	}
}

// TestMulticastBetweenNamespaces runs a receiver helper in B and a sender helper in A
// and checks that a multicast datagram from 192.0.2.1 arrives.
func TestMulticastBetweenNamespaces(t *testing.T) {
	p := NewPair(t)
	recv := Start(t, p.RunTest(t, "b", "TestHelperMulticast", helperEnv+"=recv"))
	recv.WaitLine(t, "READY", 30*time.Second)
	send := Start(t, p.RunTest(t, "a", "TestHelperMulticast", helperEnv+"=send"))
	got := recv.WaitLine(t, "GOT ", 30*time.Second)
	if want := "GOT hello-from-a FROM 192.0.2.1"; got.Text != want {
		t.Errorf("receiver printed %q, want %q", got.Text, want)
	}
	t.Logf("first datagram %v after the sender started", got.At.Sub(send.Started))
	for _, c := range []*Proc{send, recv} {
		if err := c.Wait(); err != nil {
			t.Errorf("helper %s: %v\n%s", c.Cmd, err, c.Stderr())
		}
	}
}

// TestHelperMulticast is not a test of its own: TestMulticastBetweenNamespaces runs it
// inside a namespace as the receiver ("recv") or the sender ("send").
func TestHelperMulticast(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "recv":
		ifi, err := net.InterfaceByName(LinkB)
		if err != nil {
			t.Fatal(err)
		}
		gaddr, err := net.ResolveUDPAddr("udp4", group)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.ListenMulticastUDP("udp4", ifi, gaddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Println("READY")
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 1500)
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("GOT %s FROM %s\n", buf[:n], from.IP)
		_, _ = io.Copy(io.Discard, os.Stdin)
	case "send":
		gaddr, err := net.ResolveUDPAddr("udp4", group)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.DialUDP("udp4", nil, gaddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		stdinClosed := make(chan struct{})
		go func() { // ends at stdin EOF; waited for below
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(stdinClosed)
		}()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if _, err := c.Write([]byte("hello-from-a")); err != nil {
				t.Errorf("send: %v", err)
			}
			select {
			case <-tick.C:
			case <-stdinClosed:
				return
			}
		}
	default:
		t.Skip("helper process for TestMulticastBetweenNamespaces")
	}
}

// TestSideAndExec checks Side lookup and the command Exec builds.
func TestSideAndExec(t *testing.T) {
	p := &Pair{A: Side{Name: "a", NS: "ns-a"}, B: Side{Name: "b", NS: "ns-b"}, ip: "/sbin/ip"}
	if p.Side(t, "B").NS != "ns-b" {
		t.Error("Side(B)")
	}
	cmd := p.Exec(t, "a", "echo", "x y")
	if want := []string{"/sbin/ip", "netns", "exec", "ns-a", "echo", "x y"}; !slices.Equal(cmd.Args, want) {
		t.Errorf("Exec args %q, want %q", cmd.Args, want)
	}
	cmd = p.RunTest(t, "b", "TestFoo", "K=v")
	if n := len(cmd.Args); n < 2 || cmd.Args[n-2] != "-test.run=^TestFoo$" || cmd.Args[n-1] != "-test.count=1" {
		t.Errorf("RunTest args %q", cmd.Args)
	}
	if cmd.Env[len(cmd.Env)-1] != "K=v" {
		t.Errorf("RunTest env ends with %q", cmd.Env[len(cmd.Env)-1])
	}
}
