package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// ioTimeout bounds each TCP write and the graceful part of a shutdown.
const ioTimeout = 2 * time.Second

// listenAttempts is how often Listen picks a new free port when TCP's twin of
// the UDP port is taken.
const listenAttempts = 10

// Listen opens a UDP socket and a TCP listener on the same host:port (DNS serves
// both, RFC 7766 §5). With port 0 it lets the system pick a free UDP port, binds
// TCP to the same port and, when that one is taken, closes the UDP socket and
// tries again with a new port, up to 10 times. The error says which bind failed;
// on error nothing is left open.
func Listen(addr string) (net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dnsserver: listen %q: %w", addr, err)
	}
	pick := port == "" || port == "0"
	var lastErr error
	for range listenAttempts {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dnsserver: listen udp %s: %w", addr, err)
		}
		ua, ok := pc.LocalAddr().(*net.UDPAddr)
		if !ok {
			_ = pc.Close()
			return nil, nil, fmt.Errorf("dnsserver: listen udp %s: unexpected address %v", addr, pc.LocalAddr())
		}
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ua.IP, Port: ua.Port, Zone: ua.Zone})
		if err == nil {
			return pc, ln, nil
		}
		_ = pc.Close()
		lastErr = fmt.Errorf("dnsserver: listen tcp on the udp port %s: %w", ua, err)
		if !pick {
			break
		}
	}
	return nil, nil, lastErr
}

// Serve answers queries on pc (UDP) and ln (TCP) until ctx ends; either may be
// nil, not both. Serve owns pc and ln and closes them. When ctx ends it stops
// reading, waits up to 2 s for queries in flight, then closes the TCP
// connections still open, and returns nil once every goroutine it started has
// ended (a query blocked in Options.Instances is waited for). If a socket fails
// before ctx ends, Serve shuts the other down the same way and returns that
// error. A TCP write that takes longer than 2 s fails and closes its connection.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	if pc == nil && ln == nil {
		return errors.New("dnsserver: Serve needs a PacketConn or a Listener")
	}
	type run struct {
		name    string
		srv     *dns.Server
		tl      *trackingListener
		started chan struct{}
		done    chan struct{}
		err     error
	}
	var runs []*run
	newRun := func(name string, srv *dns.Server) *run {
		r := &run{name: name, srv: srv, started: make(chan struct{}), done: make(chan struct{})}
		var once sync.Once
		srv.NotifyStartedFunc = func() { once.Do(func() { close(r.started) }) }
		srv.MsgAcceptFunc = acceptMsg
		srv.MsgInvalidFunc = s.invalid
		srv.ReadTimeout = ioTimeout
		runs = append(runs, r)
		return r
	}
	if pc != nil {
		newRun("udp", &dns.Server{PacketConn: pc, Handler: handler{s: s, proto: "udp"}, UDPSize: MaxUDPSize})
	}
	if ln != nil {
		tl := &trackingListener{Listener: ln, conns: make(map[*trackedConn]struct{})}
		newRun("tcp", &dns.Server{Listener: tl, Handler: handler{s: s, proto: "tcp"}}).tl = tl
	}

	exited := make(chan *run, len(runs))
	for _, r := range runs {
		go func() {
			r.err = r.srv.ActivateAndServe()
			close(r.done)
			exited <- r
		}()
	}

	var err error
	select {
	case <-ctx.Done():
	case r := <-exited:
		err = fmt.Errorf("dnsserver: %s server stopped: %w", r.name, r.err)
		if r.err == nil {
			err = fmt.Errorf("dnsserver: %s server stopped", r.name)
		}
	}

	for _, r := range runs {
		select {
		case <-r.started:
		case <-r.done:
		}
		select {
		case <-r.done:
		default:
			sctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			_ = r.srv.ShutdownContext(sctx)
			cancel()
		}
		if r.tl != nil {
			r.tl.closeAll() // unblocks writes to clients that do not read
		}
	}
	for _, r := range runs {
		<-r.done
	}
	if pc != nil {
		_ = pc.Close()
	}
	if ln != nil {
		_ = ln.Close()
	}
	return err
}

// acceptMsg drops responses (QR set) silently, to avoid reply loops and
// reflection, and passes everything else to the handler, which answers FORMERR
// or NOTIMP itself so the counters see it.
func acceptMsg(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	return dns.MsgAccept
}

// invalid counts and logs a packet the library could not parse.
func (s *Server) invalid(m []byte, err error) {
	s.queries.Add(1)
	s.formErr.Add(1)
	s.log.Debug("dns: malformed packet", slog.Int("bytes", len(m)), slog.Any("err", err))
}

// handler serves one transport.
type handler struct {
	s     *Server
	proto string // "udp" or "tcp"
}

// ServeDNS implements dns.Handler.
func (h handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	size := dns.MaxMsgSize
	if h.proto == "udp" {
		size = UDPSize(req)
	}
	reply := h.s.Answer(req, size)
	h.s.count(reply, req, w.RemoteAddr(), h.proto)
	if err := w.WriteMsg(reply); err != nil {
		h.s.log.Debug("dns: write reply", slog.String("proto", h.proto),
			slog.Any("remote", w.RemoteAddr()), slog.Any("err", err))
	}
}

// count updates the counters for reply and logs refused and malformed queries.
func (s *Server) count(reply, req *dns.Msg, remote net.Addr, proto string) {
	s.queries.Add(1)
	if reply.Truncated {
		s.truncated.Add(1)
	}
	var why string
	switch reply.Rcode {
	case dns.RcodeSuccess:
		if len(reply.Answer) > 0 {
			s.answered.Add(1)
		} else {
			s.noData.Add(1)
		}
	case dns.RcodeNameError:
		s.nxDomain.Add(1)
	case dns.RcodeRefused:
		s.refused.Add(1)
		why = "refused"
	case dns.RcodeFormatError, dns.RcodeBadVers:
		s.formErr.Add(1)
		why = "malformed"
	case dns.RcodeNotImplemented:
		s.notImp.Add(1)
		why = "opcode not implemented"
	}
	if why == "" || !s.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{
		slog.String("proto", proto), slog.Any("remote", remote),
		slog.String("opcode", dns.OpcodeToString[req.Opcode]),
		slog.String("rcode", dns.RcodeToString[reply.Rcode]),
		slog.Int("questions", len(req.Question)),
	}
	if len(req.Question) > 0 {
		q := req.Question[0]
		attrs = append(attrs, slog.String("name", q.Name),
			slog.String("type", dns.Type(q.Qtype).String()),
			slog.String("class", dns.Class(q.Qclass).String()))
	}
	s.log.LogAttrs(context.Background(), slog.LevelDebug, "dns: query "+why, attrs...)
}

// trackingListener remembers the connections it accepted, so a shutdown can
// close the ones stuck writing, and bounds every write by ioTimeout.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

type trackedConn struct {
	net.Conn
	l *trackingListener
}

func (c *trackedConn) Write(b []byte) (int, error) {
	_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
	return c.Conn.Write(b)
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
