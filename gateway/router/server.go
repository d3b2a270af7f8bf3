package router

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rollcall-edge/rollcall/internal/netx"

	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

// MBAP framing (Modbus Messaging on TCP/IP Implementation Guide V1.0b §3.1.3).
const (
	// mbapHeaderLen is the MBAP header in bytes: transaction identifier (2), protocol
	// identifier (2, 0 for MODBUS), length (2: unit identifier + PDU), unit identifier.
	mbapHeaderLen = 7
	// minMBAPLength and maxMBAPLength bound the length field: unit identifier and a PDU
	// of 1–253 bytes.
	minMBAPLength = 2
	maxMBAPLength = 1 + modbus.MaxPDU
)

// Defaults of Options.
const (
	DefaultMaxConnections       = 32
	DefaultMaxClientConnections = 8
	DefaultMaxInFlight          = 4
	DefaultRequestTimeout       = time.Second
	DefaultIdleTimeout          = 60 * time.Second
	// FrameTimeout bounds the time from a request's first byte to its last: a client
	// that stalls inside a frame is disconnected.
	FrameTimeout = 5 * time.Second
	// WriteTimeout bounds one reply write: a client that does not read is disconnected.
	WriteTimeout = 5 * time.Second
)

// Options configures a Router.
type Options struct {
	// Routes binds virtual unit IDs to selectors; at least one, each unit once.
	Routes []Route
	// Catalog gives the live instances and forwards requests to them. Required.
	Catalog Catalog
	// Observer receives per-route measurements; nil: none.
	Observer Observer
	// MaxConnections caps the client connections open at once; a connection beyond it
	// is closed at once. Default DefaultMaxConnections.
	MaxConnections int
	// MaxClientConnections caps the connections open at once from one client IP
	// address. Default DefaultMaxClientConnections.
	MaxClientConnections int
	// MaxInFlight caps the requests of one connection being answered at once (a client
	// may send several before reading replies, told apart by transaction identifier;
	// Implementation Guide V1.0b §4.2); beyond it the connection is not read until one
	// is answered. Default DefaultMaxInFlight.
	MaxInFlight int
	// RequestTimeout bounds a request from its arrival to its reply, queueing and a
	// retry on another instance included; then the client gets exception 0x0B (or 0x06
	// if it never reached a device). Default DefaultRequestTimeout.
	RequestTimeout time.Duration
	// IdleTimeout closes a connection with no request for this long. Default
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Logger gets connection and refusal lines (Debug) and limits hit (Warn, once per
	// client address and minute at most). nil: slog.Default().
	Logger *slog.Logger
}

// Router is a routing Modbus TCP server. Create it with New; Serve runs it.
type Router struct {
	opts   Options
	log    *slog.Logger
	routes [256]*routeState

	mu      sync.Mutex
	conns   int            // open connections
	perIP   map[string]int // open connections by client IP
	refused atomic.Uint64  // connections refused over a limit
	warned  map[string]time.Time
}

// New checks o and returns a Router. Errors name the option: no Catalog, no route, a
// route with unit 0 or an empty service, a unit routed twice, a negative limit.
func New(o Options) (*Router, error) {
	if o.Catalog == nil {
		return nil, errors.New("router: no catalog")
	}
	if len(o.Routes) == 0 {
		return nil, errors.New("router: no routes")
	}
	def := func(v *int, d int) error {
		if *v < 0 {
			return fmt.Errorf("router: negative limit %d", *v)
		}
		if *v == 0 {
			*v = d
		}
		return nil
	}
	for _, e := range []error{
		def(&o.MaxConnections, DefaultMaxConnections),
		def(&o.MaxClientConnections, DefaultMaxClientConnections),
		def(&o.MaxInFlight, DefaultMaxInFlight),
	} {
		if e != nil {
			return nil, e
		}
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	rt := &Router{opts: o, log: o.Logger, perIP: map[string]int{}, warned: map[string]time.Time{}}
	for _, r := range o.Routes {
		switch {
		case r.Unit == 0:
			return nil, errors.New("router: unit 0 cannot be routed (it is the serial broadcast address)")
		case r.Service == "":
			return nil, fmt.Errorf("router: unit %d: no service", r.Unit)
		case rt.routes[r.Unit] != nil:
			return nil, fmt.Errorf("router: unit %d routed twice", r.Unit)
		}
		rt.routes[r.Unit] = &routeState{Route: r}
	}
	return rt, nil
}

// Routes returns the routes, by unit.
func (rt *Router) Routes() []Route {
	var out []Route
	for _, r := range rt.routes {
		if r != nil {
			out = append(out, r.Route)
		}
	}
	return out
}

// Handle answers one request PDU (function code and data) addressed to virtual unit
// unit and returns the reply PDU: the device's reply byte for byte, or an exception
// (see the package documentation). It blocks for at most RequestTimeout.
func (rt *Router) Handle(ctx context.Context, unit byte, pdu []byte) []byte {
	start := time.Now()
	reply, out, code := rt.handle(ctx, unit, pdu)
	if rt.opts.Observer != nil {
		rt.opts.Observer.Routed(unit, out, code, time.Since(start))
	}
	return reply
}

// Stats are the router's connection counters.
type Stats struct {
	Connections int    // open now
	Refused     uint64 // refused over MaxConnections or MaxClientConnections since New
}

// Stats returns the connection counters.
func (rt *Router) Stats() Stats {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return Stats{Connections: rt.conns, Refused: rt.refused.Load()}
}

// Serve accepts client connections on ln until ctx ends (then it closes ln and every
// connection, waits for their requests to end, and returns nil) or Accept fails with a
// lasting error (returned). Temporary Accept errors (out of file descriptors) are
// retried after a back-off of 5 ms doubling to 1 s.
func (rt *Router) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer ln.Close()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	acc := netx.Acceptor{Listener: ln, OnRetry: func(err error, backoff time.Duration) {
		rt.log.Warn("modbus server: accept failed; retrying", "err", err, "backoff", backoff)
	}}
	for {
		conn, err := acc.Accept(ctx)
		if conn == nil {
			if err != nil {
				return fmt.Errorf("router: accept: %w", err)
			}
			return nil
		}
		ip := clientIP(conn.RemoteAddr())
		if why := rt.admit(ip); why != "" {
			rt.refuse(ip, why)
			_ = conn.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer rt.release(ip)
			rt.serveConn(ctx, conn)
		}()
	}
}

// admit counts a new connection from ip, or says which limit refuses it.
func (rt *Router) admit(ip string) string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	switch {
	case rt.conns >= rt.opts.MaxConnections:
		return fmt.Sprintf("%d connections open (max_connections)", rt.conns)
	case rt.perIP[ip] >= rt.opts.MaxClientConnections:
		return fmt.Sprintf("%d connections open from this client (max_client_connections)", rt.perIP[ip])
	}
	rt.conns++
	rt.perIP[ip]++
	return ""
}

func (rt *Router) release(ip string) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.conns--
	if rt.perIP[ip]--; rt.perIP[ip] <= 0 {
		delete(rt.perIP, ip)
	}
}

// refuse counts a refused connection and warns about it once a minute per client.
func (rt *Router) refuse(ip, why string) {
	rt.refused.Add(1)
	rt.mu.Lock()
	now := time.Now()
	warn := now.Sub(rt.warned[ip]) >= time.Minute
	if warn {
		rt.warned[ip] = now
		if len(rt.warned) > 1024 { // many clients: forget the oldest warnings
			for k, t := range rt.warned {
				if now.Sub(t) >= time.Minute {
					delete(rt.warned, k)
				}
			}
		}
	}
	rt.mu.Unlock()
	level := slog.LevelDebug
	if warn {
		level = slog.LevelWarn
	}
	rt.log.Log(context.Background(), level, "modbus server: connection refused", "client", ip, "why", why)
}

func clientIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// conn is one client connection: requests are read in order, answered concurrently (at
// most MaxInFlight at once), and replies written whole, one at a time.
type conn struct {
	rt     *Router
	c      net.Conn
	remote string
	wmu    sync.Mutex
}

// serveConn serves c until the client closes it, breaks the framing, stays idle for
// IdleTimeout or stalls in a frame, or ctx ends; then it closes c and waits for the
// requests in progress.
func (rt *Router) serveConn(ctx context.Context, c net.Conn) {
	cn := &conn{rt: rt, c: c, remote: c.RemoteAddr().String()}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		_ = c.Close()
		wg.Wait()
	}()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	rt.log.Debug("modbus server: connection", "client", cn.remote)
	slots := make(chan struct{}, rt.opts.MaxInFlight)
	br := bufio.NewReaderSize(c, mbapHeaderLen+modbus.MaxPDU)
	for {
		adu, err := cn.read(br)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) {
				rt.log.Debug("modbus server: connection closed", "client", cn.remote, "err", err)
			}
			return
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			pdu := rt.Handle(ctx, adu[6], adu[mbapHeaderLen:])
			if err := cn.reply(adu, pdu); err != nil {
				rt.log.Debug("modbus server: reply not written; closing", "client", cn.remote, "err", err)
				cancel()
			}
		}()
	}
}

// read reads one request ADU: its first byte within IdleTimeout, the rest within
// FrameTimeout. A protocol identifier other than 0 or a length field outside 2–254
// breaks the framing (Implementation Guide V1.0b §3.1.3): an error, and the connection
// closes.
func (cn *conn) read(br *bufio.Reader) ([]byte, error) {
	if err := cn.c.SetReadDeadline(time.Now().Add(cn.rt.opts.IdleTimeout)); err != nil {
		return nil, err
	}
	if _, err := br.Peek(1); err != nil {
		return nil, err
	}
	if err := cn.c.SetReadDeadline(time.Now().Add(FrameTimeout)); err != nil {
		return nil, err
	}
	var hdr [mbapHeaderLen]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, err
	}
	length, err := requestLength(hdr)
	if err != nil {
		return nil, err
	}
	adu := make([]byte, mbapHeaderLen+length-1)
	copy(adu, hdr[:])
	if _, err := io.ReadFull(br, adu[mbapHeaderLen:]); err != nil {
		return nil, err
	}
	return adu, nil
}

// requestLength checks a request's MBAP header and returns its length field (unit
// identifier + PDU, 2–254 bytes): the protocol identifier must be 0 and the length in
// range (Implementation Guide V1.0b §3.1.3), else the stream cannot be trusted.
func requestLength(hdr [mbapHeaderLen]byte) (int, error) {
	pid := binary.BigEndian.Uint16(hdr[2:])
	length := int(binary.BigEndian.Uint16(hdr[4:]))
	if pid != 0 || length < minMBAPLength || length > maxMBAPLength {
		return 0, fmt.Errorf("malformed MBAP header % X: protocol identifier %d (want 0), length %d (want %d–%d)",
			hdr, pid, length, minMBAPLength, maxMBAPLength)
	}
	return length, nil
}

// reply writes the reply ADU of pdu to request req: its transaction identifier,
// protocol identifier 0, the length, its unit identifier, pdu (§3.1.3).
func (cn *conn) reply(req, pdu []byte) error {
	b := make([]byte, mbapHeaderLen, mbapHeaderLen+len(pdu))
	copy(b[:2], req[:2])
	binary.BigEndian.PutUint16(b[4:], uint16(1+len(pdu)))
	b[6] = req[6]
	b = append(b, pdu...)
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	if err := cn.c.SetWriteDeadline(time.Now().Add(WriteTimeout)); err != nil {
		return err
	}
	_, err := cn.c.Write(b)
	return err
}
