package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/devices"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/internal/termios"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
	"golang.org/x/sys/unix"
)

// scanResult is one unit that answered a scan: who it says it is and what the gateway
// would make of it (JSON field names as in the instance record where they overlap).
type scanResult struct {
	Unit     int            `json:"unit"`
	ID       string         `json:"id,omitempty"` // the instance id, when the device reports a serial number
	Vendor   string         `json:"vendor,omitempty"`
	Product  string         `json:"product_code,omitempty"`
	Revision string         `json:"revision,omitempty"`
	Model    string         `json:"model,omitempty"`
	Serial   string         `json:"serial,omitempty"`
	Profile  string         `json:"profile"`
	Service  string         `json:"service"`
	DeviceID bool           `json:"device_id"` // answers FC 0x2B/0x0E
	State    map[string]any `json:"state,omitempty"`
	RTTMS    float64        `json:"rtt_ms"`
	Error    string         `json:"error,omitempty"` // answered the probe, but identity or poll failed
}

// scanCmd is `rollcall scan --device PATH --baud N [--units 1-247] [--json]`.
type scanCmd struct {
	Device   string        `required:"" placeholder:"PATH" help:"Serial device, e.g. /dev/ttyUSB0."`
	Baud     int           `default:"19200" placeholder:"N" help:"Baud rate (default ${default})."`
	Parity   string        `enum:"none,even,odd" default:"none" help:"Parity: none, even or odd."`
	Units    string        `default:"1-247" placeholder:"1-247" help:"Unit IDs to scan, e.g. 1-32 or 1,3,5-7 (default ${default})."`
	Timeout  time.Duration `default:"50ms" help:"Reply timeout per request."`
	JSON     bool          `name:"json" help:"Print one JSON object per device instead of a table."`
	Profiles string        `placeholder:"DIR" help:"Directory of device profiles (default: the built-in ones)."`

	units []int // Units, parsed by Validate
}

// Help is the text of `rollcall scan --help`.
func (scanCmd) Help() string {
	return `Probes each unit ID with a basic Read Device Identification (FC 0x2B/0x0E), identifies every unit that answers, matches a profile and polls it once, printing each device as it is found. The ID column is the short form of the id the gateway will give the device (the full id is in --json); "-" when it has no serial number (its id then depends on the gateway's config: <gateway>-<bus>-u<unit>).

While it runs, the scan is the bus master, and an RS-485 bus has one master: a running gateway holds (locks) every bus in its config for as long as it runs. The scan refuses a bus that a gateway, another scan or any other program holding the device's lock has, naming the holder's pid and command line; stop the gateway (or take the bus out of its config) first.

Exit status: 0 at least one device answered, 1 none did, 2 usage error, port cannot be opened, or bus in use.

Examples:

    rollcall scan --device /dev/ttyUSB0 --baud 115200
    rollcall scan --device /dev/serial/by-id/usb-FTDI_RS485-if00 --baud 19200 --parity even --units 1-32
    rollcall scan --device /dev/ttyUSB0 --baud 115200 --units 1,3,5-7 --json`
}

// Validate parses --units (kong calls it after parsing).
func (c *scanCmd) Validate() error {
	units, err := config.ParseUnits(c.Units)
	if err != nil {
		return fmt.Errorf("--units: %w", err)
	}
	c.units = units
	return nil
}

// Run is a one-shot commissioning scan of a serial bus. It probes each unit ID with a
// basic Read Device Identification (FC 0x2B/0x0E), identifies every unit that answers
// (even with an exception), matches a profile and polls it once, printing each device
// as it is found and progress on stderr. It opens the bus with modbus.OpenRTU, which
// locks the device: a bus held by another master (a running gateway) is refused with a
// message naming the holder (modbus.ErrBusInUse), before anything is sent. Exit
// status: 0 when at least one device answered, 1 when none did, 2 on usage errors, when
// the port cannot be opened or when the bus is in use.
func (c *scanCmd) Run(ctx context.Context, s *streams) error {
	stdout, stderr, units := s.stdout, s.stderr, c.units
	var err error
	var profiles *devices.Profiles
	if c.Profiles != "" {
		profiles, err = devices.LoadProfiles([]string{c.Profiles})
	} else {
		profiles, err = devices.BuiltinProfiles()
	}
	if err != nil {
		return usagef("--profiles: %v", err)
	}
	bus, err := modbus.OpenRTU(modbus.SerialConfig{Device: c.Device, Baud: c.Baud, Parity: c.Parity, Timeout: c.Timeout})
	if errors.Is(err, modbus.ErrBusInUse) {
		// Printed here, whole: the holder and what to do about it.
		fmt.Fprintf(stderr, "rollcall: %v\nrollcall scan: not scanning %s: a running gateway holds every bus in its config; stop it, or take this bus out of its config, first\n", err, c.Device)
		return errBusInUse
	}
	if err != nil {
		return usagef("%v", err)
	}
	defer bus.Close()

	tty := isTerminal(stderr)
	if !c.JSON {
		fmt.Fprintln(stdout, scanColumns().row("UNIT", "ID", "VENDOR", "PRODUCT", "REV", "MODEL", "SERIAL", "PROFILE", "STATE", "RTT ms"))
	}
	start := time.Now()
	found := 0
	for i, u := range units {
		if ctx.Err() != nil {
			break
		}
		if tty {
			fmt.Fprintf(stderr, "\rscanning unit %d (%d/%d), %d found ", u, i+1, len(units), found)
		} else if (i+1)%32 == 0 {
			fmt.Fprintf(stderr, "scan: %d/%d units, %d found\n", i+1, len(units), found)
		}
		r, ok := scanUnit(ctx, bus, profiles, u)
		if !ok {
			continue
		}
		found++
		if tty {
			fmt.Fprint(stderr, "\r\033[K")
		}
		if c.JSON {
			b, _ := json.Marshal(r)
			fmt.Fprintln(stdout, string(b))
			continue
		}
		state := "-"
		if s, ok := r.State["cia402"]; ok {
			state = fmt.Sprint(s)
		}
		if r.Error != "" {
			state = "error: " + r.Error
		}
		fmt.Fprintln(stdout, scanColumns().row(strconv.Itoa(r.Unit), dash(r.shortID()), dash(r.Vendor), dash(r.Product), dash(r.Revision),
			dash(r.Model), dash(r.Serial), r.Profile, state, fmt.Sprintf("%.2f", r.RTTMS)))
	}
	if tty {
		fmt.Fprint(stderr, "\r\033[K")
	}
	fmt.Fprintf(stderr, "scan: %d of %d unit IDs answered on %s at %d baud in %.1f s\n", found, len(units), c.Device, c.Baud, time.Since(start).Seconds())
	if ctx.Err() != nil {
		return fmt.Errorf("scan interrupted")
	}
	if found == 0 {
		return errNoneFound
	}
	return nil
}

// errBusInUse: the scan's bus is held by another master; printed whole by the scan
// (exit status 2).
var errBusInUse = errors.New("bus in use")

// scanUnit probes one unit; ok is false when nothing answered.
func scanUnit(ctx context.Context, bus modbus.Client, profiles *devices.Profiles, unit int) (scanResult, bool) {
	ident, err := devices.Identify(ctx, bus, byte(unit))
	if err != nil {
		return scanResult{}, false
	}
	p := profiles.Match(ident.Objects)
	r := scanResult{Unit: unit, Profile: p.Name, Service: p.Service, DeviceID: ident.Objects != nil}
	id, err := devices.ReadIdentity(ctx, bus, byte(unit), p, ident)
	r.Vendor, r.Product, r.Revision, r.Model, r.Serial = id.Vendor, id.ProductCode, id.Revision, id.Model, id.Serial
	if id.Serial != "" {
		r.ID = contract.InstanceID(id, "", "") // the gateway and bus do not count when there is a serial
	}
	if err != nil {
		r.Error = err.Error()
		return r, true
	}
	o := devices.Poll(ctx, bus, byte(unit), p, r.DeviceID, nil)
	r.RTTMS = float64(o.RTT.Microseconds()) / 1000
	r.State = o.State
	if !o.Answered {
		r.Error = fmt.Sprint(o.Err)
	}
	return r, true
}

// columns are fixed column widths (in characters) of a table printed a row at a time,
// as a scan finds devices: every row lines up with the header, whatever comes later. A
// longer value is cut, ending in "…"; the last column is not padded.
type columns []int

// scanColumns are the widths of `rollcall scan`'s table: unit, short id, vendor,
// product code, revision, model, serial, profile, state, round trip.
func scanColumns() columns { return columns{4, 14, 22, 12, 6, 14, 14, 20, 20, 8} }

// row lays out one row, cells separated by two spaces.
func (c columns) row(cells ...string) string {
	var b strings.Builder
	for i, cell := range cells {
		if i > 0 {
			b.WriteString("  ")
		}
		if i == len(cells)-1 || i >= len(c) {
			b.WriteString(cell)
			continue
		}
		r := []rune(cell)
		if len(r) > c[i] {
			r = append(r[:c[i]-1], '…')
		}
		b.WriteString(string(r))
		b.WriteString(strings.Repeat(" ", c[i]-len(r)))
	}
	return strings.TrimRight(b.String(), " ")
}

// shortID is the short form (shortID) of the id the gateway will give the device, ""
// when that depends on the gateway's config (no serial number).
func (r scanResult) shortID() string {
	if r.ID == "" {
		return ""
	}
	return shortID(r.ID, contract.Identity{Vendor: r.Vendor, Serial: r.Serial}, "")
}

// dash is s, or "-" for nothing.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// isTerminal reports whether w is a terminal (it has terminal attributes: /dev/null,
// a character device too, is not one), for progress output and the demo's screen.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return termios.Control(f, func(fd int) error {
		_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		return err
	}) == nil
}
