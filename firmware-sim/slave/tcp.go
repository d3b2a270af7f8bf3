package slave

// Modbus TCP server side: MBAP framing (Modbus Messaging on TCP/IP Implementation Guide
// V1.0b §3.1.3), one goroutine per client connection, requests of a connection served
// in order, per-unit fault injection.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/rollcall-edge/rollcall/internal/netx"
)

// MBAP header layout and limits (Implementation Guide V1.0b §3.1.3; Modbus Application
// Protocol V1.1b3 §4.1: a TCP ADU is at most 260 bytes).
const (
	// MBAPHeaderLen is the MBAP header length in bytes: transaction identifier (2),
	// protocol identifier (2), length (2), unit identifier (1), all big-endian.
	MBAPHeaderLen = 7
	// MBAPProtocolModbus is the protocol identifier of MODBUS: 0.
	MBAPProtocolModbus uint16 = 0
	// MaxTCPADU is the largest Modbus TCP ADU in bytes: the MBAP header and a 253-byte PDU.
	MaxTCPADU = MBAPHeaderLen + MaxPDU
	// MaxMBAPLength is the largest valid MBAP length field: unit identifier + 253-byte PDU.
	MaxMBAPLength = 1 + MaxPDU
	// MinMBAPLength is the smallest valid MBAP length field: unit identifier + function code.
	MinMBAPLength = 2
)

// GarbageProtocolID is the protocol identifier of a FaultGarbage reply on Modbus TCP,
// instead of MBAPProtocolModbus (Implementation Guide V1.0b §3.1.3: 0 = MODBUS); see
// TCPServer.
const GarbageProtocolID uint16 = 0xFFFF

// ErrBadMBAP is returned (wrapped, naming the listener and what was wrong) by
// ServeConn when a request's MBAP header breaks the framing: a protocol identifier
// other than 0, or a length field outside 2–254 or disagreeing with the request length
// that the function code determines. The connection is closed: the stream can no
// longer be delimited.
var ErrBadMBAP = errors.New("malformed MBAP header")

// TCPConfig configures a TCPServer.
type TCPConfig struct {
	// Listener names the listener in log lines (key "listener") and errors.
	Listener string
	// PDU holds the PDU handler options (Read Device Identification reply size).
	PDU Options
	// FrameTimeout bounds the time from the first byte of a request ADU to its last
	// byte; a client that stalls mid-frame is disconnected. 0 means 5 s; < 0 is an error.
	// Between requests a connection may stay idle without limit.
	FrameTimeout time.Duration
	// WriteTimeout bounds one reply write (the client may not read); a timeout closes
	// the connection. 0 means 5 s; < 0 is an error.
	WriteTimeout time.Duration
	// Logger receives debug lines for connections and rejected frames, with keys
	// listener, unit, remote, err; nil discards.
	Logger *slog.Logger
}

// TCPServer serves units over Modbus TCP (Implementation Guide V1.0b): a drive
// directly on the network (one unit) or a gateway with several units behind it.
//
// Unit addressing (Implementation Guide V1.0b §4.4.1.2; Application Protocol V1.1b3 §7):
//   - One unit: a device directly on TCP/IP, for which the unit identifier is not
//     significant: it answers every unit identifier (0xFF and 0 included).
//   - Several units: a gateway. A request for a unit identifier it does not serve (0
//     included) gets exception 0x0B, gateway target device failed to respond.
//
// Every reply echoes the request's transaction and unit identifiers (§3.1.3).
//
// Faults (per unit, from the next request): FaultSilent reads the request and never
// answers, keeping the connection open (later requests on it are still served);
// FaultSlow answers Fault.Delay late, holding up the connection's later requests as
// an in-order device does; FaultException answers exception Fault.Code and executes
// nothing; FaultGarbage executes the request and answers a frame of the right length
// whose protocol identifier is GarbageProtocolID — the TCP analogue of the RTU mode's
// bad CRC: the stream stays in step and a client that checks the header, as it must,
// rejects the reply; FaultNoisy answers such a frame with probability Fault.Rate per
// reply, and normally otherwise (TCP has no line noise: no bursts); FaultDevice answers
// normally (the owner puts the drive in fault).
//
// Create it with NewTCPServer and add units before serving; its methods are safe for
// concurrent use, and Serve may be called again after it returned (with a new listener),
// keeping units, faults and counters.
type TCPServer struct {
	cfg TCPConfig
	log *slog.Logger
	unitTable
}

// NewTCPServer returns a server without units. It returns an error when FrameTimeout or
// WriteTimeout is negative.
func NewTCPServer(cfg TCPConfig) (*TCPServer, error) {
	if cfg.FrameTimeout < 0 {
		return nil, fmt.Errorf("slave: listener %s: frame timeout must be ≥ 0, got %v", cfg.Listener, cfg.FrameTimeout)
	}
	if cfg.WriteTimeout < 0 {
		return nil, fmt.Errorf("slave: listener %s: write timeout must be ≥ 0, got %v", cfg.Listener, cfg.WriteTimeout)
	}
	if cfg.FrameTimeout == 0 {
		cfg.FrameTimeout = 5 * time.Second
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &TCPServer{cfg: cfg, log: log.With("listener", cfg.Listener), unitTable: newUnitTable("listener", cfg.Listener)}, nil
}

// AddUnit serves dev at unit ID id (1–247). It returns an error for an ID out of range
// or already taken.
func (s *TCPServer) AddUnit(id byte, dev Device) error { return s.add(id, dev) }

// SetFault sets the fault of unit id, effective from the next request. Errors: an
// invalid fault (Fault.Validate), or ErrUnknownUnit (wrapped).
func (s *TCPServer) SetFault(id byte, f Fault) error { return s.setFault(id, f) }

// Fault returns unit id's fault (normalised), or ErrUnknownUnit (wrapped).
func (s *TCPServer) Fault(id byte) (Fault, error) { return s.getFault(id) }

// Stats returns unit id's traffic counters (Requests: well-framed requests routed to
// the unit; Replies: replies written, garbage included), or ErrUnknownUnit (wrapped).
func (s *TCPServer) Stats(id byte) (UnitStats, error) { return s.stats(id) }

// Serve accepts connections on ln and serves each in its own goroutine until ctx is
// cancelled (it then closes ln and every connection, and returns nil) or Accept fails
// with a non-temporary error (returned, wrapped, naming the listener). Either way ln
// is closed and every connection goroutine has ended when Serve returns. Temporary
// Accept errors (out of file descriptors, buffers or memory) are retried after a
// back-off of 5 ms doubling to 1 s.
func (s *TCPServer) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	connCtx, cancel := context.WithCancel(ctx)
	defer cancel() // runs before wg.Wait: closes the connections
	defer ln.Close()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()

	acc := netx.Acceptor{Listener: ln, OnRetry: func(err error, backoff time.Duration) {
		s.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
	}}
	for {
		conn, err := acc.Accept(ctx)
		if conn == nil {
			if err != nil {
				return fmt.Errorf("slave: listener %s: accept: %w", s.cfg.Listener, err)
			}
			return nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			remote := conn.RemoteAddr().String()
			s.log.Debug("connection accepted", "remote", remote)
			if err := s.ServeConn(connCtx, conn); err != nil {
				s.log.Debug("connection closed on error", "remote", remote, "err", err)
				return
			}
			s.log.Debug("connection closed", "remote", remote)
		}()
	}
}

// ServeConn serves the requests of one client connection in order until the client
// closes it or ctx is cancelled (both return nil), a request breaks the framing
// (ErrBadMBAP, wrapped), a request stalls mid-frame longer than FrameTimeout, or a read
// or write fails (the error, wrapped, naming the listener). conn is closed when
// ServeConn returns.
func (s *TCPServer) ServeConn(ctx context.Context, conn net.Conn) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	buf := make([]byte, MaxTCPADU)
	for {
		hdr, pdu, err := s.readADU(conn, buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		reply, delay, u := s.handleADU(hdr, pdu)
		if reply == nil {
			continue
		}
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		if err := conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout)); err != nil {
			return s.connErr(ctx, "set write deadline", err)
		}
		if _, err := conn.Write(reply); err != nil {
			return s.connErr(ctx, "write reply", err)
		}
		if u != nil {
			u.replies.Add(1)
		}
	}
}

// connErr wraps a connection error, or returns nil when ctx ended (we closed it).
func (s *TCPServer) connErr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("slave: listener %s: %s: %w", s.cfg.Listener, what, err)
}

// readADU reads one request ADU into buf (MaxTCPADU bytes) and returns its MBAP header
// and PDU (both slices of buf). It waits for the first byte without limit, then for
// the rest of the frame at most FrameTimeout. A clean close between frames returns
// io.EOF.
func (s *TCPServer) readADU(conn net.Conn, buf []byte) (hdr, pdu []byte, err error) {
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return nil, nil, fmt.Errorf("slave: listener %s: set read deadline: %w", s.cfg.Listener, err)
	}
	if _, err := io.ReadFull(conn, buf[:1]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, io.EOF
		}
		return nil, nil, fmt.Errorf("slave: listener %s: read: %w", s.cfg.Listener, err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(s.cfg.FrameTimeout)); err != nil {
		return nil, nil, fmt.Errorf("slave: listener %s: set read deadline: %w", s.cfg.Listener, err)
	}
	if _, err := io.ReadFull(conn, buf[1:MBAPHeaderLen]); err != nil {
		return nil, nil, s.frameErr("header", err)
	}
	hdr = buf[:MBAPHeaderLen]
	if proto := be16(hdr[2:]); proto != MBAPProtocolModbus {
		return nil, nil, fmt.Errorf("slave: listener %s: %w: protocol identifier %d, not 0 (MODBUS)", s.cfg.Listener, ErrBadMBAP, proto)
	}
	length := int(be16(hdr[4:]))
	if length < MinMBAPLength || length > MaxMBAPLength {
		return nil, nil, fmt.Errorf("slave: listener %s: %w: length field %d outside %d–%d", s.cfg.Listener, ErrBadMBAP, length, MinMBAPLength, MaxMBAPLength)
	}
	end := MBAPHeaderLen - 1 + length
	if _, err := io.ReadFull(conn, buf[MBAPHeaderLen:end]); err != nil {
		return nil, nil, s.frameErr("PDU", err)
	}
	pdu = buf[MBAPHeaderLen:end]
	if want, ok := tcpPDULength(hdr[6], pdu); !ok {
		if want == 0 {
			return nil, nil, fmt.Errorf("slave: listener %s: unit %d: %w: length field %d is too short for function code 0x%02X",
				s.cfg.Listener, hdr[6], ErrBadMBAP, length, pdu[0])
		}
		return nil, nil, fmt.Errorf("slave: listener %s: unit %d: %w: length field %d, but function code 0x%02X makes the request %d bytes (unit identifier + PDU)",
			s.cfg.Listener, hdr[6], ErrBadMBAP, length, pdu[0], want)
	}
	return hdr, pdu, nil
}

// frameErr wraps an error that interrupted a frame after its first byte.
func (s *TCPServer) frameErr(part string, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("slave: listener %s: request %s incomplete after %v: %w", s.cfg.Listener, part, s.cfg.FrameTimeout, err)
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("slave: listener %s: read request %s: %w", s.cfg.Listener, part, err)
}

// tcpPDULength checks a request PDU's length against the length its function code
// determines (the RTU request lengths of requestLength without address and CRC). It
// returns ok true when they agree or the function code does not determine a length;
// else ok false and the expected MBAP length field (0 when the PDU is too short to
// tell).
func tcpPDULength(unitID byte, pdu []byte) (want int, ok bool) {
	n := requestLength(append([]byte{unitID}, pdu...))
	switch {
	case n < 0:
		return 0, true
	case n == 0:
		return 0, false
	}
	// RTU length = address + PDU + CRC; MBAP length = unit identifier + PDU.
	return n - 2, n-3 == len(pdu)
}

// handleADU executes one well-framed request and returns the reply ADU to write after
// delay, and the unit to credit with the reply (nil for a 0x0B gateway reply); reply nil
// means no answer.
func (s *TCPServer) handleADU(hdr, pdu []byte) (reply []byte, delay time.Duration, u *unit) {
	unitID := hdr[6]
	u, f := s.lookup(unitID)
	if u == nil {
		u, f = s.only()
	}
	var out []byte
	switch {
	case u == nil:
		s.log.Debug("request for a unit not on the listener: exception 0x0B", "unit", unitID)
		out = ExceptionPDU(pdu[0], byte(GatewayTargetFailed))
	case f.Mode == FaultSilent:
		u.requests.Add(1)
		return nil, 0, nil
	case f.Mode == FaultException:
		u.requests.Add(1)
		out = ExceptionPDU(pdu[0], f.Code)
	default:
		u.requests.Add(1)
		out = HandlePDU(u.dev, pdu, s.cfg.PDU)
	}
	if out == nil {
		return nil, 0, nil
	}
	adu := AppendMBAP(make([]byte, 0, MBAPHeaderLen+len(out)), be16(hdr[0:]), unitID, out)
	if u != nil {
		switch f.Mode {
		case FaultGarbage:
			binary.BigEndian.PutUint16(adu[2:], GarbageProtocolID)
		case FaultSlow:
			delay = f.Delay
		case FaultNoisy:
			if corrupt, _ := s.noisyDraw(u, f.Rate); corrupt { // no line noise on TCP: no burst
				binary.BigEndian.PutUint16(adu[2:], GarbageProtocolID)
			}
		}
	}
	return adu, delay, u
}

// AppendMBAP appends a Modbus TCP ADU to dst and returns the extended slice: the MBAP
// header (transaction identifier tid, protocol identifier 0, length = 1 + len(pdu),
// unit identifier unitID; Implementation Guide V1.0b §3.1.3) followed by pdu.
func AppendMBAP(dst []byte, tid uint16, unitID byte, pdu []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, tid)
	dst = binary.BigEndian.AppendUint16(dst, MBAPProtocolModbus)
	dst = binary.BigEndian.AppendUint16(dst, uint16(1+len(pdu)))
	dst = append(dst, unitID)
	return append(dst, pdu...)
}
