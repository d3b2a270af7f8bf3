package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rollcall-edge/rollcall/firmware-sim/drive"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
)

// Config is a firmware-sim configuration (DESIGN.md, "Config sketch"):
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
//	tcp:                           # schema only: not implemented yet
//	  - name: tcp1
//	    listen: 127.0.0.1:15020
//	    drives: [{unit: 1, serial: SIM-0101}]
//	    mdns: {instance: axis-7, service: _modbus._tcp, txt: {cell: "2"}}
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
	// TCP are Modbus TCP listeners: accepted by the schema, not implemented yet.
	TCP []TCPListener

	lines map[string]int // key path (e.g. "buses[0].baud") → source line
}

// Control configures the control API.
type Control struct {
	// Listen is the host:port of the HTTP control API ("127.0.0.1:0" picks a free
	// port); "" disables it.
	Listen string
}

// Bus is one simulated RS-485 bus.
type Bus struct {
	// Name identifies the bus in the control API and in logs: 1–64 characters of
	// A–Z a–z 0–9 . _ -, unique among buses and TCP listeners.
	Name string
	// Link is the path of the symlink to the bus's pseudo-terminal (/dev/pts/N); its
	// parent directory is created.
	Link string
	// Baud is the emulated line speed in bits/s, > 0.
	Baud int
	// Turnaround is the emulated processing time of a drive before it replies, ≥ 0.
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
	// Unit is the Modbus unit ID, 1–247, unique per bus.
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
}

// TCPListener is a Modbus TCP listener (schema only; New rejects a config with any).
type TCPListener struct {
	Name   string  // unique among buses and listeners
	Listen string  // host:port
	Drives []Drive // units served
	MDNS   *MDNS   // nil: not advertised
}

// MDNS is a DNS-SD advertisement of a TCP listener.
type MDNS struct {
	Instance string            // instance name
	Service  string            // service type, e.g. _modbus._tcp
	TXT      map[string]string // TXT record key/values
}

// ConfigError is a configuration problem: "file:line: key: message". File and Line are
// omitted when unknown (a config built in code).
type ConfigError struct {
	File string // config file path
	Line int    // 1-based line, 0 when unknown
	Key  string // key path, e.g. "buses[0].baud"
	Msg  string // what is wrong and what is expected
}

// Error implements error.
func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// LoadConfig reads, decodes and validates the YAML config at path. Errors are
// *ConfigError values (several joined with errors.Join) naming path, line and key, or
// the read error wrapped with the path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("firmware-sim config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes and validates a YAML config; name is used in error messages.
// Decoding is strict: unknown and duplicate keys and values of the wrong type are
// errors (*ConfigError) naming name, line and key.
func ParseConfig(name string, data []byte) (*Config, error) {
	l := &loader{file: name, lines: make(map[string]int)}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ConfigError{File: name, Msg: "empty config: at least one bus is required"}
		}
		return nil, yamlError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &ConfigError{File: name, Line: extra.Line, Msg: "more than one YAML document"}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlError(name, err)
	}
	cfg := &Config{File: name, lines: l.lines}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if err := l.config(root, cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// yamlError turns a YAML syntax error ("yaml: line 3: ...") into a ConfigError.
func yamlError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if n, perr := strconv.Atoi(rest[:i]); perr == nil {
				line, msg = n, strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return &ConfigError{File: file, Line: line, Msg: "invalid YAML: " + msg}
}

// loader walks the YAML node tree, checking keys and scalar types.
type loader struct {
	file  string
	lines map[string]int
}

func (l *loader) errf(n *yaml.Node, key, format string, args ...any) error {
	return &ConfigError{File: l.file, Line: n.Line, Key: key, Msg: fmt.Sprintf(format, args...)}
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// describe names what a node is, for "got ..." in messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "an unsupported YAML node"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapping checks that n is a mapping with only the given keys, no duplicates, and calls
// set for each key in document order. A null node is an empty mapping.
func (l *loader) mapping(n *yaml.Node, path string, keys []string, set func(key string, v *yaml.Node, kpath string) error) error {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		what := "must"
		if path == "" {
			what = "the config must"
		}
		return l.errf(n, path, "%s be a mapping with keys %s, got %s", what, strings.Join(keys, ", "), describe(n))
	}
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return l.errf(k, path, "keys must be strings, got %s", describe(k))
		}
		kp := join(path, k.Value)
		if prev, dup := seen[k.Value]; dup {
			return l.errf(k, kp, "duplicate key (first at line %d)", prev)
		}
		seen[k.Value] = k.Line
		if !slices.Contains(keys, k.Value) {
			return l.errf(k, kp, "unknown key (expected one of: %s)", strings.Join(keys, ", "))
		}
		l.lines[kp] = k.Line
		if err := set(k.Value, v, kp); err != nil {
			return err
		}
	}
	return nil
}

// list checks that n is a list (null = empty) and calls each for every item.
func (l *loader) list(n *yaml.Node, path string, each func(i int, item *yaml.Node, ipath string) error) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return l.errf(n, path, "must be a list, got %s", describe(n))
	}
	for i, item := range n.Content {
		item = resolve(item)
		ip := fmt.Sprintf("%s[%d]", path, i)
		l.lines[ip] = item.Line
		if err := each(i, item, ip); err != nil {
			return err
		}
	}
	return nil
}

func (l *loader) str(n *yaml.Node, path string) (string, error) {
	if isNull(n) {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", l.errf(n, path, "must be a string, got %s", describe(n))
	}
	return n.Value, nil
}

// stringMap decodes a mapping of strings to strings (null = nil).
func (l *loader) stringMap(n *yaml.Node, path string) (map[string]string, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, l.errf(n, path, "must be a mapping of strings, got %s", describe(n))
	}
	out := make(map[string]string)
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return nil, l.errf(k, path, "keys must be strings, got %s", describe(k))
		}
		kp := join(path, k.Value)
		if prev, dup := seen[k.Value]; dup {
			return nil, l.errf(k, kp, "duplicate key (first at line %d)", prev)
		}
		seen[k.Value] = k.Line
		l.lines[kp] = k.Line
		s, err := l.str(v, kp)
		if err != nil {
			return nil, err
		}
		out[k.Value] = s
	}
	return out, nil
}

func (l *loader) integer(n *yaml.Node, path, expect string) (int, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return 0, l.errf(n, path, "must be %s, got %s", expect, describe(n))
	}
	var v int
	if err := n.Decode(&v); err != nil {
		return 0, l.errf(n, path, "must be %s, got %s", expect, describe(n))
	}
	return v, nil
}

func (l *loader) duration(n *yaml.Node, path string) (time.Duration, error) {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		if d, err := time.ParseDuration(n.Value); err == nil && d >= 0 {
			return d, nil
		}
	}
	return 0, l.errf(n, path, "must be a non-negative duration such as \"1ms\", got %s", describe(n))
}

func (l *loader) boolean(n *yaml.Node, path string) (bool, error) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		return false, l.errf(n, path, "must be true or false, got %s", describe(n))
	}
	return b, nil
}

func (l *loader) config(root *yaml.Node, cfg *Config) error {
	return l.mapping(root, "", []string{"control", "buses", "tcp"}, func(key string, v *yaml.Node, p string) error {
		switch key {
		case "control":
			return l.mapping(v, p, []string{"listen"}, func(_ string, v *yaml.Node, p string) (err error) {
				cfg.Control.Listen, err = l.str(v, p)
				return err
			})
		case "buses":
			return l.list(v, p, func(_ int, item *yaml.Node, ip string) error {
				var b Bus
				if err := l.bus(item, ip, &b); err != nil {
					return err
				}
				cfg.Buses = append(cfg.Buses, b)
				return nil
			})
		default: // tcp
			return l.list(v, p, func(_ int, item *yaml.Node, ip string) error {
				var t TCPListener
				if err := l.tcp(item, ip, &t); err != nil {
					return err
				}
				cfg.TCP = append(cfg.TCP, t)
				return nil
			})
		}
	})
}

func (l *loader) bus(n *yaml.Node, path string, b *Bus) error {
	keys := []string{"name", "link", "baud", "turnaround", "parity", "devid_max_reply", "drives"}
	return l.mapping(n, path, keys, func(key string, v *yaml.Node, p string) (err error) {
		switch key {
		case "name":
			b.Name, err = l.str(v, p)
		case "link":
			b.Link, err = l.str(v, p)
		case "baud":
			b.Baud, err = l.integer(v, p, "a positive integer")
		case "turnaround":
			b.Turnaround, err = l.duration(v, p)
		case "parity":
			b.Parity, err = l.str(v, p)
		case "devid_max_reply":
			b.DevIDMaxReply, err = l.integer(v, p, "an integer from 16 to 253")
		case "drives":
			err = l.drives(v, p, &b.Drives)
		}
		return err
	})
}

func (l *loader) drives(n *yaml.Node, path string, out *[]Drive) error {
	keys := []string{"unit", "serial", "model", "revision", "enabled"}
	return l.list(n, path, func(_ int, item *yaml.Node, ip string) error {
		var d Drive
		err := l.mapping(item, ip, keys, func(key string, v *yaml.Node, p string) (err error) {
			switch key {
			case "unit":
				d.Unit, err = l.integer(v, p, "an integer from 1 to 247")
			case "serial":
				d.Serial, err = l.str(v, p)
			case "model":
				d.Model, err = l.str(v, p)
			case "revision":
				d.Revision, err = l.str(v, p)
			case "enabled":
				var on bool
				on, err = l.boolean(v, p)
				d.Disabled = !on
			}
			return err
		})
		if err != nil {
			return err
		}
		*out = append(*out, d)
		return nil
	})
}

func (l *loader) tcp(n *yaml.Node, path string, t *TCPListener) error {
	return l.mapping(n, path, []string{"name", "listen", "drives", "mdns"}, func(key string, v *yaml.Node, p string) (err error) {
		switch key {
		case "name":
			t.Name, err = l.str(v, p)
		case "listen":
			t.Listen, err = l.str(v, p)
		case "drives":
			err = l.drives(v, p, &t.Drives)
		case "mdns":
			if isNull(v) {
				return nil
			}
			m := &MDNS{}
			t.MDNS = m
			err = l.mapping(v, p, []string{"instance", "service", "txt"}, func(key string, v *yaml.Node, p string) (err error) {
				switch key {
				case "instance":
					m.Instance, err = l.str(v, p)
				case "service":
					m.Service, err = l.str(v, p)
				case "txt":
					m.TXT, err = l.stringMap(v, p)
				}
				return err
			})
		}
		return err
	})
}

// line returns the source line of a key path, or of its closest ancestor; 0 if none.
func (c *Config) line(path string) int {
	for path != "" {
		if n, ok := c.lines[path]; ok {
			return n
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// Validate checks the semantic rules: at least one bus or TCP listener; names of
// 1–64 characters of A–Z a–z 0–9 . _ - unique among buses and listeners; a link per
// bus; baud > 0; turnaround ≥ 0; parity none|even|odd; devid_max_reply 0 or 16–253;
// unit IDs 1–247 unique per bus or listener; serials of 1–16 printable ASCII
// characters unique in the config; model and revision printable ASCII, ≤ 64 bytes;
// listen addresses host:port. It returns every problem found, each a *ConfigError,
// joined with errors.Join.
func (c *Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &ConfigError{File: c.File, Line: c.line(path), Key: path, Msg: fmt.Sprintf(format, args...)})
	}
	if len(c.Buses) == 0 && len(c.TCP) == 0 {
		bad("buses", "at least one bus is required")
	}
	if c.Control.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Control.Listen); err != nil {
			bad("control.listen", "must be host:port such as 127.0.0.1:18081, got %q", c.Control.Listen)
		}
	}
	names := make(map[string]string)   // name → key path
	serials := make(map[string]string) // serial → key path
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
		}
	}
	for i, b := range c.Buses {
		p := fmt.Sprintf("buses[%d]", i)
		checkName(p, b.Name)
		if b.Link == "" {
			bad(p+".link", "required: the path of the symlink to the bus's pseudo-terminal")
		}
		if b.Baud <= 0 {
			bad(p+".baud", "must be a positive integer, got %d", b.Baud)
		}
		if b.Turnaround < 0 {
			bad(p+".turnaround", "must be a non-negative duration, got %v", b.Turnaround)
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
		checkDrives(p, "listener "+strconv.Quote(t.Name), t.Drives)
	}
	return errors.Join(errs...)
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
