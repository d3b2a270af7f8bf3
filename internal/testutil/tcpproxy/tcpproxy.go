// Package tcpproxy is a loopback TCP proxy for tests that need real network failures
// between a client and a server (e.g. a gateway and its MQTT broker): an abrupt cut
// (both peers see a reset), an outage (new connections refused) and a silent link
// (bytes vanish, sockets stay open, as with a pulled cable or a powered-off box).
package tcpproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dialTimeout bounds the proxy's connection to the target.
const dialTimeout = 2 * time.Second

// Proxy listens on 127.0.0.1 (a free port) and forwards each connection to a target
// address. Methods are safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup // accept loop and link goroutines

	mu     sync.Mutex
	links  map[*link]struct{}
	down   bool
	closed bool
}

// link is one proxied connection pair.
type link struct {
	client, server net.Conn
	frozen         atomic.Bool
	ended          sync.WaitGroup // the two copy directions
}

// Start starts a proxy to target (host:port) and closes it in t.Cleanup.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("tcpproxy: listen: %v", err)
	}
	p := &Proxy{ln: ln, target: target, links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's address, 127.0.0.1:PORT.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL returns "tcp://" + Addr(), for MQTT clients.
func (p *Proxy) URL() string { return "tcp://" + p.Addr() }

// Links returns the number of open connection pairs.
func (p *Proxy) Links() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Cut closes every open connection pair abruptly (TCP reset on both sides, no goodbye
// from either peer) and returns how many it cut. New connections are still forwarded.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	ls := make([]*link, 0, len(p.links))
	for l := range p.links {
		ls = append(ls, l)
	}
	p.mu.Unlock()
	for _, l := range ls {
		l.reset()
	}
	return len(ls)
}

// SetDown(true) starts an outage: it cuts every open pair and, until SetDown(false),
// resets each new connection as soon as it is accepted (the target looks unreachable).
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
	if down {
		p.Cut()
	}
}

// Freeze makes every open pair silent: bytes from either side are read and dropped,
// and neither side learns when the other closes; the pair is closed only once both
// peers closed their ends (or on Cut/Close). New connections are forwarded normally.
// It returns how many pairs it froze.
func (p *Proxy) Freeze() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		l.frozen.Store(true)
	}
	return len(p.links)
}

// Close stops accepting, cuts every pair and waits for the proxy's goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		down, closed := p.down, p.closed
		p.mu.Unlock()
		if down || closed {
			resetConn(c)
			continue
		}
		s, err := net.DialTimeout("tcp", p.target, dialTimeout)
		if err != nil {
			resetConn(c)
			continue
		}
		l := &link{client: c, server: s}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			l.reset()
			continue
		}
		p.links[l] = struct{}{}
		l.ended.Add(2)
		p.wg.Add(3)
		p.mu.Unlock()
		go l.pipe(&p.wg, s, c)
		go l.pipe(&p.wg, c, s)
		go func() { // forget the pair once both directions ended
			defer p.wg.Done()
			l.ended.Wait()
			l.reset()
			p.mu.Lock()
			delete(p.links, l)
			p.mu.Unlock()
		}()
	}
}

// pipe copies src to dst until src fails. While the link is frozen, data is dropped;
// when it is not frozen, the end of src ends dst too (so the peer sees the close).
func (l *link) pipe(wg *sync.WaitGroup, dst, src net.Conn) {
	defer wg.Done()
	defer l.ended.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !l.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			if l.frozen.Load() {
				return // a dead link carries no FIN or RST
			}
			if errors.Is(err, io.EOF) {
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite() // pass the orderly close on
				}
				return
			}
			l.reset()
			return
		}
	}
}

// reset closes both sides with a TCP reset.
func (l *link) reset() {
	resetConn(l.client)
	resetConn(l.server)
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // RST instead of FIN
	}
	_ = c.Close()
}
