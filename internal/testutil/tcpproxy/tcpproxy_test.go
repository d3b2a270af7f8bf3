package tcpproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer echoes lines and reports each connection's end on ended.
func echoServer(t *testing.T) (addr string, ended <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{}, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
				ch <- struct{}{}
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return ln.Addr().String(), ch
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, msg string) error {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != msg+"\n" {
		t.Fatalf("echo %q, want %q", got, msg)
	}
	return nil
}

func waitEnded(t *testing.T, ended <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatalf("server side did not see the connection end (%s)", what)
	}
}

func TestForwardAndCut(t *testing.T) {
	addr, ended := echoServer(t)
	p := Start(t, addr)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if err := roundTrip(t, c, r, "hello"); err != nil {
		t.Fatal(err)
	}
	if n := p.Cut(); n != 1 {
		t.Fatalf("Cut cut %d links, want 1", n)
	}
	waitEnded(t, ended, "cut")
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := r.ReadString('\n'); err == nil || errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("client read after cut: %v, want an error", err)
	}
	// New connections still work.
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := roundTrip(t, c2, bufio.NewReader(c2), "again"); err != nil {
		t.Fatal(err)
	}
}

func TestDown(t *testing.T) {
	addr, _ := echoServer(t)
	p := Start(t, addr)
	p.SetDown(true)
	// The reset may arrive during connect or on the first read.
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		if err := roundTrip(t, c, bufio.NewReader(c), "x"); err == nil {
			t.Fatal("round trip through a down proxy succeeded")
		}
		c.Close()
	}
	p.SetDown(false)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(t, c, bufio.NewReader(c), "up"); err != nil {
		t.Fatal(err)
	}
}

func TestFreeze(t *testing.T) {
	addr, ended := echoServer(t)
	p := Start(t, addr)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	if err := roundTrip(t, c, r, "before"); err != nil {
		t.Fatal(err)
	}
	if n := p.Freeze(); n != 1 {
		t.Fatalf("Freeze froze %d links, want 1", n)
	}
	_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	_, _ = c.Write([]byte("lost\n"))
	var ne net.Error
	if _, err := r.ReadString('\n'); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read through a frozen link: %v, want a timeout", err)
	}
	// The client closes: the server must not learn about it.
	c.Close()
	select {
	case <-ended:
		t.Fatal("server saw the close through a frozen link")
	case <-time.After(300 * time.Millisecond):
	}
	if p.Links() != 1 {
		t.Fatalf("links = %d, want the half-dead pair kept", p.Links())
	}
	p.Cut()
	waitEnded(t, ended, "cut after freeze")
}
