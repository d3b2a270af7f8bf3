package slave

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"
)

// ErrUnknownUnit is returned (wrapped, naming the bus or listener and the unit) for a
// unit ID that the server does not serve.
var ErrUnknownUnit = errors.New("unknown unit")

// Port is the byte stream an RTUServer serves: the master side of a pseudo-terminal
// (a pollable *os.File) or, in tests, a net.Conn. Deadlines must unblock pending Reads
// and Writes with an error matching os.ErrDeadlineExceeded. Serve reads and writes
// from two goroutines at once (its reader and its reply writer).
type Port interface {
	io.Reader
	io.Writer
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
}

// RTUConfig configures an RTUServer.
type RTUConfig struct {
	// Bus names the bus in log lines and errors.
	Bus string
	// Baud is the emulated line speed in bits/s (> 0): it sets t3.5 and the wire times
	// of the line-timing emulation.
	Baud int
	// Turnaround is the emulated processing time between the end of a request (after
	// t3.5) and the first reply byte; ≥ 0.
	Turnaround time.Duration
	// PDU holds the PDU handler options (Read Device Identification reply size).
	PDU Options
	// WriteTimeout bounds each write of a reply chunk (the peer may not read); 0 means
	// 1 s.
	WriteTimeout time.Duration
	// OnWriteTimeout, if set, is called after a reply write timed out, e.g. to flush
	// stale replies the peer never read from the terminal's input queue.
	OnWriteTimeout func() error
	// Logger receives debug lines for discarded frames and warnings for write errors,
	// with keys bus, unit, err; nil discards.
	Logger *slog.Logger
}

// UnitStats counts one unit's traffic since the server was created.
type UnitStats struct {
	Requests uint64 // frames with a good CRC addressed to the unit (broadcasts included)
	Replies  uint64 // reply frames completely written (corrupted ones included; not noise bursts, not replies dropped midway)
}

// RTUServer serves the units of one Modbus RTU bus on a byte stream (Modbus over
// Serial Line V1.02 §2.5.1): request framing by function code, CRC check, frame
// resynchronisation on garbage, line-timing emulation of the replies (streamed byte by
// byte on the line model of FirstByteDelay) and per-unit fault injection (FaultMode;
// FaultNoisy adds corrupted replies and noise bursts). Create it with NewRTUServer;
// its methods are safe for concurrent use; Serve runs at most once at a time.
type RTUServer struct {
	cfg      RTUConfig
	log      *slog.Logger
	newTimer func() (wakeTimer, error) // newWakeTimer; tests swap in the portable one
	unitTable
}

// NewRTUServer returns a server without units. It returns an error when Baud ≤ 0 or
// Turnaround < 0.
func NewRTUServer(cfg RTUConfig) (*RTUServer, error) {
	if cfg.Baud <= 0 {
		return nil, fmt.Errorf("slave: bus %s: baud must be > 0, got %d", cfg.Bus, cfg.Baud)
	}
	if cfg.Turnaround < 0 {
		return nil, fmt.Errorf("slave: bus %s: turnaround must be ≥ 0, got %v", cfg.Bus, cfg.Turnaround)
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RTUServer{cfg: cfg, log: log.With("bus", cfg.Bus), newTimer: newWakeTimer, unitTable: newUnitTable("bus", cfg.Bus)}, nil
}

// AddUnit puts dev on the bus at unit ID id (1–247, Modbus over Serial Line V1.02
// §2.2). It returns an error for an ID out of range or already taken.
func (s *RTUServer) AddUnit(id byte, dev Device) error { return s.add(id, dev) }

// SetFault sets the fault of unit id, effective from the next request. Errors: an
// invalid fault (Fault.Validate), or ErrUnknownUnit (wrapped).
func (s *RTUServer) SetFault(id byte, f Fault) error { return s.setFault(id, f) }

// Fault returns unit id's fault (normalised), or ErrUnknownUnit (wrapped).
func (s *RTUServer) Fault(id byte) (Fault, error) { return s.getFault(id) }

// Stats returns unit id's traffic counters, or ErrUnknownUnit (wrapped).
func (s *RTUServer) Stats(id byte) (UnitStats, error) { return s.stats(id) }

// requestLength returns the length in bytes of the RTU request ADU (address, PDU, CRC)
// that starts b, from its function code (Modbus Application Protocol V1.1b3 §6):
// > 0 the length; 0 when more bytes are needed to know it; −1 when the function code
// does not determine it (the frame then ends at the next t3.5 silence).
func requestLength(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	switch b[1] {
	case 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x08: // address, fc, 4 bytes, CRC
		return 8
	case 0x07, 0x0B, 0x0C, 0x11: // address, fc, CRC
		return 4
	case 0x0F, 0x10: // address, fc, start, quantity, byte count, data, CRC
		if len(b) < 7 {
			return 0
		}
		return 9 + int(b[6])
	case 0x14, 0x15: // address, fc, byte count, data, CRC
		if len(b) < 3 {
			return 0
		}
		return 5 + int(b[2])
	case 0x16: // mask write register
		return 10
	case 0x17: // read/write multiple registers: byte count at offset 10
		if len(b) < 11 {
			return 0
		}
		return 13 + int(b[10])
	case 0x18: // read FIFO queue
		return 6
	case 0x2B:
		if len(b) < 3 {
			return 0
		}
		if b[2] == MEIReadDeviceID { // address, fc, MEI, code, object id, CRC
			return 7
		}
	}
	return -1
}

// pendingReply is a reply to stream on the line model's schedule (see FirstByteDelay).
type pendingReply struct {
	adu   []byte
	start time.Time // when the reply's first character starts on the line
	baud  int       // line speed, bits/s
	u     *unit
	noise []byte // FaultNoisy: garbage the line carries after the reply; nil: none

	// Streaming state, guarded by replyWriter.mu.
	sent int       // reply bytes handed to the port
	next time.Time // instant of the next chunk
}

// byteDue returns T_i, the instant byte i (0-based) of the reply is complete at the
// master: start + (i+1) character times.
func (p *pendingReply) byteDue(i int) time.Time { return p.start.Add(WireTime(i+1, p.baud)) }

// handleFrame executes one complete request ADU with a good CRC, received at rx, and
// returns the reply to stream; ok is false when nothing is to be sent (broadcast, unit
// not on the bus, silent unit).
func (s *RTUServer) handleFrame(frame []byte, rx time.Time) (p *pendingReply, ok bool) {
	addr, pdu := frame[0], frame[1:len(frame)-2]
	if addr == 0 { // broadcast: execute, never reply (Modbus over Serial Line V1.02 §2.1)
		s.mu.Lock()
		type target struct {
			u *unit
			f Fault
		}
		targets := make([]target, 0, len(s.units))
		for _, u := range s.units {
			targets = append(targets, target{u, u.fault})
		}
		s.mu.Unlock()
		for _, t := range targets {
			t.u.requests.Add(1)
			if t.f.Mode == FaultSilent || t.f.Mode == FaultException {
				continue
			}
			HandlePDU(t.u.dev, pdu, s.cfg.PDU)
		}
		return nil, false
	}
	u, f := s.lookup(addr)
	if u == nil {
		s.log.Debug("request for a unit not on the bus ignored", "unit", addr)
		return nil, false
	}
	u.requests.Add(1)
	var reply []byte
	switch f.Mode {
	case FaultSilent:
		return nil, false
	case FaultException:
		reply = ExceptionPDU(pdu[0], f.Code)
	default:
		reply = HandlePDU(u.dev, pdu, s.cfg.PDU)
	}
	if reply == nil {
		return nil, false
	}
	p = &pendingReply{adu: AppendCRC(append([]byte{addr}, reply...)), baud: s.cfg.Baud, u: u}
	corrupt := f.Mode == FaultGarbage
	if f.Mode == FaultNoisy {
		corrupt, p.noise = s.noisyDraw(u, f.Rate)
	}
	if corrupt { // a frame of the right length with a wrong CRC
		p.adu[len(p.adu)-2] ^= 0xFF
		p.adu[len(p.adu)-1] ^= 0xFF
	}
	// Line model: the request takes its wire time after rx, the slave sees its end
	// after t3.5, then processes it for the turnaround.
	p.start = rx.Add(WireTime(len(frame), s.cfg.Baud) + InterFrameDelay(s.cfg.Baud) + s.cfg.Turnaround)
	if f.Mode == FaultSlow {
		p.start = p.start.Add(f.Delay)
	}
	return p, true
}

// Serve reads requests from port and writes the replies until ctx is cancelled
// (returns nil) or port fails (returns the error, wrapped, naming the bus). Its
// goroutines (the reader and a reply writer) have ended when it returns.
//
// Framing (Modbus over Serial Line V1.02 §2.5.1): a request's length follows from its
// function code; a frame with a bad CRC, an over-long or incomplete frame is dropped
// together with everything buffered, and input is discarded until a silence of t3.5.
// A frame whose function code does not give its length ends at a t3.5 silence.
// Requests for unit IDs not on the bus are parsed and ignored.
//
// Line timing (see FirstByteDelay): the reply to a request completely received at rx
// streams out like a real line's: byte i is written no earlier than
// T_i = rx + FirstByteDelay + i character times (+ Fault.Delay for FaultSlow), in
// chunks — the first byte alone at T_0, then every max(1 character, 500 µs) all bytes
// due by then (gaps stay below t1.5 above 19200 baud), the last at T_last =
// rx + ReplyDelay. On Linux a timerfd wakes the writer within microseconds of those
// instants; elsewhere a runtime timer plus a short spin. If the master sends anything
// before the reply has been completely written it has given up on the request: the
// rest of the reply is dropped.
func (s *RTUServer) Serve(ctx context.Context, port Port) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	past := time.Unix(1, 0)
	stop := context.AfterFunc(ctx, func() {
		// Unblock a pending Read or Write; the reader and the writer check ctx after
		// every deadline they set, so this cannot be lost.
		_ = port.SetReadDeadline(past)
		_ = port.SetWriteDeadline(past)
	})
	defer stop()

	timer, err := s.newTimer()
	if err != nil {
		return fmt.Errorf("slave: bus %s: %w", s.cfg.Bus, err)
	}
	w := &replyWriter{s: s, port: port, timer: timer,
		period: max(WireTime(1, s.cfg.Baud), chunkPeriod), t15: InterCharDelay(s.cfg.Baud)}
	var werr error
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		if werr = w.run(ctx); werr != nil {
			cancel() // the reader stops too
		}
	}()
	rerr := s.read(ctx, port, w)
	cancel()
	<-wdone
	if rerr != nil {
		return rerr
	}
	return werr
}

// read is Serve's reader: it frames the requests and hands the replies to w, until ctx
// ends (nil) or port fails.
func (s *RTUServer) read(ctx context.Context, port Port, w *replyWriter) error {
	gap := InterFrameDelay(s.cfg.Baud)
	var (
		buf        = make([]byte, 0, 2*MaxADU)
		rb         = make([]byte, MaxADU)
		lastRx     time.Time
		discarding bool
	)
	submit := func(p *pendingReply) error {
		if p == nil {
			return nil
		}
		if err := w.submit(p); err != nil {
			return fmt.Errorf("slave: bus %s: %w", s.cfg.Bus, err)
		}
		return nil
	}
	for {
		var deadline time.Time // zero: wait for the next byte without limit
		if len(buf) > 0 || discarding {
			deadline = lastRx.Add(gap)
		}
		if err := port.SetReadDeadline(deadline); err != nil {
			return fmt.Errorf("slave: bus %s: set read deadline: %w", s.cfg.Bus, err)
		}
		if ctx.Err() != nil {
			return nil
		}
		n, err := port.Read(rb)
		if n > 0 {
			now := time.Now()
			if (len(buf) > 0 || discarding) && !now.Before(lastRx.Add(gap)) {
				// The reader woke late (a busy machine): these bytes came after a silence
				// of t3.5 at least, which ended what was buffered or discarded before. A
				// frame that ended there is executed; its reply is dropped like any other
				// reply the master sent over.
				if len(buf) > 0 && !discarding {
					if p := s.endOfFrame(buf, lastRx); p != nil {
						s.log.Debug("reply dropped: the master sent again before the reply was due", "unit", p.u.id)
					}
				}
				buf, discarding = buf[:0], false
			}
			lastRx = now
			if p := w.cancel(); p != nil {
				s.log.Debug("reply dropped: the master sent again before the reply was complete",
					"unit", p.u.id, "bytes_sent", p.sent, "bytes", len(p.adu))
			}
			if !discarding {
				var p *pendingReply
				buf = append(buf, rb[:n]...)
				buf, p, discarding = s.consume(buf, lastRx)
				if err := submit(p); err != nil {
					return err
				}
			}
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("slave: bus %s: read: %w", s.cfg.Bus, err)
		}
		if (len(buf) > 0 || discarding) && !time.Now().Before(lastRx.Add(gap)) {
			// t3.5 of silence: the frame (or the garbage) has ended.
			if len(buf) > 0 && !discarding {
				if err := submit(s.endOfFrame(buf, lastRx)); err != nil {
					return err
				}
			}
			buf, discarding = buf[:0], false
		}
	}
}

// consume takes the complete frames off the front of buf (received at rx). It returns
// the rest of buf, the reply to send (the last frame's, if any) and whether input must
// be discarded until the next silence (bad CRC or over-long frame; a reply to a good
// frame before it in the same burst is still sent).
func (s *RTUServer) consume(buf []byte, rx time.Time) ([]byte, *pendingReply, bool) {
	var pending *pendingReply
	for len(buf) > 0 {
		n := requestLength(buf)
		if n > MaxADU || (n <= 0 && len(buf) > MaxADU) {
			s.log.Debug("over-long frame discarded", "bytes", len(buf))
			return buf[:0], pending, true
		}
		if n <= 0 || len(buf) < n {
			break // need more bytes, or the frame ends at the next silence
		}
		frame := buf[:n]
		if !CheckCRC(frame) {
			s.log.Debug("bad CRC: input discarded until the next silence", "unit", frame[0], "bytes", len(buf))
			return buf[:0], pending, true
		}
		// A later frame supersedes an earlier reply (nil when it has none).
		pending, _ = s.handleFrame(frame, rx)
		buf = append(buf[:0], buf[n:]...)
	}
	return buf, pending, false
}

// endOfFrame handles what is buffered when a t3.5 silence ends it: a frame whose length
// the function code does not give, or an incomplete frame (dropped).
func (s *RTUServer) endOfFrame(buf []byte, rx time.Time) *pendingReply {
	if requestLength(buf) < 0 && CheckCRC(buf) {
		p, _ := s.handleFrame(buf, rx)
		return p
	}
	s.log.Debug("incomplete or bad frame discarded", "bytes", len(buf))
	return nil
}
