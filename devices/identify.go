package devices

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/devices/cia402"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
	"github.com/rollcall-edge/rollcall/registry"
)

// MaxObjectLen bounds every identification string kept from a device (bytes, after
// cleaning). Longer values are cut at a rune boundary.
const MaxObjectLen = 128

// Identification is what a responder said about itself through FC 0x2B/0x0E.
type Identification struct {
	// Objects are the cleaned identification objects (basic, regular and extended ones the
	// device gave). Nil when the device answered the basic request with an exception: it
	// has no Read Device Identification, and only the fallback profile can match it.
	Objects map[byte]string
}

// Identify reads the basic, regular and extended identification objects of a unit
// (Modbus Application Protocol V1.1b3 §6.21). An exception to the basic request means
// "present, but no device identification" (Objects nil, no error); exceptions to the
// regular and extended requests are ignored (those categories are optional). Any other
// error (timeout, CRC, framing) is returned: the unit did not answer properly.
func Identify(ctx context.Context, c modbus.Client, unit byte) (Identification, error) {
	basic, err := c.ReadDeviceIdentification(ctx, unit, modbus.DevIDBasic)
	return IdentifyAfter(ctx, c, unit, basic, err)
}

// IdentifyAfter is Identify when the basic request was already made (e.g. as a bus
// sweep probe, with a probe timeout): basic and err are its outcome.
func IdentifyAfter(ctx context.Context, c modbus.Client, unit byte, basic *modbus.DeviceIdentification, err error) (Identification, error) {
	if err != nil {
		if modbus.IsAnswer(err) {
			return Identification{}, nil
		}
		return Identification{}, err
	}
	objs := map[byte]string{}
	merge := func(d *modbus.DeviceIdentification) {
		for id, v := range d.Objects {
			objs[id] = CleanString(v)
		}
	}
	merge(basic)
	for _, code := range []byte{modbus.DevIDRegular, modbus.DevIDExtended} {
		// Conformity level says which categories exist (§6.21: 0x01/0x81 basic,
		// 0x02/0x82 regular, 0x03/0x83 extended); ask only for those.
		if basic.Conformity&0x7F < code {
			break
		}
		d, err := c.ReadDeviceIdentification(ctx, unit, code)
		if err != nil {
			if modbus.IsAnswer(err) {
				continue
			}
			return Identification{}, err
		}
		merge(d)
	}
	return Identification{Objects: objs}, nil
}

// CleanString makes a device-supplied string safe to keep and publish: invalid UTF-8
// and control characters become U+FFFD or are dropped, NUL padding and surrounding
// spaces are trimmed, and the result is at most MaxObjectLen bytes.
func CleanString(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r == 0 {
			return -1
		}
		if unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > MaxObjectLen {
		cut := MaxObjectLen
		for cut > 0 && !utf8RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// ReadIdentity builds the published identity of a matched device: vendor, product code,
// revision and model from the identification objects (ModelName, else ProductName), and
// the serial number from the profile's identity.serial source. A failed serial read is
// returned as an error (the caller retries identification later).
func ReadIdentity(ctx context.Context, c modbus.Client, unit byte, p *Profile, id Identification) (contract.Identity, error) {
	o := id.Objects
	ident := contract.Identity{
		Vendor:      o[modbus.ObjVendorName],
		ProductCode: o[modbus.ObjProductCode],
		Revision:    o[modbus.ObjMajorMinorRevision],
		Model:       o[modbus.ObjModelName],
	}
	if ident.Model == "" {
		ident.Model = o[modbus.ObjProductName]
	}
	s := p.Identity.Serial
	switch {
	case s == nil:
	case s.Object != nil:
		ident.Serial = o[byte(*s.Object)]
	case s.Registers != nil:
		r := s.Registers
		regs, err := c.ReadRegisters(ctx, unit, r.FunctionCode(), r.Address, r.Count)
		if err != nil {
			return ident, fmt.Errorf("serial number registers %d+%d: %w", r.Address, r.Count, err)
		}
		ident.Serial = CleanString(RegistersToASCII(regs))
	}
	return ident, nil
}

// RegistersToASCII unpacks registers holding ASCII, two characters per register, high
// byte first (the common Modbus string convention), stopping at the first NUL.
func RegistersToASCII(regs []uint16) string {
	b := make([]byte, 0, 2*len(regs))
	for _, r := range regs {
		b = append(b, byte(r>>8), byte(r))
	}
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// Poll reads a device's status per its profile: the heartbeat. hasDeviceID says whether
// the device implements FC 0x2B (for profiles whose heartbeat is device identification).
// opts are passed to the request (e.g. modbus.WithTimeout for a per-request timeout).
// The result is classified once, by Classify, into Outcome: OutcomeOK and
// OutcomeException are Answered, an exception is also Degraded (alive but refusing);
// a CiA 402 fault or warning bit in a valid reply is Degraded. Any other outcome is a
// failed poll. RTT is measured around the request. last is the State of the device's
// previous poll (nil: none): when the device still reports the same, o.State is last
// itself, not a new map (cia402.Status.MapReusing), so a steady device's poll does not
// allocate one.
func Poll(ctx context.Context, c modbus.Client, unit byte, p *Profile, hasDeviceID bool, last map[string]any,
	opts ...modbus.RequestOption) registry.Observation {
	st := &p.Status
	start := time.Now()
	var regs []uint16
	var err error
	if st.DeviceID && (hasDeviceID || st.Read == nil) {
		_, err = c.ReadDeviceIdentification(ctx, unit, modbus.DevIDBasic, opts...)
	} else {
		regs, err = c.ReadRegisters(ctx, unit, st.Read.FunctionCode(), st.Read.Address, st.Read.Count, opts...)
	}
	end := time.Now()
	out := Classify(err)
	o := registry.Observation{At: end, RTT: end.Sub(start), Err: err, Outcome: out,
		Answered: out.Answered(), Degraded: out == registry.OutcomeException}
	if out != registry.OutcomeOK {
		return o
	}
	if st.Decode == DecodeCIA402 && len(regs) == int(st.Read.Count) {
		var ec uint16
		if st.ErrorCode != nil {
			ec = regs[*st.ErrorCode]
		}
		s := cia402.DecodeStatus(regs[st.Statusword], ec)
		o.Degraded = s.Degraded()
		o.State = s.MapReusing(last)
	}
	return o
}
