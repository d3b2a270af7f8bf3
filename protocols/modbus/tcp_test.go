package modbus

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gmodbus "github.com/goburrow/modbus"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"golang.org/x/sys/unix"
)

// The TCP tests run the master against a scripted Modbus TCP server on a real loopback
// socket (127.0.0.1:0), one goroutine per accepted connection, each reading whole
// request ADUs and handing them to the test's handler.

// tcpHandler answers request number n (0-based, counted over all connections of the
// server); req is a whole request ADU (MBAP header + PDU). It writes its reply (or
// nothing) to c, and may close c. ctx ends with the test or when the server is stopped.
type tcpHandler func(ctx context.Context, n int, req []byte, c net.Conn)

// tcpServer is a scripted Modbus TCP server owned by the test.
type tcpServer struct {
	t      testing.TB
	handle tcpHandler
	addr   string

	mu       sync.Mutex
	ln       net.Listener
	cancel   context.CancelFunc // ends the handlers of the current listener
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup // accept loop and connection goroutines
	accepted int
	closed   int // connections ended (by either side)
	n        int
	reqs     [][]byte
}

func startTCPServer(t testing.TB, h tcpHandler) *tcpServer {
	t.Helper()
	s := &tcpServer{t: t, handle: h, conns: map[net.Conn]struct{}{}}
	s.listen("127.0.0.1:0")
	s.addr = s.ln.Addr().String()
	t.Cleanup(s.stop)
	return s
}

// listen starts accepting on addr.
func (s *tcpServer) listen(addr string) {
	s.t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.t.Fatalf("listen %s: %v", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.ln, s.cancel = ln, cancel
	s.mu.Unlock()
	s.wg.Add(1)
	go s.accept(ctx, ln)
}

// stop closes the listener (new connections are refused) and every open connection,
// and waits for the server's goroutines. restart listens on the same port again.
func (s *tcpServer) stop() {
	s.mu.Lock()
	if s.ln != nil {
		_ = s.ln.Close()
		s.ln = nil
		s.cancel()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *tcpServer) restart() { s.listen(s.addr) }

func (s *tcpServer) accept(ctx context.Context, ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.accepted++
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(ctx, c)
	}
}

func (s *tcpServer) serve(ctx context.Context, c net.Conn) {
	defer s.wg.Done()
	defer func() {
		_ = c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.closed++
		s.mu.Unlock()
	}()
	br := bufio.NewReader(c)
	for {
		hdr := make([]byte, MBAPHeaderLen)
		if _, err := io.ReadFull(br, hdr); err != nil {
			return
		}
		length := int(binary.BigEndian.Uint16(hdr[4:]))
		if pid := binary.BigEndian.Uint16(hdr[2:]); pid != 0 || length < 2 || length > 254 {
			s.t.Errorf("server: bad request header % X", hdr)
			return
		}
		req := append(hdr, make([]byte, length-1)...)
		if _, err := io.ReadFull(br, req[MBAPHeaderLen:]); err != nil {
			return
		}
		if br.Buffered() > 0 {
			s.t.Errorf("server: request % X followed at once by more: master did not wait for the reply", req)
		}
		s.mu.Lock()
		n := s.n
		s.n++
		s.reqs = append(s.reqs, req)
		s.mu.Unlock()
		s.handle(ctx, n, req, c)
	}
}

func (s *tcpServer) requests() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.reqs...)
}

func (s *tcpServer) counts() (accepted, closed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, s.closed
}

// mbap is a Modbus TCP ADU with the given header fields and PDU; length is computed
// when it is negative.
func mbap(tid, pid uint16, length int, unit byte, pdu ...byte) []byte {
	if length < 0 {
		length = 1 + len(pdu)
	}
	b := binary.BigEndian.AppendUint16(nil, tid)
	b = binary.BigEndian.AppendUint16(b, pid)
	b = binary.BigEndian.AppendUint16(b, uint16(length))
	return append(append(b, unit), pdu...)
}

// tidOf is the transaction id of an ADU.
func tidOf(adu []byte) uint16 { return binary.BigEndian.Uint16(adu) }

// reply is a well-formed reply ADU to req with the given PDU.
func reply(req []byte, pdu ...byte) []byte {
	return mbap(tidOf(req), 0, -1, req[6], pdu...)
}

// regsPDU is a normal FC 03/04 reply PDU with the given register values.
func regsPDU(fc byte, regs ...uint16) []byte {
	b := []byte{fc, byte(2 * len(regs))}
	for _, v := range regs {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

// devIDPDU is a 0x2B/0x0E reply PDU with objects given as id, value pairs.
func devIDPDU(code, conformity byte, more bool, next byte, objs ...any) []byte {
	moreByte := byte(0)
	if more {
		moreByte = 0xFF
	}
	b := []byte{0x2B, 0x0E, code, conformity, moreByte, next, byte(len(objs) / 2)}
	for i := 0; i < len(objs); i += 2 {
		v := objs[i+1].(string)
		b = append(b, objs[i].(byte), byte(len(v)))
		b = append(b, v...)
	}
	return b
}

// tcpStatus answers every FC 03 read with 0x0027, 0x0000 (as many registers as asked
// up to 2) and everything else with exception 1.
func tcpStatus(_ context.Context, _ int, req []byte, c net.Conn) {
	if req[7] == FuncReadHoldingRegisters {
		write(c, reply(req, regsPDU(req[7], 0x0027, 0x0000)...))
		return
	}
	write(c, reply(req, req[7]|0x80, 1))
}

// fakeClock is the backoff clock of a test: it moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testTCPConfig is a short reply timeout for addr.
func testTCPConfig(addr string) TCPConfig {
	return TCPConfig{Address: addr, Timeout: 50 * time.Millisecond}
}

// newTCPMaster opens a master on cfg (Address filled in from srv when empty) and closes
// it at cleanup, before the server stops.
func newTCPMaster(t testing.TB, srv *tcpServer, cfg TCPConfig) *TCP {
	t.Helper()
	if cfg.Address == "" {
		cfg.Address = srv.addr
	}
	m, err := NewTCP(cfg)
	if err != nil {
		t.Fatalf("NewTCP: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func TestMBAPEncode(t *testing.T) {
	tests := []struct {
		name string
		tid  uint16
		unit byte
		pdu  gmodbus.ProtocolDataUnit
		want string
	}{
		{"FC03 2 regs at 0", 1, 1, pduReadRegisters(FuncReadHoldingRegisters, 0, 2), "00 01 00 00 00 06 01 03 00 00 00 02"},
		{"FC03 unit 255", 0x1501, 0xFF, pduReadRegisters(FuncReadHoldingRegisters, 4, 1), "15 01 00 00 00 06 FF 03 00 04 00 01"},
		{"FC04 unit 0 max qty", 0xFFFF, 0, pduReadRegisters(FuncReadInputRegisters, 0xFFFF, 0x7D), "FF FF 00 00 00 06 00 04 FF FF 00 7D"},
		{"FC06 reg 1 = 3", 2, 1, pduWriteRegister(1, 3), "00 02 00 00 00 06 01 06 00 01 00 03"},
		{"FC16 2 regs at 1", 3, 1, pduWriteRegisters(1, []uint16{0x000A, 0x0102}), "00 03 00 00 00 0B 01 10 00 01 00 02 04 00 0A 01 02"},
		{"FC2B basic from 0", 4, 1, pduReadDeviceID(DevIDBasic, 0), "00 04 00 00 00 05 01 2B 0E 01 00"},
		{"FC2B regular from 3, unit 255", 5, 0xFF, pduReadDeviceID(DevIDRegular, 3), "00 05 00 00 00 05 FF 2B 0E 02 03"},
	}
	for _, tt := range tests {
		got := appendMBAP(nil, tt.tid, tt.unit, tt.pdu)
		if want := testutil.Unhex(t, tt.want); !bytes.Equal(got, want) {
			t.Errorf("%s: encoded % X, want % X", tt.name, got, want)
		}
	}
	// The largest request, FC 16 with 123 registers: length 1 + 1 + 5 + 246 = 253.
	big := appendMBAP(nil, 7, 1, pduWriteRegisters(0, make([]uint16, MaxWriteRegisters)))
	if len(big) != MBAPHeaderLen+252 || binary.BigEndian.Uint16(big[4:]) != 253 || len(big) > MaxTCPADU {
		t.Errorf("FC16 x123: %d bytes, length field %d", len(big), binary.BigEndian.Uint16(big[4:]))
	}
}

func TestMBAPHeaderDecode(t *testing.T) {
	good := []struct {
		hdr  string
		want mbapHeader
	}{
		{"00 01 00 00 00 07 01", mbapHeader{tid: 1, length: 7, unit: 1}},
		{"15 01 00 00 00 05 FF", mbapHeader{tid: 0x1501, length: 5, unit: 0xFF}},
		{"FF FF 00 00 00 02 00", mbapHeader{tid: 0xFFFF, length: 2, unit: 0}}, // smallest: unit + FC
		{"00 09 00 00 00 FE 11", mbapHeader{tid: 9, length: 254, unit: 0x11}}, // largest: unit + 253-byte PDU
	}
	for _, tt := range good {
		got, err := parseMBAPHeader(testutil.Unhex(t, tt.hdr))
		if err != nil || got != tt.want {
			t.Errorf("% s: got %+v, %v; want %+v", tt.hdr, got, err, tt.want)
		}
	}
	for _, hdr := range []string{
		"00 01 00 01 00 06 01", // protocol id 1
		"00 01 FF FF 00 06 01", // protocol id 0xFFFF
		"00 01 00 00 00 00 01", // length 0
		"00 01 00 00 00 01 01", // length 1: no function code
		"00 01 00 00 00 FF 01", // length 255: PDU of 254 bytes
		"00 01 00 00 01 00 01", // length 256
		"00 01 00 00 FF FF 01",
	} {
		if _, err := parseMBAPHeader(testutil.Unhex(t, hdr)); !errors.Is(err, ErrBadFrame) {
			t.Errorf("% s: err = %v, want ErrBadFrame", hdr, err)
		}
	}
}

func TestDecodeTCPReply(t *testing.T) {
	req := testutil.Unhex(t, "00 01 00 00 00 06 01 03 00 00 00 02")
	regs := func(data []byte) error { _, err := checkReadReply(2, data); return err }
	if err := decodeTCPReply(req, 1, testutil.Unhex(t, "03 04 00 27 00 00"), regs); err != nil {
		t.Errorf("good reply: %v", err)
	}
	var ex *ExceptionError
	if err := decodeTCPReply(req, 1, testutil.Unhex(t, "83 02"), regs); !errors.As(err, &ex) || ex.Code != 2 || ex.Function != 3 {
		t.Errorf("exception: %v", err)
	}
	var wu *WrongUnitError
	if err := decodeTCPReply(req, 2, testutil.Unhex(t, "03 04 00 27 00 00"), regs); !errors.As(err, &wu) || wu.Want != 1 || wu.Got != 2 {
		t.Errorf("wrong unit: %v", err)
	}
	for _, pdu := range []string{"04 04 00 27 00 00", "84 02", "83", "83 02 00", "03 02 00 27", "03 04 00 27 00"} {
		if err := decodeTCPReply(req, 1, testutil.Unhex(t, pdu), regs); !errors.Is(err, ErrBadFrame) {
			t.Errorf("PDU % s: err = %v, want ErrBadFrame", pdu, err)
		}
	}
	// 0x2B over TCP: the MBAP length frames the object list; ParseDeviceIDReply checks it.
	req2B := testutil.Unhex(t, "00 02 00 00 00 05 01 2B 0E 01 00")
	var part DeviceIDPart
	parse := func(data []byte) (err error) { part, err = ParseDeviceIDReply(data); return err }
	if err := decodeTCPReply(req2B, 1, testutil.Unhex(t, "2B 0E 01 81 00 00 02 00 03 61 62 63 01 02 78 79"), parse); err != nil ||
		!reflect.DeepEqual(part.Objects, []DeviceIDObject{{0, "abc"}, {1, "xy"}}) {
		t.Errorf("0x2B reply: %+v, %v", part, err)
	}
	if err := decodeTCPReply(req2B, 1, testutil.Unhex(t, "2B 0E 01 81 00 00 02 00 03 61 62 63"), parse); !errors.Is(err, ErrBadFrame) {
		t.Errorf("0x2B lying object count: err = %v, want ErrBadFrame", err)
	}
}

func TestNewTCPErrors(t *testing.T) {
	for _, cfg := range []TCPConfig{
		{},
		{Address: "192.168.1.10"},
		{Address: "192.168.1.10:"},
		{Address: "fe80::1:502"},
		{Address: "127.0.0.1:502", Timeout: -time.Second},
		{Address: "127.0.0.1:502", DialTimeout: -time.Second},
		{Address: "127.0.0.1:502", MinBackoff: -time.Second},
		{Address: "127.0.0.1:502", MinBackoff: time.Second, MaxBackoff: time.Millisecond},
	} {
		if _, err := NewTCP(cfg); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("NewTCP(%+v): err = %v, want ErrInvalidRequest", cfg, err)
		}
	}
}

func TestTCPConfigDefaults(t *testing.T) {
	// Nothing listens there: NewTCP must not connect.
	m, err := NewTCP(TCPConfig{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatalf("NewTCP: %v", err)
	}
	defer m.Close()
	c := m.Config()
	if c.Timeout != DefaultTCPTimeout || c.DialTimeout != DefaultTCPTimeout || c.MinBackoff != DefaultMinBackoff || c.MaxBackoff != DefaultMaxBackoff {
		t.Errorf("defaults %+v", c)
	}
	if m.Address() != "127.0.0.1:1" || m.Timeout() != DefaultTCPTimeout {
		t.Errorf("Address %q, Timeout %v", m.Address(), m.Timeout())
	}
	if st := m.Stats(); st.Dials != 0 {
		t.Errorf("NewTCP dialled: %+v", st)
	}
	if m.Resync() != 0 {
		t.Errorf("Resync() = %v, want 0 (no resync on TCP)", m.Resync())
	}
	m2, err := NewTCP(TCPConfig{Address: "[::1]:502", Timeout: time.Second, MinBackoff: 10 * time.Second})
	if err != nil {
		t.Fatalf("NewTCP: %v", err)
	}
	defer m2.Close()
	if c := m2.Config(); c.DialTimeout != time.Second || c.MaxBackoff != 10*time.Second {
		t.Errorf("derived defaults %+v", c)
	}
}

func TestTCPReadHolding(t *testing.T) {
	srv := startTCPServer(t, tcpStatus)
	m := newTCPMaster(t, srv, testTCPConfig(""))
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		regs, err := m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0, 2)
		if err != nil {
			t.Fatalf("ReadRegisters: %v", err)
		}
		if !reflect.DeepEqual(regs, []uint16{0x0027, 0}) {
			t.Errorf("registers %04X", regs)
		}
	}
	want := [][]byte{
		testutil.Unhex(t, "00 01 00 00 00 06 01 03 00 00 00 02"),
		testutil.Unhex(t, "00 02 00 00 00 06 01 03 00 00 00 02"),
	}
	if reqs := srv.requests(); !reflect.DeepEqual(reqs, want) {
		t.Errorf("requests on the wire\n% X\nwant\n% X", reqs, want)
	}
	st := m.Stats()
	if st.Requests != 2 || st.Replies != 2 || st.Dials != 1 || st.Resets != 0 || st.Timeouts != 0 {
		t.Errorf("stats %+v", st)
	}
	if accepted, _ := srv.counts(); accepted != 1 {
		t.Errorf("%d connections accepted, want 1", accepted)
	}
}

func TestTCPUnits0And255(t *testing.T) {
	srv := startTCPServer(t, tcpStatus)
	m := newTCPMaster(t, srv, testTCPConfig(""))
	ctx := context.Background()
	for _, unit := range []byte{0, 0xFF, 248} {
		if _, err := m.ReadRegisters(ctx, unit, FuncReadHoldingRegisters, 0, 2); err != nil {
			t.Errorf("unit %d: %v", unit, err)
		}
	}
	if err := m.WriteRegister(ctx, 0, 0, 0); !IsAnswer(err) {
		t.Errorf("write to unit 0 is no broadcast on TCP, it gets a reply: err = %v", err)
	}
	reqs := srv.requests()
	if len(reqs) != 4 || reqs[0][6] != 0 || reqs[1][6] != 0xFF || reqs[2][6] != 248 || reqs[3][6] != 0 {
		t.Errorf("requests % X", reqs)
	}
}

func TestTCPInvalidRequests(t *testing.T) {
	srv := startTCPServer(t, tcpStatus)
	m := newTCPMaster(t, srv, testTCPConfig(""))
	ctx := context.Background()
	checks := []struct {
		name string
		err  error
	}{
		{"qty 0", second(m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0, 0))},
		{"qty 126", second(m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0, 126))},
		{"past address 65535", second(m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0xFFFF, 2))},
		{"read coils", second(m.ReadRegisters(ctx, 1, 0x01, 0, 1))},
		{"write 0 registers", m.WriteRegisters(ctx, 1, 0, nil)},
		{"write 124 registers", m.WriteRegisters(ctx, 1, 0, make([]uint16, 124))},
		{"device id code 0", second(m.ReadDeviceIdentification(ctx, 1, 0))},
		{"device id code 5", second(m.ReadDeviceIDPart(ctx, 1, 5, 0))},
	}
	for _, c := range checks {
		if !errors.Is(c.err, ErrInvalidRequest) {
			t.Errorf("%s: err = %v, want ErrInvalidRequest", c.name, c.err)
		}
		if c.err != nil && !strings.HasPrefix(c.err.Error(), srv.addr+" unit 1: ") {
			t.Errorf("%s: error %q does not name address and unit", c.name, c.err)
		}
	}
	if n := len(srv.requests()); n != 0 {
		t.Errorf("%d invalid requests reached the wire", n)
	}
	if st := m.Stats(); st.Dials != 0 {
		t.Errorf("invalid requests dialled: %+v", st)
	}
}

func TestTCPException(t *testing.T) {
	srv := startTCPServer(t, tcpStatus)
	m := newTCPMaster(t, srv, testTCPConfig(""))
	ctx := context.Background()
	_, err := m.ReadRegisters(ctx, 3, FuncReadInputRegisters, 0, 2)
	var ex *ExceptionError
	if !errors.As(err, &ex) || ex.Function != FuncReadInputRegisters || ex.Code != 1 {
		t.Fatalf("err = %v, want exception 1 of FC 04", err)
	}
	if !IsAnswer(err) {
		t.Errorf("IsAnswer(%v) = false", err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, srv.addr+" unit 3: ") {
		t.Errorf("error %q does not name address and unit", msg)
	}
	if _, err := m.ReadRegisters(ctx, 3, FuncReadHoldingRegisters, 0, 2); err != nil {
		t.Errorf("request after exception: %v", err)
	}
	if st := m.Stats(); st.Exceptions != 1 || st.Replies != 1 || st.Resets != 0 || st.Dials != 1 {
		t.Errorf("stats %+v: an exception is a valid reply, the connection stays", st)
	}
}

// faultyFirstTCP answers request 0 with bad(req) (written as is; nil: silence) and
// closes the connection afterwards when hangUp is set; every later request normally.
func faultyFirstTCP(bad func(req []byte) []byte, hangUp bool) tcpHandler {
	return func(ctx context.Context, n int, req []byte, c net.Conn) {
		if n == 0 {
			if b := bad(req); b != nil {
				write(c, b)
			}
			if hangUp {
				_ = c.Close()
			}
			return
		}
		tcpStatus(ctx, n, req, c)
	}
}

func TestTCPFaultyReplies(t *testing.T) {
	good := func(req []byte) []byte { return reply(req, regsPDU(FuncReadHoldingRegisters, 0x0027, 0)...) }
	isBad := func(err error) bool { return errors.Is(err, ErrBadFrame) }
	isShort := func(err error) bool { return errors.Is(err, ErrShortFrame) }
	badStat := func(s TCPStats) uint64 { return s.BadFrames }
	shortStat := func(s TCPStats) uint64 { return s.ShortFrames }
	tests := []struct {
		name   string
		bad    func(req []byte) []byte
		hangUp bool
		check  func(error) bool
		stat   func(TCPStats) uint64
		reset  bool // the master must close the connection and redial
	}{
		{"wrong unit", func(req []byte) []byte {
			return mbap(tidOf(req), 0, -1, req[6]+1, regsPDU(FuncReadHoldingRegisters, 0x0027, 0)...)
		}, false, func(err error) bool {
			var wu *WrongUnitError
			return errors.As(err, &wu) && wu.Want == 1 && wu.Got == 2 && !IsAnswer(err)
		}, func(s TCPStats) uint64 { return s.WrongUnits }, false},
		{"protocol id 1", func(req []byte) []byte {
			return mbap(tidOf(req), 1, -1, req[6], regsPDU(FuncReadHoldingRegisters, 0x0027, 0)...)
		}, false, isBad, badStat, true},
		{"length 0", func(req []byte) []byte { return mbap(tidOf(req), 0, 0, req[6]) }, false, isBad, badStat, true},
		{"length 1", func(req []byte) []byte { return mbap(tidOf(req), 0, 1, req[6]) }, false, isBad, badStat, true},
		{"length 300", func(req []byte) []byte {
			return mbap(tidOf(req), 0, 300, req[6], regsPDU(FuncReadHoldingRegisters, 0x0027, 0)...)
		}, false, isBad, badStat, true},
		{"length one short of the PDU", func(req []byte) []byte {
			// Length says 6 (unit + 5-byte PDU) but 6 PDU bytes follow: the byte count
			// disagrees with the framed PDU, and a stray byte is left on the stream.
			return mbap(tidOf(req), 0, 6, req[6], regsPDU(FuncReadHoldingRegisters, 0x0027, 0)...)
		}, false, isBad, badStat, true},
		{"byte count 2 for 2 registers", func(req []byte) []byte {
			return reply(req, regsPDU(FuncReadHoldingRegisters, 0x0027)...)
		}, false, isBad, badStat, true},
		{"wrong function", func(req []byte) []byte {
			return reply(req, regsPDU(FuncReadInputRegisters, 0x0027, 0)...)
		}, false, isBad, badStat, true},
		{"exception with 2 data bytes", func(req []byte) []byte { return reply(req, 0x83, 2, 0) }, false, isBad, badStat, true},
		{"transaction id never sent", func(req []byte) []byte {
			r := good(req)
			binary.BigEndian.PutUint16(r, tidOf(req)+5)
			return r
		}, false, isBad, badStat, true},
		{"silence", func([]byte) []byte { return nil }, false,
			func(err error) bool { return errors.Is(err, ErrTimeout) }, func(s TCPStats) uint64 { return s.Timeouts }, true},
		{"header, then silence", func(req []byte) []byte { return good(req)[:MBAPHeaderLen] }, false, isShort, shortStat, true},
		{"half a PDU, then silence", func(req []byte) []byte { return good(req)[:10] }, false, isShort, shortStat, true},
		{"three header bytes, then close", func(req []byte) []byte { return good(req)[:3] }, true, isShort, shortStat, true},
		{"half a PDU, then close", func(req []byte) []byte { return good(req)[:10] }, true, isShort, shortStat, true},
		{"close without reply", func([]byte) []byte { return nil }, true, func(err error) bool {
			return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
		}, func(s TCPStats) uint64 { return s.IOErrors }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startTCPServer(t, faultyFirstTCP(tt.bad, tt.hangUp))
			m := newTCPMaster(t, srv, testTCPConfig(""))
			ctx := context.Background()
			_, err := m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0, 2)
			if !tt.check(err) {
				t.Fatalf("err = %v", err)
			}
			if IsAnswer(err) || errors.Is(err, ErrUnreachable) {
				t.Errorf("IsAnswer or ErrUnreachable for %v", err)
			}
			if !strings.HasPrefix(err.Error(), srv.addr+" unit 1: ") {
				t.Errorf("error %q does not name address and unit", err)
			}
			regs, err := m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0, 2)
			if err != nil || !reflect.DeepEqual(regs, []uint16{0x0027, 0}) {
				t.Errorf("next request: %04X, %v", regs, err)
			}
			st := m.Stats()
			wantDials, wantResets := uint64(1), uint64(0)
			if tt.reset {
				wantDials, wantResets = 2, 1
			}
			if tt.stat(st) != 1 || st.Replies != 1 || st.Requests != 2 || st.Dials != wantDials || st.Resets != wantResets {
				t.Errorf("stats %+v, want %d dials and %d resets", st, wantDials, wantResets)
			}
			if accepted, _ := srv.counts(); uint64(accepted) != wantDials {
				t.Errorf("%d connections accepted, want %d", accepted, wantDials)
			}
		})
	}
}

// TestTCPLateReplyAfterTimeout: the device answers request 1 after the master's timeout
// (a slow device, not a test synchronisation), on the connection the master has since
// closed; request 2 must get its own reply, never request 1's.
func TestTCPLateReplyAfterTimeout(t *testing.T) {
	srv := startTCPServer(t, func(ctx context.Context, n int, req []byte, c net.Conn) {
		if n == 0 {
			deviceDelay(ctx, 120*time.Millisecond)
			write(c, reply(req, regsPDU(req[7], 0x1111, 0x1111)...))
			return
		}
		write(c, reply(req, regsPDU(req[7], 0x2222, 0x2222)...))
	})
	m := newTCPMaster(t, srv, TCPConfig{Timeout: 60 * time.Millisecond})
	ctx := context.Background()
	if _, err := m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0, 2); !errors.Is(err, ErrTimeout) {
		t.Fatalf("request 1: err = %v, want ErrTimeout", err)
	}
	for i := 0; i < 2; i++ {
		regs, err := m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0, 2)
		if err != nil {
			t.Fatalf("request %d: %v", i+2, err)
		}
		if !reflect.DeepEqual(regs, []uint16{0x2222, 0x2222}) {
			t.Fatalf("request %d got %04X: the late reply to request 1", i+2, regs)
		}
	}
	if st := m.Stats(); st.Timeouts != 1 || st.Resets != 1 || st.Dials != 2 || st.Replies != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestTCPRequestTiming: WithTimeout applies to its own request only, and WithResync is
// ignored on TCP. A request to a silent unit with a 30 ms timeout fails long before the
// 1 s default; the next request, without a timeout option (and with a resync of an hour,
// which TCP must ignore), gets the reply of a device that answers after 150 ms.
func TestTCPRequestTiming(t *testing.T) {
	const short = 30 * time.Millisecond
	srv := startTCPServer(t, func(ctx context.Context, n int, req []byte, c net.Conn) {
		if n == 0 {
			return // silent
		}
		deviceDelay(ctx, 150*time.Millisecond) // a slow device, not a synchronisation
		tcpStatus(ctx, n, req, c)
	})
	m := newTCPMaster(t, srv, TCPConfig{Timeout: time.Second})
	ctx := context.Background()
	start := time.Now()
	_, err := m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0, 2, WithTimeout(short))
	el := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "("+short.String()+")") {
		t.Fatalf("err = %v, want ErrTimeout naming the %v request timeout", err, short)
	}
	if el < short || el > 700*time.Millisecond {
		t.Errorf("short request failed after %v, want within [%v, 700ms]", el, short)
	}
	start = time.Now()
	regs, err := m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0, 2, WithResync(time.Hour))
	if err != nil || !reflect.DeepEqual(regs, []uint16{0x0027, 0}) {
		t.Fatalf("next request with the default timeout: %04X, %v", regs, err)
	}
	if el := time.Since(start); el > 900*time.Millisecond {
		t.Errorf("request took %v", el)
	}
	if st := m.Stats(); st.Timeouts != 1 || st.Replies != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestTCPStaleReplyDiscarded: a request abandoned by its ctx leaves its reply to come on
// a connection that stays open; the next request reads that late reply (an earlier
// transaction id), discards it, and gets its own reply on the same connection.
func TestTCPStaleReplyDiscarded(t *testing.T) {
	got, release := make(chan struct{}), make(chan struct{})
	srv := startTCPServer(t, func(ctx context.Context, n int, req []byte, c net.Conn) {
		switch n {
		case 0:
			close(got)
			select {
			case <-release:
			case <-ctx.Done():
				return
			}
			write(c, reply(req, regsPDU(req[7], 0x1111, 0x1111)...))
		case 1:
			// A duplicate of the reply to request 1 first, then the reply to request 2.
			stale := reply(req, regsPDU(req[7], 0x1111, 0x1111)...)
			binary.BigEndian.PutUint16(stale, tidOf(req)-1)
			write(c, stale)
			write(c, reply(req, regsPDU(req[7], 0x2222, 0x2222)...))
		default:
			write(c, reply(req, regsPDU(req[7], 0x3333, 0x3333)...))
		}
	})
	m := newTCPMaster(t, srv, TCPConfig{Timeout: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-got
		cancel()
	}()
	start := time.Now()
	if _, err := m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0, 2); !errors.Is(err, context.Canceled) {
		t.Fatalf("request 1: err = %v, want context.Canceled", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("cancel took %v", el)
	}
	close(release)
	for i, want := range []uint16{0x2222, 0x3333} {
		regs, err := m.ReadRegisters(context.Background(), 1, FuncReadHoldingRegisters, 0, 2)
		if err != nil {
			t.Fatalf("request %d: %v", i+2, err)
		}
		if !reflect.DeepEqual(regs, []uint16{want, want}) {
			t.Fatalf("request %d got %04X, want %04X", i+2, regs, want)
		}
	}
	reqs := srv.requests()
	if len(reqs) != 3 || tidOf(reqs[0]) != 1 || tidOf(reqs[1]) != 2 || tidOf(reqs[2]) != 3 {
		t.Errorf("requests % X", reqs)
	}
	if st := m.Stats(); st.StaleReplies != 2 || st.Dials != 1 || st.Resets != 0 || st.Replies != 2 {
		t.Errorf("stats %+v: two stale replies discarded on one connection", st)
	}
	// A caller whose ctx is already done never reaches the wire.
	if _, err := m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0, 2); !errors.Is(err, context.Canceled) {
		t.Errorf("done ctx: err = %v", err)
	}
	if n := len(srv.requests()); n != 3 {
		t.Errorf("%d requests after a done ctx, want 3", n)
	}
}

// TestTCPPeerClosesIdle: the server closes the connection between requests (e.g. its
// idle timeout); the next request redials and succeeds.
func TestTCPPeerClosesIdle(t *testing.T) {
	srv := startTCPServer(t, func(ctx context.Context, n int, req []byte, c net.Conn) {
		tcpStatus(ctx, n, req, c)
		if n == 0 {
			_ = c.Close()
		}
	})
	m := newTCPMaster(t, srv, testTCPConfig(""))
	ctx := context.Background()
	if _, err := m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0, 2); err != nil {
		t.Fatalf("request 1: %v", err)
	}
	testutil.Eventually(t, 5*time.Second, "the server to close the connection", func() bool { _, closed := srv.counts(); return closed == 1 })
	// The FIN travels on loopback; wait until the master's side can see it (no call is
	// in flight, so the connection is not in use).
	testutil.Eventually(t, 5*time.Second, "the close to reach the master", func() bool { return m.probe.closed() })
	regs, err := m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0, 2)
	if err != nil || !reflect.DeepEqual(regs, []uint16{0x0027, 0}) {
		t.Fatalf("request 2: %04X, %v", regs, err)
	}
	if st := m.Stats(); st.PeerCloses != 1 || st.Dials != 2 || st.Replies != 2 || st.IOErrors != 0 || st.Resets != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestTCPBackoff: the endpoint is down from the start (a gateway starts before its
// drive), comes up, goes down again. Time is the master's fake clock.
func TestTCPBackoff(t *testing.T) {
	srv := startTCPServer(t, tcpStatus)
	srv.stop()
	clk := newFakeClock()
	m := newTCPMaster(t, srv, TCPConfig{Timeout: 200 * time.Millisecond, MinBackoff: 100 * time.Millisecond, MaxBackoff: 400 * time.Millisecond})
	m.now = clk.Now
	ctx := context.Background()
	read := func() error {
		_, err := m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0, 2)
		return err
	}
	dials := func() uint64 { return m.Stats().Dials }

	err := read()
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("endpoint down: err = %v, want ErrUnreachable wrapping ECONNREFUSED", err)
	}
	if !strings.HasPrefix(err.Error(), srv.addr+" unit 1: ") {
		t.Errorf("error %q does not name address and unit", err)
	}
	// Each backoff: calls fail at once without dialling until it has run out; then one
	// dial, which fails and doubles the backoff, up to the cap.
	for i, backoff := range []time.Duration{100, 200, 400, 400} {
		backoff *= time.Millisecond
		n := dials()
		for _, step := range []time.Duration{0, backoff / 2, backoff/2 - time.Millisecond} {
			clk.Advance(step)
			err := read()
			if !errors.Is(err, ErrUnreachable) || !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("backoff %d: err = %v, want ErrUnreachable wrapping the dial error", i, err)
			}
			if dials() != n {
				t.Fatalf("backoff %d: dialled %v into a %v backoff", i, backoff/2+step, backoff)
			}
		}
		clk.Advance(time.Millisecond)
		if err := read(); !errors.Is(err, ErrUnreachable) || dials() != n+1 {
			t.Fatalf("after backoff %d: err = %v, %d dials, want a new failed dial", i, err, dials()-n)
		}
	}
	st := m.Stats()
	if st.Dials != 5 || st.DialFailures != 5 || st.Unreachable != 12 || st.Requests != 0 {
		t.Errorf("stats %+v", st)
	}

	// The endpoint comes back: at the end of the backoff the master reconnects.
	srv.restart()
	clk.Advance(399 * time.Millisecond)
	if err := read(); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("still in backoff: err = %v", err)
	}
	clk.Advance(time.Millisecond)
	if err := read(); err != nil {
		t.Fatalf("endpoint back: %v", err)
	}
	if err := read(); err != nil {
		t.Fatalf("endpoint back, second read: %v", err)
	}

	// Down again: the successful exchanges reset the backoff to MinBackoff.
	srv.stop()
	testutil.Eventually(t, 5*time.Second, "the close to reach the master", func() bool { return m.probe.closed() })
	n := dials()
	if err := read(); !errors.Is(err, ErrUnreachable) || dials() != n+1 {
		t.Fatalf("down again: err = %v", err)
	}
	clk.Advance(99 * time.Millisecond)
	if err := read(); !errors.Is(err, ErrUnreachable) || dials() != n+1 {
		t.Fatalf("down again, in backoff: err = %v", err)
	}
	clk.Advance(time.Millisecond)
	if err := read(); !errors.Is(err, ErrUnreachable) || dials() != n+2 {
		t.Fatalf("down again, after 100ms: err = %v, %d dials, want the backoff back at MinBackoff", err, dials()-n)
	}
}

func TestTCPDeviceIdentificationMoreFollows(t *testing.T) {
	srv := startTCPServer(t, func(_ context.Context, _ int, req []byte, c net.Conn) {
		if req[7] != FuncEncapsulatedInterface || req[8] != MEIReadDeviceID {
			return
		}
		switch obj := req[10]; obj {
		case 0:
			write(c, reply(req, devIDPDU(req[9], 0x81, true, 2,
				ObjVendorName, "rollcall firmware-sim", ObjProductCode, "RC-SIM-402")...))
		case 2:
			write(c, reply(req, devIDPDU(req[9], 0x81, false, 0, ObjMajorMinorRevision, "1.2")...))
		}
	})
	m := newTCPMaster(t, srv, testTCPConfig(""))
	id, err := m.ReadDeviceIdentification(context.Background(), 5, DevIDBasic)
	if err != nil {
		t.Fatalf("ReadDeviceIdentification: %v", err)
	}
	want := map[byte]string{ObjVendorName: "rollcall firmware-sim", ObjProductCode: "RC-SIM-402", ObjMajorMinorRevision: "1.2"}
	if id.Conformity != 0x81 || !reflect.DeepEqual(id.Objects, want) {
		t.Errorf("got %+v", id)
	}
	wantReqs := [][]byte{
		testutil.Unhex(t, "00 01 00 00 00 05 05 2B 0E 01 00"),
		testutil.Unhex(t, "00 02 00 00 00 05 05 2B 0E 01 02"),
	}
	if reqs := srv.requests(); !reflect.DeepEqual(reqs, wantReqs) {
		t.Errorf("requests\n% X\nwant\n% X", reqs, wantReqs)
	}
}

func TestTCPDeviceIdentificationErrors(t *testing.T) {
	t.Run("more than 32 continuations", func(t *testing.T) {
		srv := startTCPServer(t, func(_ context.Context, _ int, req []byte, c net.Conn) {
			write(c, reply(req, devIDPDU(req[9], 0x83, true, req[10]+1, req[10], "v")...))
		})
		m := newTCPMaster(t, srv, testTCPConfig(""))
		_, err := m.ReadDeviceIdentification(context.Background(), 1, DevIDExtended)
		if !errors.Is(err, ErrBadFrame) || !strings.HasPrefix(err.Error(), srv.addr+" unit 1: ") {
			t.Errorf("err = %v, want ErrBadFrame naming address and unit", err)
		}
		if n := len(srv.requests()); n != 1+MaxDeviceIDContinuations {
			t.Errorf("%d requests, want %d", n, 1+MaxDeviceIDContinuations)
		}
	})
	t.Run("unsupported", func(t *testing.T) {
		srv := startTCPServer(t, tcpStatus)
		m := newTCPMaster(t, srv, testTCPConfig(""))
		_, err := m.ReadDeviceIdentification(context.Background(), 1, DevIDBasic)
		var ex *ExceptionError
		if !errors.As(err, &ex) || ex.Function != FuncEncapsulatedInterface || ex.Code != 1 {
			t.Errorf("err = %v, want exception 1 of FC 0x2B", err)
		}
	})
	t.Run("lying object list", func(t *testing.T) {
		srv := startTCPServer(t, faultyFirstTCP(func(req []byte) []byte {
			return reply(req, testutil.Unhex(t, "2B 0E 01 81 00 00 02 00 01 41")...)
		}, false))
		m := newTCPMaster(t, srv, testTCPConfig(""))
		if _, err := m.ReadDeviceIdentification(context.Background(), 1, DevIDBasic); !errors.Is(err, ErrBadFrame) {
			t.Errorf("err = %v, want ErrBadFrame", err)
		}
	})
}

func TestTCPWrites(t *testing.T) {
	srv := startTCPServer(t, func(_ context.Context, n int, req []byte, c net.Conn) {
		switch {
		case n == 2: // wrong echo
			b := append([]byte(nil), req[7:12]...)
			b[4]++
			write(c, reply(req, b...))
		default: // FC 06 echoes the request; FC 16 echoes address and quantity
			write(c, reply(req, req[7:12]...))
		}
	})
	m := newTCPMaster(t, srv, testTCPConfig(""))
	ctx := context.Background()
	if err := m.WriteRegister(ctx, 1, 1, 3); err != nil {
		t.Errorf("WriteRegister: %v", err)
	}
	if err := m.WriteRegisters(ctx, 1, 1, []uint16{0x000A, 0x0102}); err != nil {
		t.Errorf("WriteRegisters: %v", err)
	}
	if err := m.WriteRegister(ctx, 1, 1, 3); !errors.Is(err, ErrBadFrame) {
		t.Errorf("wrong echo: err = %v, want ErrBadFrame", err)
	}
	want := [][]byte{
		testutil.Unhex(t, "00 01 00 00 00 06 01 06 00 01 00 03"),
		testutil.Unhex(t, "00 02 00 00 00 0B 01 10 00 01 00 02 04 00 0A 01 02"),
		testutil.Unhex(t, "00 03 00 00 00 06 01 06 00 01 00 03"),
	}
	if reqs := srv.requests(); !reflect.DeepEqual(reqs, want) {
		t.Errorf("requests\n% X\nwant\n% X", reqs, want)
	}
	if st := m.Stats(); st.Requests != 3 || st.Replies != 2 || st.BadFrames != 1 || st.Resets != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestTCPConcurrentCallers: goroutines polling different units share one connection;
// their requests are serialised (the server checks that nothing arrives while it
// answers) and each gets its own reply.
func TestTCPConcurrentCallers(t *testing.T) {
	const each = 10
	units := []byte{0, 1, 2, 3, 17, 247, 248, 255}
	srv := startTCPServer(t, func(ctx context.Context, _ int, req []byte, c net.Conn) {
		// A device that takes a moment to answer; meanwhile the master must send nothing.
		deviceDelay(ctx, 300*time.Microsecond)
		if n := socketInput(t, c); n != 0 {
			t.Errorf("%d bytes arrived while request % X was being answered", n, req)
		}
		addr := binary.BigEndian.Uint16(req[8:])
		write(c, reply(req, regsPDU(req[7], uint16(req[6])<<8|addr, ^addr)...))
	})
	m := newTCPMaster(t, srv, TCPConfig{Timeout: 5 * time.Second})
	var wg sync.WaitGroup
	for _, u := range units {
		wg.Add(1)
		go func(unit byte) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				addr := uint16(i)
				regs, err := m.ReadRegisters(context.Background(), unit, FuncReadHoldingRegisters, addr, 2)
				if err != nil {
					t.Errorf("unit %d read %d: %v", unit, i, err)
					return
				}
				if want := []uint16{uint16(unit)<<8 | addr, ^addr}; !reflect.DeepEqual(regs, want) {
					t.Errorf("unit %d read %d: got %04X, want %04X", unit, i, regs, want)
				}
			}
		}(u)
	}
	wg.Wait()
	total := uint64(len(units) * each)
	reqs := srv.requests()
	if uint64(len(reqs)) != total {
		t.Errorf("%d requests on the wire, want %d", len(reqs), total)
	}
	for i, r := range reqs {
		if tidOf(r) != uint16(i+1) {
			t.Errorf("request %d has transaction id %d", i, tidOf(r))
			break
		}
	}
	if st := m.Stats(); st.Replies != total || st.Requests != total || st.Dials != 1 {
		t.Errorf("stats %+v", st)
	}
	if accepted, _ := srv.counts(); accepted != 1 {
		t.Errorf("%d connections for one endpoint", accepted)
	}
}

// socketInput is how many bytes wait unread in the kernel on the server's end of c.
func socketInput(t testing.TB, c net.Conn) int {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Errorf("syscall conn: %v", err)
		return 0
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil || ierr != nil {
		t.Errorf("SIOCINQ: %v %v", err, ierr)
	}
	return n
}

func TestTCPContextWaitingForLock(t *testing.T) {
	got := make(chan struct{}, 1)
	srv := startTCPServer(t, func(_ context.Context, n int, req []byte, c net.Conn) {
		if n == 0 {
			got <- struct{}{} // silent
		}
	})
	m := newTCPMaster(t, srv, TCPConfig{Timeout: 5 * time.Second})
	done := make(chan error, 1)
	go func() {
		_, err := m.ReadRegisters(context.Background(), 1, FuncReadHoldingRegisters, 0, 2)
		done <- err
	}()
	<-got
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := m.ReadRegisters(ctx, 2, FuncReadHoldingRegisters, 0, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting for the lock: err = %v, want context.DeadlineExceeded", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("request in flight at Close: err = %v, want ErrClosed", err)
	}
	if n := len(srv.requests()); n != 1 {
		t.Errorf("%d requests on the wire, want 1", n)
	}
}

func TestTCPClose(t *testing.T) {
	got := make(chan struct{}, 1)
	srv := startTCPServer(t, func(context.Context, int, []byte, net.Conn) { got <- struct{}{} })
	m := newTCPMaster(t, srv, TCPConfig{Timeout: 5 * time.Second})
	done := make(chan error, 1)
	go func() {
		_, err := m.ReadRegisters(context.Background(), 1, FuncReadHoldingRegisters, 0, 2)
		done <- err
	}()
	<-got
	start := time.Now()
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("pending request: err = %v, want ErrClosed", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Close took %v", el)
	}
	testutil.Eventually(t, 5*time.Second, "the connection to close", func() bool { _, closed := srv.counts(); return closed == 1 })
	if _, err := m.ReadRegisters(context.Background(), 1, FuncReadHoldingRegisters, 0, 2); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: err = %v", err)
	}
	if err := m.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if accepted, _ := srv.counts(); accepted != 1 {
		t.Errorf("%d connections, want 1 (no redial after Close)", accepted)
	}
}

// BenchmarkTCPReadHolding2 is one FC 03 read of 2 registers from an instant server on
// loopback: MBAP framing, the connection lock and one TCP round trip.
func BenchmarkTCPReadHolding2(b *testing.B) {
	srv := startTCPServer(b, tcpStatus)
	m := newTCPMaster(b, srv, TCPConfig{})
	ctx := context.Background()
	for b.Loop() {
		if _, err := m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0, 2); err != nil {
			b.Fatal(err)
		}
	}
	if st := m.Stats(); st.Dials != 1 {
		b.Errorf("stats %+v", st)
	}
}

// TestTCPLongLivedContext: a master polling with one long-lived ctx (a gateway's) is
// watched once, not per request; when that ctx ends, the request in flight with it
// ends at once, while a request in flight with another ctx is not disturbed by the end
// of an earlier one.
func TestTCPLongLivedContext(t *testing.T) {
	silent := make(chan struct{}, 4)
	srv := startTCPServer(t, func(ctx context.Context, n int, req []byte, c net.Conn) {
		switch n {
		case 3: // silent: the request waits for its ctx
			silent <- struct{}{}
		case 5: // answered late
			silent <- struct{}{}
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
				return
			}
			tcpStatus(ctx, n, req, c)
		default:
			tcpStatus(ctx, n, req, c)
		}
	})
	m := newTCPMaster(t, srv, TCPConfig{Timeout: 5 * time.Second})
	life, end := context.WithCancel(context.Background())
	defer end()
	for range 3 {
		if _, err := m.ReadRegisters(life, 1, FuncReadHoldingRegisters, 0, 2); err != nil {
			t.Fatal(err)
		}
	}
	m.sem <- struct{}{}
	watched := m.watchDone == life.Done()
	<-m.sem
	if !watched {
		t.Fatal("the long-lived ctx is not the one watched")
	}
	go func() {
		<-silent
		end()
	}()
	start := time.Now()
	if _, err := m.ReadRegisters(life, 1, FuncReadHoldingRegisters, 0, 2); !errors.Is(err, context.Canceled) {
		t.Fatalf("request in flight when its ctx ended: err = %v, want context.Canceled", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("the end of the ctx took %v to interrupt the request", el)
	}
	// Another ctx: watched anew; the old watch (fired) interrupts nothing.
	other, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := m.ReadRegisters(other, 1, FuncReadHoldingRegisters, 0, 2); err != nil {
		t.Fatalf("request with a new ctx: %v", err)
	}
	if _, err := m.ReadRegisters(other, 1, FuncReadHoldingRegisters, 0, 2); err != nil {
		t.Fatalf("late-answered request: %v", err)
	}
	m.interrupt(life.Done()) // as if the old watch fired again: not this transaction's ctx
	if _, err := m.ReadRegisters(other, 1, FuncReadHoldingRegisters, 0, 2); err != nil {
		t.Fatalf("request after a foreign interrupt: %v", err)
	}
}

// BenchmarkTCPReadHolding2Cancellable is BenchmarkTCPReadHolding2 with a cancellable
// ctx, as a gateway polls: the ctx is watched once, not per request.
func BenchmarkTCPReadHolding2Cancellable(b *testing.B) {
	srv := startTCPServer(b, tcpStatus)
	m := newTCPMaster(b, srv, TCPConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.ReadRegisters(ctx, 1, FuncReadHoldingRegisters, 0, 2); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTCPTransact relays a request PDU and gets the reply PDU byte for byte under a
// transaction id of the master's own; an exception comes back as *ExceptionError.
func TestTCPTransact(t *testing.T) {
	srv := startTCPServer(t, func(_ context.Context, _ int, req []byte, c net.Conn) {
		switch req[7] {
		case FuncReadCoils:
			write(c, reply(req, 0x01, 0x02, 0xCD, 0x01))
		default:
			write(c, reply(req, req[7]|0x80, 3))
		}
	})
	tc, err := NewTCP(TCPConfig{Address: srv.addr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	got, err := tc.Transact(context.Background(), 7, []byte{0x01, 0x00, 0x13, 0x00, 0x0A})
	if want := []byte{0x01, 0x02, 0xCD, 0x01}; err != nil || !bytes.Equal(got, want) {
		t.Errorf("FC 01: % X, %v; want % X", got, err, want)
	}
	_, err = tc.Transact(context.Background(), 7, []byte{0x06, 0x00, 0x01, 0x00, 0x03})
	if ex := (*ExceptionError)(nil); !errors.As(err, &ex) || ex.Function != 6 || ex.Code != 3 {
		t.Errorf("FC 06: %v; want exception 3 of function 6", err)
	}
	if _, err := tc.Transact(context.Background(), 7, []byte{0x08, 0, 0, 0, 0}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("FC 08: %v; want ErrInvalidRequest", err)
	}
	reqs := srv.requests()
	if len(reqs) != 2 || reqs[0][6] != 7 || !bytes.Equal(reqs[0][7:], []byte{0x01, 0x00, 0x13, 0x00, 0x0A}) {
		t.Errorf("requests on the wire: % X", reqs)
	}
}
