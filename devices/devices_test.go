package devices

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/protocols/modbus"
	"github.com/rollcall-edge/rollcall/registry"
)

func TestShippedProfiles(t *testing.T) {
	ps, err := LoadProfiles([]string{"../configs/profiles"})
	if err != nil {
		t.Fatal(err)
	}
	sim := map[byte]string{0: "rollcall firmware-sim", 1: "RC-SIM-402", 4: "Simulated servo drive"}
	if p := ps.Match(sim); p.Name != "firmware-sim-drive" || p.Service != "servo-drive" {
		t.Fatalf("sim drive matched %s", p.Name)
	}
	other := map[byte]string{0: "ACME", 1: "X1", 4: "ACME Servo Drive 400W"}
	if p := ps.Match(other); p.Name != "cia402-generic" {
		t.Fatalf("generic drive matched %s", p.Name)
	}
	if p := ps.Match(map[byte]string{0: "ACME", 1: "IO-16"}); p.Name != "modbus-device" || !p.Fallback {
		t.Fatalf("unknown device matched %s", p.Name)
	}
	if p := ps.Match(nil); p.Name != "modbus-device" {
		t.Fatalf("device without 0x2B matched %s", p.Name)
	}
}

// TestBadProfiles: every problem of a profile file, in one run, in order of line, as
// "file:line:column: key: message".
func TestBadProfiles(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"unknown key", "name: a\nservice: s\nmatch: {vendor: x}\nstatus: {read: {count: 1}}\npolling: 3\n",
			[]string{`p.yaml:5:1: polling: unknown key "polling" (expected one of: name, service, priority, fallback, match, identity, status, meta)`}},
		{"bad name", "name: A B\nservice: s\nmatch: {vendor: x}\nstatus: {read: {count: 1}}\n",
			[]string{`p.yaml:1:1: name: expected a name of 1–64 characters [a-z0-9._-], got "A B"`}},
		{"bad regexp", "name: a\nservice: s\nmatch: {vendor: '('}\nstatus: {read: {count: 1}}\n",
			[]string{"p.yaml:3:9: match.vendor: expected a regular expression: error parsing regexp: missing closing ): `(`"}},
		{"no match", "name: a\nservice: s\nstatus: {read: {count: 1}}\n",
			[]string{`p.yaml:1:1: match: a profile that is not the fallback needs at least one of vendor, product_code, product_name, model`}},
		{"no status", "name: a\nservice: s\nmatch: {vendor: x}\n",
			[]string{`p.yaml:1:1: status: give status.read (the registers polled as heartbeat) or status.device_id: true`}},
		{"count", "name: a\nservice: s\nmatch: {vendor: x}\nstatus:\n  read: {count: 200}\n",
			[]string{`p.yaml:5:10: status.read.count: expected 1–125 registers, got 200`}},
		{"count not a number", "name: a\nservice: s\nmatch: {vendor: x}\nstatus:\n  read: {count: many}\n",
			[]string{`p.yaml:5:17: status.read.count: expected an integer from 0 to 65535, got "many"`}},
		{"function", "name: a\nservice: s\nmatch: {vendor: x}\nstatus:\n  read: {function: coil, count: 1}\n",
			[]string{`p.yaml:5:10: status.read.function: expected "holding" or "input", got "coil"`}},
		{"statusword offset", "name: a\nservice: s\nmatch: {vendor: x}\nstatus:\n  read: {count: 1}\n  decode: cia402\n  statusword: 1\n",
			[]string{`p.yaml:7:3: status.statusword: expected an offset within status.read (0–0), got 1`}},
		{"decoder", "name: a\nservice: s\nmatch: {vendor: x}\nstatus:\n  read: {count: 1}\n  decode: ds402\n",
			[]string{`p.yaml:6:3: status.decode: expected "none" or "cia402", got "ds402"`}},
		{"serial both", "name: a\nservice: s\nmatch: {vendor: x}\nidentity:\n  serial: {object: 128, registers: {count: 8}}\nstatus: {read: {count: 1}}\n",
			[]string{`p.yaml:5:3: identity.serial: give exactly one of object or registers`}},
		{"several mistakes in one run", "name: Servo Drive\nservice: s\nmatch: {vendor: '(', model: '['}\nidentity:\n  serial: {object: 300}\nstatus:\n  read: {function: coil, count: 0, adress: 4}\n  decode: cia402\n",
			[]string{
				`p.yaml:1:1: name: expected a name of 1–64 characters [a-z0-9._-], got "Servo Drive"`,
				"p.yaml:3:9: match.vendor: expected a regular expression: error parsing regexp: missing closing ): `(`",
				"p.yaml:3:22: match.model: expected a regular expression: error parsing regexp: missing closing ]: `[`",
				`p.yaml:5:12: identity.serial.object: expected an object id 0–255, got 300`,
				`p.yaml:7:10: status.read.function: expected "holding" or "input", got "coil"`,
				`p.yaml:7:26: status.read.count: expected 1–125 registers, got 0`,
				`p.yaml:7:36: status.read.adress: unknown key "adress" (expected one of: function, address, count)`,
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseProfile("p.yaml", []byte(tc.in))
			if err == nil {
				t.Fatal("accepted")
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Fatalf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestDuplicateAndFallbackProfiles(t *testing.T) {
	a, _ := ParseProfile("a.yaml", []byte("name: a\nservice: s\nmatch: {vendor: x}\nstatus: {read: {count: 1}}\n"))
	a2, _ := ParseProfile("a2.yaml", []byte("name: a\nservice: s\nmatch: {vendor: y}\nstatus: {read: {count: 1}}\n"))
	if _, err := NewProfiles([]*Profile{a, a2}); err == nil || !strings.Contains(err.Error(), `profile name "a" already used by a.yaml`) {
		t.Fatalf("duplicate: %v", err)
	}
	ps, err := NewProfiles([]*Profile{a})
	if err != nil || ps.Match(nil).Name != "modbus-device" || ps.Match(nil).File != "(built in)" {
		t.Fatalf("built-in fallback: %v", err)
	}
}

func TestCleanString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ACME\x00\x00\x00", "ACME"},
		{"  SN 42  ", "SN 42"},
		{"a\xffb", "a\uFFFDb"},
		{"a\nb", "a\uFFFDb"},
		{strings.Repeat("é", 100), strings.Repeat("é", 64)},
	}
	for _, tc := range tests {
		if got := CleanString(tc.in); got != tc.want {
			t.Errorf("CleanString(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := RegistersToASCII([]uint16{0x5349, 0x4D2D, 0x3031, 0x0000, 0x4142}); got != "SIM-01" {
		t.Errorf("RegistersToASCII = %q", got)
	}
}

// fakeClient answers from canned values; a unit test of decoding only (the real
// transport is exercised against firmware-sim in gateway's integration test).
type fakeClient struct {
	regs []uint16
	err  error
	ids  map[byte]*modbus.DeviceIdentification
	opts []modbus.RequestOption // of the last request
}

var _ modbus.Client = (*fakeClient)(nil)

func (f *fakeClient) ReadRegisters(ctx context.Context, unit, fn byte, addr, qty uint16, opts ...modbus.RequestOption) ([]uint16, error) {
	f.opts = opts
	return f.regs, f.err
}
func (f *fakeClient) WriteRegister(context.Context, byte, uint16, uint16, ...modbus.RequestOption) error {
	return nil
}
func (f *fakeClient) WriteRegisters(context.Context, byte, uint16, []uint16, ...modbus.RequestOption) error {
	return nil
}
func (f *fakeClient) ReadDeviceIdentification(ctx context.Context, unit, code byte, opts ...modbus.RequestOption) (*modbus.DeviceIdentification, error) {
	f.opts = opts
	if d, ok := f.ids[code]; ok {
		return d, nil
	}
	return nil, &modbus.ExceptionError{Function: 0x2B, Code: 2}
}
func (f *fakeClient) Transact(context.Context, byte, []byte, ...modbus.RequestOption) ([]byte, error) {
	return nil, errors.New("not used")
}
func (f *fakeClient) Timeout() time.Duration    { return time.Second }
func (f *fakeClient) Resync() time.Duration     { return 0 }
func (f *fakeClient) Counters() modbus.Counters { return modbus.Counters{} }
func (f *fakeClient) Close() error              { return nil }

func TestPollCIA402(t *testing.T) {
	ps, err := LoadProfiles([]string{"../configs/profiles"})
	if err != nil {
		t.Fatal(err)
	}
	p := ps.Match(map[byte]string{0: "rollcall firmware-sim", 1: "RC-SIM-402"})
	o := Poll(context.Background(), &fakeClient{regs: []uint16{0x0237, 0}}, 1, p, true, nil)
	if !o.Answered || o.Degraded || o.State["cia402"] != "operation_enabled" {
		t.Fatalf("enabled drive: %+v", o)
	}
	o = Poll(context.Background(), &fakeClient{regs: []uint16{0x0218, 0x2310}}, 1, p, true, nil)
	if !o.Answered || !o.Degraded || o.State["fault"] != true || o.State["error_code"] != 0x2310 {
		t.Fatalf("faulted drive: %+v", o)
	}
	if o.Outcome != registry.OutcomeOK {
		t.Fatalf("faulted drive (a valid reply): outcome %v, want ok", o.Outcome)
	}
	o = Poll(context.Background(), &fakeClient{err: &modbus.ExceptionError{Function: 3, Code: 4}}, 1, p, true, nil)
	if !o.Answered || !o.Degraded || o.Outcome != registry.OutcomeException || o.State != nil {
		t.Fatalf("exception: %+v", o)
	}
	o = Poll(context.Background(), &fakeClient{err: fmt.Errorf("bus1 unit 1: %w", modbus.ErrTimeout)}, 1, p, true, nil)
	if o.Answered || o.Degraded || o.Outcome != registry.OutcomeTimeout {
		t.Fatalf("timeout: %+v", o)
	}
	o = Poll(context.Background(), &fakeClient{err: modbus.ErrCRC}, 1, p, true, nil)
	if o.Answered || o.Outcome != registry.OutcomeBadFrame {
		t.Fatalf("CRC error: %+v", o)
	}
	// The previous poll's state is reused while the drive reports the same (no new
	// map), and never modified: a change gives a new map.
	enabled := Poll(context.Background(), &fakeClient{regs: []uint16{0x0237, 0}}, 1, p, true, nil).State
	again := Poll(context.Background(), &fakeClient{regs: []uint16{0x0237, 0}}, 1, p, true, enabled).State
	if reflect.ValueOf(again).UnsafePointer() != reflect.ValueOf(enabled).UnsafePointer() {
		t.Errorf("same state: a new map %v, want the last one reused", again)
	}
	steady := &fakeClient{regs: []uint16{0x0237, 0}}
	if allocs := testing.AllocsPerRun(100, func() {
		Poll(context.Background(), steady, 1, p, true, enabled)
	}); allocs > 0 {
		t.Errorf("a poll in an unchanged state allocates %v times", allocs)
	}
	faulted := Poll(context.Background(), &fakeClient{regs: []uint16{0x0218, 0x2310}}, 1, p, true, enabled).State
	if faulted["fault"] != true || faulted["error_code"] != 0x2310 || enabled["fault"] != false || enabled["error_code"] != 0 {
		t.Errorf("changed state: new %v, last %v (must stay as it was)", faulted, enabled)
	}
	// Request options reach the client.
	fc := &fakeClient{regs: []uint16{0x0237, 0}}
	Poll(context.Background(), fc, 1, p, true, nil, modbus.WithTimeout(7*time.Millisecond))
	if len(fc.opts) != 1 || fc.opts[0] != modbus.WithTimeout(7*time.Millisecond) {
		t.Errorf("options passed: %+v", fc.opts)
	}
}

// timeoutError is a net.Error that timed out (as an HTTP client's or dialer's).
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want registry.Outcome
	}{
		{nil, registry.OutcomeOK},
		{&modbus.ExceptionError{Function: 3, Code: 6}, registry.OutcomeException},
		{fmt.Errorf("bus1 unit 2: %w", &modbus.ExceptionError{Function: 3, Code: 2}), registry.OutcomeException},
		{fmt.Errorf("read: %w", modbus.ErrTimeout), registry.OutcomeTimeout},
		{context.DeadlineExceeded, registry.OutcomeTimeout},
		{&net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}, registry.OutcomeTimeout},
		{modbus.ErrCRC, registry.OutcomeBadFrame},
		{modbus.ErrShortFrame, registry.OutcomeBadFrame},
		{modbus.ErrBadFrame, registry.OutcomeBadFrame},
		{fmt.Errorf("x: %w", &modbus.WrongUnitError{Want: 2, Got: 3}), registry.OutcomeBadFrame},
		{fmt.Errorf("%w: refused", modbus.ErrUnreachable), registry.OutcomeOther},
		{context.Canceled, registry.OutcomeOther},
		{io.EOF, registry.OutcomeOther},
		{errors.New("GET http://x/: 503 Service Unavailable"), registry.OutcomeOther},
	} {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { Classify(modbus.ErrTimeout) }); n != 0 {
		t.Errorf("Classify(ErrTimeout): %v allocations", n)
	}
}

func TestIdentifyAndSerial(t *testing.T) {
	c := &fakeClient{ids: map[byte]*modbus.DeviceIdentification{
		modbus.DevIDBasic:    {Conformity: 0x83, Objects: map[byte]string{0: "rollcall firmware-sim", 1: "RC-SIM-402", 2: "1.2"}},
		modbus.DevIDRegular:  {Conformity: 0x83, Objects: map[byte]string{5: "SIM-402-400W"}},
		modbus.DevIDExtended: {Conformity: 0x83, Objects: map[byte]string{0x80: "SIM-0001\x00"}},
	}}
	id, err := Identify(context.Background(), c, 1)
	if err != nil || len(id.Objects) != 5 {
		t.Fatalf("identify: %+v %v", id, err)
	}
	ps, _ := LoadProfiles([]string{"../configs/profiles"})
	p := ps.Match(id.Objects)
	ident, err := ReadIdentity(context.Background(), c, 1, p, id)
	if err != nil || ident.Serial != "SIM-0001" || ident.Model != "SIM-402-400W" || ident.Revision != "1.2" {
		t.Fatalf("identity %+v %v", ident, err)
	}
	noDevID := &fakeClient{}
	id, err = Identify(context.Background(), noDevID, 1)
	if err != nil || id.Objects != nil {
		t.Fatalf("device without 0x2B: %+v %v", id, err)
	}
}

func TestEmbeddedProfiles(t *testing.T) {
	ps, err := BuiltinProfiles()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ps.All()); n != 3 {
		t.Fatalf("%d embedded profiles, want 3", n)
	}
}
