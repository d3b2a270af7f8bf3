package sim

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rollcall-edge/rollcall/firmware-sim/drive"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/internal/yamlx"
	"github.com/rollcall-edge/rollcall/protocols/mdns"
)

// Config is a firmware-sim configuration (docs/design.md, "Configuration"):
//
//	control: {listen: 127.0.0.1:18081}
//	buses:
//	  - name: bus1
//	    link: /tmp/rollcall/bus1   # symlink to the pseudo-terminal
//	    baud: 115200               # bits/s, line-timing emulation
//	    turnaround: 1ms            # processing time before a reply
//	    parity: none               # none|even|odd; documentation only
//	    devid_max_reply: 253       # bytes per FC 0x2B reply PDU (16–253)
//	    drives:
//	      - {unit: 1, serial: SIM-0001, model: SIM-402-400W, revision: "1.2", enabled: true}
//	      - unit: 2
//	        serial: SIM-0002
//	        schedule:              # scripted faults, offsets from the simulator's start
//	          - {after: 10s, mode: silent}
//	          - {after: 15s, mode: slow, delay: 200ms}
//	          - {after: 20s, mode: noisy, rate: 0.05, seed: 7}
//	          - {after: 25s, mode: none}
//	        repeat: 30s            # optional: run the schedule again every 30 s
//	tcp:
//	  - name: tcp1
//	    listen: 127.0.0.1:15020    # port 0 picks a free port
//	    drives: [{unit: 1, serial: SIM-0101}]
//	    mdns:
//	      instance: axis-7
//	      service: _modbus._tcp    # default
//	      domain: local.           # default
//	      host: axis-7-sim         # default: the instance name slugged
//	      interfaces: [lo]         # default: every up multicast interface
//	      txt: {cell: "2", axis: "7"}
//
// Build one with LoadConfig or ParseConfig (which validate it), or in code and then
// call Validate.
type Config struct {
	// File is the path the config came from; it prefixes error messages ("" in code).
	File string
	// Control configures the fault-injection HTTP API.
	Control Control
	// Buses are the simulated RS-485 buses, one pseudo-terminal each.
	Buses []Bus
	// TCP are the Modbus TCP listeners.
	TCP []TCPListener

	doc *yamlx.Doc // where each key is, for error positions; nil in code
}

// Control configures the control API.
type Control struct {
	// Listen is the host:port of the HTTP control API ("127.0.0.1:0" picks a free
	// port); "" disables it.
	Listen string `yaml:"listen"`
}

// Bus is one simulated RS-485 bus.
type Bus struct {
	// Name identifies the bus in the control API and in logs: 1–64 characters of
	// A–Z a–z 0–9 . _ -, unique among buses and TCP listeners.
	Name string
	// Link is the path of the symlink to the bus's pseudo-terminal (/dev/pts/N); its
	// parent directory is created. Unique among buses (compared cleaned).
	Link string
	// Baud is the emulated line speed in bits/s, MinBaud–MaxBaud.
	Baud int
	// Turnaround is the emulated processing time of a drive before it replies,
	// 0–MaxTurnaround.
	Turnaround time.Duration
	// Parity is "none", "even" or "odd" ("" = none). Documentation only: a character
	// is 11 bits either way (Modbus over Serial Line V1.02 §2.5.1).
	Parity string
	// DevIDMaxReply is the largest FC 0x2B reply PDU in bytes (16–253); 0 means 253.
	DevIDMaxReply int
	// Drives are the units on the bus.
	Drives []Drive
}

// Drive is one simulated drive.
type Drive struct {
	// Unit is the Modbus unit ID, 1–247, unique per bus or listener.
	Unit int
	// Serial is 1–16 printable ASCII characters, unique in the config.
	Serial string
	// Model is object 0x05 ModelName ("" = drive.DefaultModel).
	Model string
	// Revision is object 0x02 MajorMinorRevision ("" = drive.DefaultRevision).
	Revision string
	// Disabled starts the drive in switch on disabled instead of operation enabled
	// (YAML `enabled: false`; the default is enabled).
	Disabled bool
	// Schedule is a scripted fault sequence: each step sets the drive's fault (as the
	// control API does) at its offset. Offsets are strictly increasing.
	Schedule []ScheduleStep
	// Repeat, when > 0, runs the schedule again every Repeat: step i fires at
	// start + k×Repeat + Schedule[i].After for k = 0, 1, … It needs a schedule, must
	// exceed the last step's After and is at most MaxScheduleAfter. 0 runs the schedule
	// once.
	Repeat time.Duration
}

// ScheduleStep is one step of a Drive's fault schedule (YAML
// `{after: 10s, mode: slow, delay: 200ms}`, `{after: 0s, mode: noisy, rate: 0.05}`).
type ScheduleStep struct {
	// After is the step's offset from the simulator's start (from the start of the
	// cycle with Drive.Repeat), 0–MaxScheduleAfter.
	After time.Duration
	// Fault is the fault to set: YAML keys mode (required: none, silent, slow,
	// exception, garbage, fault or noisy), delay (slow only, required there,
	// ≤ slave.MaxFaultDelay), code (exception only, 1–255, default 4), rate (noisy only,
	// required there: a probability 0–1) and seed (noisy only: an unsigned 64-bit
	// seed for a reproducible noise sequence; 0 or absent picks a random one).
	Fault slave.Fault
}

// TCPListener is one Modbus TCP listener (Modbus Messaging on TCP/IP Implementation
// Guide V1.0b) serving one drive — a drive directly on the network, which answers
// every unit ID — or several — a gateway, which answers exception 0x0B for a unit ID
// it does not serve (see slave.TCPServer).
type TCPListener struct {
	// Name identifies the listener in the control API and in logs: same rules as
	// Bus.Name, unique among buses and listeners.
	Name string
	// Listen is the host:port to listen on; port 0 picks a free port (see
	// Sim.ListenerAddr).
	Listen string
	// Drives are the units served: at least one.
	Drives []Drive
	// MDNS, when set, advertises the listener over mDNS/DNS-SD.
	MDNS *MDNS
}

// Defaults of MDNS.
const (
	DefaultMDNSService = "_modbus._tcp" // MDNS.Service when empty
	DefaultMDNSDomain  = "local."       // MDNS.Domain when empty
)

// MDNS is the mDNS/DNS-SD advertisement of a TCP listener (RFC 6762, RFC 6763),
// published with grandcat/zeroconf's RegisterProxy under its own host name.
type MDNS struct {
	// Instance is the service instance name (RFC 6763 §4.1.1): 1–63 bytes of
	// printable ASCII without '.' and '\'; unique per service and domain.
	Instance string `yaml:"instance"`
	// Service is the service type, "_name._tcp" or "_name._udp" with a name of 1–15
	// letters, digits and hyphens (RFC 6763 §7); "" means DefaultMDNSService.
	Service string `yaml:"service"`
	// Domain is the domain; "" means DefaultMDNSDomain.
	Domain string `yaml:"domain"`
	// Host is the host name label of the SRV target and the A/AAAA records (the domain
	// is appended): 1–63 letters, digits and hyphens, not starting or ending with a
	// hyphen; unique among listeners. "" means the instance name slugged (lower case,
	// runs of other characters replaced by one "-").
	Host string `yaml:"host"`
	// Interfaces are the network interface names to advertise on (e.g. [lo]); empty
	// means every interface that is up and multicast-capable. Checked at Start.
	Interfaces []string `yaml:"interfaces"`
	// TXT are free TXT record keys (RFC 6763 §6.4: printable ASCII without '=',
	// unique ignoring case, key=value at most 255 bytes). The keys vendor, model,
	// serial and unit are reserved: they always carry the first drive's values.
	TXT map[string]string `yaml:"txt"`
}

// MaxConfigBytes is the largest config file LoadConfig reads, in bytes (1 MiB): the
// config of 1000 TCP listeners that cmd/rollcall-bench runs is about 80 KiB. A larger
// file is refused after a Stat, without being read.
const MaxConfigBytes = yamlx.MaxDocumentBytes

// faultModes lists the fault modes for messages.
const faultModes = "none, silent, slow, exception, garbage, fault, noisy"

// Ranges of the numeric settings (see Validate).
const (
	MinBaud          = 300            // bits/s; no RS-485 line runs slower
	MaxBaud          = 4_000_000      // bits/s; faster than RS-485 transceivers go
	MaxTurnaround    = time.Second    // a drive slower to answer is beyond every master's timeout
	MaxScheduleAfter = 24 * time.Hour // ScheduleStep.After and Drive.Repeat: a simulator run lasts hours at most
)

// ConfigError is a configuration problem, "file:line:column: key: message"; the file
// and the position are left out when unknown (a config built in code). It is the
// *yamlx.Error of the shared strict YAML loader.
type ConfigError = yamlx.Error

// LoadConfig reads, decodes and validates the YAML config at path. Errors are
// *ConfigError values (several joined with errors.Join, in order of line) naming path,
// line, column and key, or the read error wrapped with the path. A file larger than
// MaxConfigBytes is refused without being read, with a *ConfigError naming path, its
// size and the limit.
func LoadConfig(path string) (*Config, error) {
	data, err := yamlx.ReadFile(path, MaxConfigBytes, "a firmware-sim config")
	if err != nil {
		if ce := (*ConfigError)(nil); errors.As(err, &ce) {
			return nil, err
		}
		return nil, fmt.Errorf("firmware-sim config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes and validates a YAML config; name is used in error messages.
// Decoding is strict (internal/yamlx): unknown and duplicate keys and values of the
// wrong type are errors, and so is every rule Validate checks. It reports every problem
// of the config at once, each a *ConfigError naming name, line, column and key, joined
// with errors.Join in order of line.
func ParseConfig(name string, data []byte) (*Config, error) {
	var y yamlConfig
	doc, err := yamlx.Decode(name, data, &y)
	if doc == nil { // malformed YAML
		return nil, err
	}
	errs := []error{err}
	cfg := &Config{File: name, doc: doc, Control: y.Control}
	for i, yb := range y.Buses {
		p := fmt.Sprintf("buses[%d]", i)
		b := Bus{Name: yb.Name, Link: yb.Link, Baud: yb.Baud, Turnaround: yb.Turnaround, Parity: yb.Parity, DevIDMaxReply: yb.DevIDMaxReply}
		b.Drives, errs = convertDrives(doc, p, yb.Drives, errs)
		cfg.Buses = append(cfg.Buses, b)
	}
	for i, yt := range y.TCP {
		p := fmt.Sprintf("tcp[%d]", i)
		t := TCPListener{Name: yt.Name, Listen: yt.Listen, MDNS: yt.MDNS}
		t.Drives, errs = convertDrives(doc, p, yt.Drives, errs)
		cfg.TCP = append(cfg.TCP, t)
	}
	errs = append(errs, cfg.Validate())
	if err := yamlx.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}

// The YAML form of a Config, decoded strictly by internal/yamlx. Where it differs from
// the Config types (enabled vs Drive.Disabled, the fault keys of a schedule step, keys
// that must be present) it has types of its own.
type (
	yamlConfig struct {
		Control Control   `yaml:"control"`
		Buses   []yamlBus `yaml:"buses"`
		TCP     []yamlTCP `yaml:"tcp"`
	}
	yamlBus struct {
		Name          string        `yaml:"name"`
		Link          string        `yaml:"link"`
		Baud          int           `yaml:"baud"`
		Turnaround    time.Duration `yaml:"turnaround"`
		Parity        string        `yaml:"parity"`
		DevIDMaxReply int           `yaml:"devid_max_reply"`
		Drives        []yamlDrive   `yaml:"drives"`
	}
	yamlTCP struct {
		Name   string      `yaml:"name"`
		Listen string      `yaml:"listen"`
		Drives []yamlDrive `yaml:"drives"`
		MDNS   *MDNS       `yaml:"mdns"`
	}
	yamlDrive struct {
		Unit     int           `yaml:"unit"`
		Serial   string        `yaml:"serial"`
		Model    string        `yaml:"model"`
		Revision string        `yaml:"revision"`
		Enabled  *bool         `yaml:"enabled"`
		Schedule []yamlStep    `yaml:"schedule"`
		Repeat   time.Duration `yaml:"repeat"`
	}
	yamlStep struct {
		After *time.Duration `yaml:"after"`
		Mode  *string        `yaml:"mode"`
		Delay *time.Duration `yaml:"delay"`
		Code  *int           `yaml:"code"`
		Rate  *float64       `yaml:"rate"`
		Seed  *uint64        `yaml:"seed"`
	}
)

// convertDrives turns the drives of a bus or listener (key path owner) into Drives,
// appending to errs what only the YAML form shows: a schedule step without after or
// mode, an explicit zero delay, an exception code outside 1–255, a noisy step without
// a rate.
func convertDrives(doc *yamlx.Doc, owner string, in []yamlDrive, errs []error) ([]Drive, []error) {
	var out []Drive
	for i, yd := range in {
		dp := fmt.Sprintf("%s.drives[%d]", owner, i)
		d := Drive{Unit: yd.Unit, Serial: yd.Serial, Model: yd.Model, Revision: yd.Revision,
			Disabled: yd.Enabled != nil && !*yd.Enabled, Repeat: yd.Repeat}
		for j, ys := range yd.Schedule {
			sp := fmt.Sprintf("%s.schedule[%d]", dp, j)
			var st ScheduleStep
			if ys.After == nil {
				errs = append(errs, doc.DecodeErrorf(sp+".after", "required: the step's offset, e.g. 10s"))
			} else {
				st.After = *ys.After
			}
			if ys.Mode == nil {
				errs = append(errs, doc.DecodeErrorf(sp+".mode", "required: one of %s", faultModes))
			} else {
				st.Fault.Mode = slave.FaultMode(*ys.Mode)
			}
			if ys.Delay != nil {
				if *ys.Delay == 0 {
					errs = append(errs, doc.DecodeErrorf(sp+".delay", `must be a positive duration such as "200ms", got 0s`))
				}
				st.Fault.Delay = *ys.Delay
			}
			if ys.Code != nil {
				if *ys.Code < 1 || *ys.Code > 255 {
					errs = append(errs, doc.DecodeErrorf(sp+".code", "must be an exception code from 1 to 255, got %d", *ys.Code))
				} else {
					st.Fault.Code = byte(*ys.Code)
				}
			}
			if ys.Rate != nil {
				st.Fault.Rate = *ys.Rate
			} else if st.Fault.Mode == slave.FaultNoisy {
				errs = append(errs, doc.DecodeErrorf(sp+".mode", "mode noisy needs a rate: the probability, 0 to 1, that a reply is corrupted and that a noise burst follows it, e.g. rate: 0.05"))
			}
			if ys.Seed != nil {
				st.Fault.Seed = *ys.Seed
			}
			d.Schedule = append(d.Schedule, st)
		}
		out = append(out, d)
	}
	return out, errs
}

// Validate checks the semantic rules: at least one bus or TCP listener; names of
// 1–64 characters of A–Z a–z 0–9 . _ - unique among buses and listeners; a link per
// bus, unique; baud MinBaud–MaxBaud; turnaround 0–MaxTurnaround; parity none|even|odd;
// devid_max_reply 0 or 16–253;
// unit IDs 1–247 unique per bus or listener; at least one drive per listener; serials
// of 1–16 printable ASCII characters unique in the config; model and revision
// printable ASCII, ≤ 64 bytes; listen addresses host:port; schedules (ScheduleStep,
// Drive.Repeat) and mDNS settings (MDNS) as their documentation says. It returns every
// problem found, each a *ConfigError (with file, line and column when the config came
// from ParseConfig), joined with errors.Join in order of line; nil when none.
func (c *Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		e := c.doc.Errorf(path, format, args...)
		e.File = c.File
		errs = append(errs, e)
	}
	if len(c.Buses) == 0 && len(c.TCP) == 0 {
		bad("buses", "at least one bus or tcp listener is required")
	}
	if c.Control.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Control.Listen); err != nil {
			bad("control.listen", "must be host:port such as 127.0.0.1:18081, got %q", c.Control.Listen)
		}
	}
	links := make(map[string]string)     // cleaned link → key path
	names := make(map[string]string)     // name → key path
	serials := make(map[string]string)   // serial → key path
	instances := make(map[string]string) // instance, service, domain → listener
	hosts := make(map[string]string)     // mDNS host, domain → listener
	checkName := func(path, name string) {
		p := path + ".name"
		if !validName(name) {
			bad(p, "must be 1–64 characters of A–Z a–z 0–9 . _ -, got %q", name)
			return
		}
		if prev, dup := names[name]; dup {
			bad(p, "duplicate name %q (also at line %d)", name, c.line(prev))
			return
		}
		names[name] = p
	}
	checkDrives := func(path, owner string, drives []Drive) {
		units := make(map[int]string)
		for i, d := range drives {
			dp := fmt.Sprintf("%s.drives[%d]", path, i)
			if d.Unit < 1 || d.Unit > 247 {
				bad(dp+".unit", "must be an integer from 1 to 247, got %d", d.Unit)
			} else if prev, dup := units[d.Unit]; dup {
				bad(dp+".unit", "duplicate unit %d on %s (also at line %d)", d.Unit, owner, c.line(prev))
			} else {
				units[d.Unit] = dp + ".unit"
			}
			switch err := drive.CheckText("serial", d.Serial, drive.MaxSerialLen); {
			case d.Serial == "":
				bad(dp+".serial", "required: 1–%d printable ASCII characters", drive.MaxSerialLen)
			case err != nil:
				bad(dp+".serial", "must be 1–%d printable ASCII characters, got %q", drive.MaxSerialLen, d.Serial)
			default:
				if prev, dup := serials[d.Serial]; dup {
					bad(dp+".serial", "duplicate serial %q (also at line %d)", d.Serial, c.line(prev))
				} else {
					serials[d.Serial] = dp + ".serial"
				}
			}
			if drive.CheckText("model", d.Model, drive.MaxTextLen) != nil {
				bad(dp+".model", "must be at most %d printable ASCII characters, got %q", drive.MaxTextLen, d.Model)
			}
			if drive.CheckText("revision", d.Revision, drive.MaxTextLen) != nil {
				bad(dp+".revision", "must be at most %d printable ASCII characters, got %q", drive.MaxTextLen, d.Revision)
			}
			checkSchedule(bad, dp, d)
		}
	}
	for i, b := range c.Buses {
		p := fmt.Sprintf("buses[%d]", i)
		checkName(p, b.Name)
		if b.Link == "" {
			bad(p+".link", "required: the path of the symlink to the bus's pseudo-terminal")
		} else if prev, dup := links[filepath.Clean(b.Link)]; dup {
			bad(p+".link", "duplicate link %q (also at line %d): each bus needs its own pseudo-terminal link", b.Link, c.line(prev))
		} else {
			links[filepath.Clean(b.Link)] = p + ".link"
		}
		switch {
		case b.Baud < MinBaud:
			bad(p+".baud", "must be an integer from %d to %d, got %d: at least %d (no RS-485 line runs slower)", MinBaud, MaxBaud, b.Baud, MinBaud)
		case b.Baud > MaxBaud:
			bad(p+".baud", "must be an integer from %d to %d, got %d: at most %d (faster than RS-485 transceivers go)", MinBaud, MaxBaud, b.Baud, MaxBaud)
		}
		switch {
		case b.Turnaround < 0:
			bad(p+".turnaround", "must be a non-negative duration, got %v", b.Turnaround)
		case b.Turnaround > MaxTurnaround:
			bad(p+".turnaround", "must be a duration from 0s to %v, got %v: at most %v (a drive slower to answer is beyond every master's timeout)",
				MaxTurnaround, b.Turnaround, MaxTurnaround)
		}
		switch b.Parity {
		case "", "none", "even", "odd":
		default:
			bad(p+".parity", "must be none, even or odd, got %q", b.Parity)
		}
		if b.DevIDMaxReply != 0 && (b.DevIDMaxReply < 16 || b.DevIDMaxReply > slave.MaxPDU) {
			bad(p+".devid_max_reply", "must be an integer from 16 to %d, got %d", slave.MaxPDU, b.DevIDMaxReply)
		}
		checkDrives(p, "bus "+strconv.Quote(b.Name), b.Drives)
	}
	for i, t := range c.TCP {
		p := fmt.Sprintf("tcp[%d]", i)
		checkName(p, t.Name)
		if _, _, err := net.SplitHostPort(t.Listen); err != nil {
			bad(p+".listen", "must be host:port such as 127.0.0.1:15020, got %q", t.Listen)
		}
		if len(t.Drives) == 0 {
			bad(p+".drives", "at least one drive is required")
		}
		checkDrives(p, "listener "+strconv.Quote(t.Name), t.Drives)
		if t.MDNS != nil {
			checkMDNS(bad, p+".mdns", t.Name, *t.MDNS, instances, hosts)
		}
	}
	return yamlx.Join(errs...)
}

// line returns the line of a key path (or of its nearest ancestor) in the config
// file, 0 for a config built in code.
func (c *Config) line(path string) int {
	line, _ := c.doc.Pos(path)
	return line
}

// checkSchedule checks a drive's fault schedule and repeat (dp: the drive's key path).
func checkSchedule(bad func(path, format string, args ...any), dp string, d Drive) {
	for j, st := range d.Schedule {
		sp := fmt.Sprintf("%s.schedule[%d]", dp, j)
		switch {
		case st.After < 0:
			bad(sp+".after", "must be a non-negative duration, got %v", st.After)
		case st.After > MaxScheduleAfter:
			bad(sp+".after", "must be a duration from 0s to %v, got %v: at most %v (a simulator run lasts hours at most)",
				MaxScheduleAfter, st.After, MaxScheduleAfter)
		case j > 0 && st.After <= d.Schedule[j-1].After:
			bad(sp+".after", "must be later than the previous step's after (%v), got %v", d.Schedule[j-1].After, st.After)
		}
		mode := st.Fault.Mode
		if _, err := slave.ParseFaultMode(string(mode)); err != nil {
			bad(sp+".mode", "must be one of %s, got %q", faultModes, string(mode))
			continue
		}
		if st.Fault.Delay != 0 && mode != slave.FaultSlow {
			bad(sp+".delay", "only valid with mode slow, not %s", mode)
		}
		if mode == slave.FaultSlow && (st.Fault.Delay <= 0 || st.Fault.Delay > slave.MaxFaultDelay) {
			bad(sp+".delay", "mode slow needs a delay from 1ns to %v, got %v", slave.MaxFaultDelay, st.Fault.Delay)
		}
		if st.Fault.Code != 0 && mode != slave.FaultException {
			bad(sp+".code", "only valid with mode exception, not %s", mode)
		}
		if mode == slave.FaultNoisy {
			if slave.CheckRate(st.Fault.Rate) != nil {
				bad(sp+".rate", "must be a probability from 0 to 1, e.g. 0.05, got %v", st.Fault.Rate)
			}
		} else {
			if st.Fault.Rate != 0 {
				bad(sp+".rate", "only valid with mode noisy, not %s", mode)
			}
			if st.Fault.Seed != 0 {
				bad(sp+".seed", "only valid with mode noisy, not %s", mode)
			}
		}
	}
	switch {
	case d.Repeat < 0:
		bad(dp+".repeat", "must be a non-negative duration, got %v", d.Repeat)
	case d.Repeat > MaxScheduleAfter:
		bad(dp+".repeat", "must be a duration from 0s to %v, got %v: at most %v (a simulator run lasts hours at most)",
			MaxScheduleAfter, d.Repeat, MaxScheduleAfter)
	case d.Repeat > 0 && len(d.Schedule) == 0:
		bad(dp+".repeat", "needs a schedule to repeat")
	case d.Repeat > 0 && d.Repeat <= d.Schedule[len(d.Schedule)-1].After:
		bad(dp+".repeat", "must be longer than the last step's after (%v), got %v", d.Schedule[len(d.Schedule)-1].After, d.Repeat)
	}
}

// reservedTXT reports whether a lower-case TXT key is one firmware-sim fills from the
// listener's first drive: vendor, model, serial, unit.
func reservedTXT(key string) bool {
	switch key {
	case "vendor", "model", "serial", "unit":
		return true
	}
	return false
}

// checkMDNS checks a listener's advertisement (mp: its key path); instances and hosts
// collect the names seen so far (lower case) for the uniqueness rules.
func checkMDNS(bad func(path, format string, args ...any), mp, listener string, m MDNS, instances, hosts map[string]string) {
	m = m.withDefaults(listener)
	switch {
	case m.Instance == "":
		bad(mp+".instance", "required: the DNS-SD instance name, e.g. axis-7")
	case !validInstance(m.Instance):
		bad(mp+".instance", "must be 1–63 bytes of printable ASCII without '.' and '\\', got %q", m.Instance)
	}
	var ste *mdns.ServiceTypeError
	if err := mdns.ValidServiceType(m.Service); errors.As(err, &ste) {
		bad(mp+".service", "must be a DNS-SD service type such as _modbus._tcp, got %q: %s", m.Service, ste.Reason)
	}
	if !validDomain(m.Domain) {
		bad(mp+".domain", "must be a domain name such as local., got %q", m.Domain)
	}
	if !validLabel(m.Host) {
		bad(mp+".host", "must be a host name label of 1–63 letters, digits and hyphens, not starting or ending with a hyphen, got %q", m.Host)
	}
	domain := strings.ToLower(strings.TrimSuffix(m.Domain, "."))
	if m.Instance != "" {
		key := strings.ToLower(m.Instance) + "\x00" + strings.ToLower(m.Service) + "\x00" + domain
		if prev, dup := instances[key]; dup {
			bad(mp+".instance", "duplicate instance %q of %s (also on listener %s)", m.Instance, m.Service, prev)
		} else {
			instances[key] = listener
		}
	}
	if m.Host != "" {
		key := strings.ToLower(m.Host) + "\x00" + domain
		if prev, dup := hosts[key]; dup {
			bad(mp+".host", "duplicate host name %q (also on listener %s): every advertised device needs its own", m.Host, prev)
		} else {
			hosts[key] = listener
		}
	}
	seenIf := make(map[string]bool)
	for i, name := range m.Interfaces {
		ip := fmt.Sprintf("%s.interfaces[%d]", mp, i)
		switch {
		case name == "":
			bad(ip, "must be a network interface name such as lo or eth0")
		case seenIf[name]:
			bad(ip, "duplicate interface %q", name)
		}
		seenIf[name] = true
	}
	keys := make([]string, 0, len(m.TXT))
	for k := range m.TXT {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	seenKey := make(map[string]string)
	for _, k := range keys {
		kp := mp + ".txt." + k
		lk := strings.ToLower(k)
		switch {
		case !validTXTKey(k):
			bad(kp, "TXT keys must be 1 or more printable ASCII characters without '=' (RFC 6763 §6.4), got %q", k)
		case reservedTXT(lk):
			bad(kp, "reserved: firmware-sim sets vendor, model, serial and unit from the listener's first drive")
		case seenKey[lk] != "":
			bad(kp, "duplicate TXT key %q (keys are case-insensitive; also %q)", k, seenKey[lk])
		case len(k)+1+len(m.TXT[k]) > 255:
			bad(kp, "key=value must be at most 255 bytes (RFC 6763 §6.1), got %d", len(k)+1+len(m.TXT[k]))
		}
		if seenKey[lk] == "" {
			seenKey[lk] = k
		}
	}
}

// withDefaults returns m with Service, Domain and Host defaulted (Host from the
// instance name, or from the listener name if the instance has no usable character).
func (m MDNS) withDefaults(listener string) MDNS {
	if m.Service == "" {
		m.Service = DefaultMDNSService
	}
	if m.Domain == "" {
		m.Domain = DefaultMDNSDomain
	}
	if m.Host == "" {
		m.Host = hostSlug(m.Instance)
		if m.Host == "" {
			m.Host = hostSlug(listener)
		}
	}
	return m
}

// hostSlug lower-cases s, replaces every run of characters other than a–z 0–9 by one
// "-", trims hyphens at both ends and cuts the result to 63 bytes (one DNS label).
func hostSlug(s string) string {
	var b strings.Builder
	dash := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteByte(c)
			continue
		}
		dash = true
	}
	out := b.String()
	if len(out) > 63 {
		out = strings.TrimRight(out[:63], "-")
	}
	return out
}

// validInstance: 1–63 bytes (RFC 6763 §4.1.1), printable ASCII without '.' and '\'
// (zeroconf v1.0.0 does not escape them).
func validInstance(s string) bool {
	if len(s) < 1 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7E || c == '.' || c == '\\' {
			return false
		}
	}
	return true
}

// validDomain: one or more valid labels separated by dots, optionally ending in a dot.
func validDomain(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if !validLabel(label) {
			return false
		}
	}
	return true
}

// validLabel: a host name label (RFC 1123 §2.1): 1–63 letters, digits and hyphens,
// not starting or ending with a hyphen.
func validLabel(s string) bool {
	if len(s) < 1 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validTXTKey: at least one printable ASCII character (0x20–0x7E), no '=' (RFC 6763 §6.4).
func validTXTKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7E || c == '=' {
			return false
		}
	}
	return true
}

// validName reports whether s is 1–64 characters of A–Z a–z 0–9 . _ -.
func validName(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
