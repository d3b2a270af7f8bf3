package httpapi

import (
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// ConnMemory is the memory budget of one open HTTP connection in bytes: its serving
// goroutine's stack (up to 32 KiB on the handlers' paths), net/http's 4 KiB read and
// 4 KiB write buffers, and the request and response state. TestConnMemory measures it.
const ConnMemory = 64 << 10

// FloodMemory is the most memory in bytes that clients can make the API hold with the
// default limits, not counting snapshots being written: DefaultMaxConnections
// connections of ConnMemory, and DefaultMaxEventStreams streams with a full queue of
// DefaultQueue events (EventSize each). About 23 MiB. A stream also holds the catalog's
// JSON while it writes a snapshot.
const FloodMemory = DefaultMaxConnections*ConnMemory + DefaultMaxEventStreams*DefaultQueue*EventSize

// releaseEvery is the least time between two returns of memory to the operating system
// (debug.FreeOSMemory) by a Listener.
const releaseEvery = 5 * time.Second

// NewServer returns an *http.Server that serves New(o) with o's timeouts and header cap
// (ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout, MaxHeaderBytes; zero
// fields take the package defaults), and ln wrapped in a Listener that caps the
// connections open at once at o.MaxConnections. Serve with srv.Serve(l); srv.Shutdown
// or l.Close closes ln. The server's ConnState is the Listener's: do not replace it;
// the caller may set BaseContext, ErrorLog and the like before serving. It panics if
// o.Catalog is nil.
func NewServer(o Options, ln net.Listener) (*http.Server, *Listener) {
	o = o.withDefaults()
	l := newListener(ln, o.MaxConnections, releaseEvery, debug.FreeOSMemory)
	return httpServer(o, l), l
}

// httpServer is the *http.Server of NewServer for o (defaults applied) and l.
func httpServer(o Options, l *Listener) *http.Server {
	return &http.Server{
		Handler:           New(o),
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout:       o.ReadTimeout,
		WriteTimeout:      o.WriteTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ConnState:         l.connState,
	}
}

// Listener is a net.Listener that caps the HTTP connections open at once; NewServer
// makes one. At the cap, a new connection takes the place of the open connection that
// has waited longest for a request header — one that has not finished its first header
// yet (http.StateNew: a slowloris) or an idle keep-alive connection (http.StateIdle) —
// which is closed. If every open connection is busy with a request (http.StateActive:
// event streams, responses being written) the new one is answered 503 Service
// Unavailable with Retry-After (StreamRetryAfter) and closed at once (best effort: if
// its request is already in, the close may reset the connection before the client
// reads the answer).
//
// Why not block Accept at the cap (golang.org/x/net/netutil.LimitListener): slowloris
// connections holding every slot would leave real clients waiting in the kernel's
// backlog until a header timeout frees a slot, which the attacker's next connection
// may take. Why not refuse every new connection at the cap: the same attacker would
// keep real clients out for as long as it keeps its connections open. Evicting the
// longest-waiting connection that has no request in progress costs a real client
// nothing unless it is slower to send its header than all the attacker's connections;
// busy connections are never evicted, and are bounded by other means (the event-stream
// cap, the write deadlines).
//
// When a flood ends — open connections fall to MaxConnections/16 or fewer after
// reaching MaxConnections/2 — the Listener returns the memory freed to the operating
// system (runtime/debug.FreeOSMemory) at once, or, when it did so less than 5 s ago,
// 5 s after that time. The Go runtime would otherwise hold it: no garbage collection
// runs until the heap grows again, and the background scavenger returns pages slowly.
//
// A Listener is safe for concurrent use.
type Listener struct {
	net.Listener
	max          int           // connections open at once
	high, low    int           // flood marks: release when open falls from ≥ high to ≤ low
	releaseEvery time.Duration // least time between two releases
	free         func()        // returns memory to the OS: debug.FreeOSMemory

	mu       sync.Mutex
	conns    map[*conn]struct{} // accepted, not closed
	flooded  bool               // open reached high since the last release
	lastFree time.Time          // last release
	timer    *time.Timer        // a release deferred by releaseEvery; nil if none
	closed   bool

	refused, evicted, releases atomic.Uint64
}

// conn is a connection of a Listener; its state and since are guarded by the
// Listener's mu.
type conn struct {
	net.Conn
	l     *Listener
	state http.ConnState // last state net/http reported; http.StateNew until then
	since time.Time      // when it entered state
}

func newListener(ln net.Listener, limit int, every time.Duration, free func()) *Listener {
	return &Listener{Listener: ln, max: limit, high: max(limit/2, 1), low: limit / 16, releaseEvery: every, free: free,
		conns: map[*conn]struct{}{}}
}

// Accept returns the next connection admitted under the cap (see Listener); it
// refuses or evicts connections as it goes. Its errors are those of the wrapped
// listener's Accept.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := &conn{Conn: nc, l: l, state: http.StateNew, since: time.Now()}
		victim, ok := l.admit(c)
		if victim != nil {
			l.evicted.Add(1)
			_ = victim.Close()
		}
		if ok {
			return c, nil
		}
		l.refused.Add(1)
		refuse(nc)
	}
}

// admit adds c to the open connections if there is room, making room by taking out
// the longest-waiting connection in StateNew or StateIdle (returned: the caller closes
// it); ok is false when every open connection is busy.
func (l *Listener) admit(c *conn) (victim *conn, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) >= l.max {
		for o := range l.conns {
			if (o.state == http.StateNew || o.state == http.StateIdle) && (victim == nil || o.since.Before(victim.since)) {
				victim = o
			}
		}
		if victim == nil {
			return nil, false
		}
		delete(l.conns, victim)
	}
	l.conns[c] = struct{}{}
	if len(l.conns) >= l.high {
		l.flooded = true
	}
	return victim, true
}

// refuse answers a connection beyond the cap 503 and closes it.
func refuse(nc net.Conn) {
	body := fmt.Sprintf(`{"error":"too many connections; retry in %s s"}`+"\n", retryAfter())
	_ = nc.SetWriteDeadline(time.Now().Add(time.Second)) // a new socket's buffer is empty: no wait
	_, _ = fmt.Fprintf(nc, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"+
		"Cache-Control: no-store\r\nRetry-After: %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		retryAfter(), len(body), body)
	_ = nc.Close()
}

// connState is the http.Server's ConnState hook: it records each connection's state
// for admit.
func (l *Listener) connState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*conn)
	if !ok {
		return
	}
	l.mu.Lock()
	c.state, c.since = st, time.Now()
	l.mu.Unlock()
}

// remove takes c out of the open connections (no-op if it was already) and, if that
// ends a flood, releases memory (see Listener).
func (l *Listener) remove(c *conn) {
	l.mu.Lock()
	if _, ok := l.conns[c]; !ok {
		l.mu.Unlock()
		return
	}
	delete(l.conns, c)
	release := false
	if l.flooded && len(l.conns) <= l.low && !l.closed {
		l.flooded = false
		if wait := time.Until(l.lastFree.Add(l.releaseEvery)); wait <= 0 {
			l.lastFree, release = time.Now(), true
		} else if l.timer == nil {
			l.timer = time.AfterFunc(wait, l.releaseLater)
		}
	}
	l.mu.Unlock()
	if release {
		l.release()
	}
}

// releaseLater is a release deferred by releaseEvery.
func (l *Listener) releaseLater() {
	l.mu.Lock()
	l.timer = nil
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.lastFree = time.Now()
	l.mu.Unlock()
	l.release()
}

func (l *Listener) release() {
	l.free()
	l.releases.Add(1)
}

// Close closes the wrapped listener (Accept returns its error from then on) and
// cancels a deferred memory release. Open connections stay open: http.Server.Shutdown
// or Close closes them.
func (l *Listener) Close() error {
	l.mu.Lock()
	l.closed = true
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.mu.Unlock()
	return l.Listener.Close()
}

// Open is the number of connections open now (at most MaxConnections).
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Refused is the number of connections answered 503 and closed at the cap because
// every open connection was busy.
func (l *Listener) Refused() uint64 { return l.refused.Load() }

// Evicted is the number of connections closed at the cap to make room for a new one.
func (l *Listener) Evicted() uint64 { return l.evicted.Load() }

// Releases is the number of times memory was returned to the operating system after
// a flood.
func (l *Listener) Releases() uint64 { return l.releases.Load() }

// Close closes the connection and takes it out of its Listener's count.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.l.remove(c)
	return err
}

// CloseWrite shuts down the writing side of a TCP connection (net/http uses it before
// closing a connection after an error response).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
