// Package config loads and validates the gateway's YAML configuration (docs/design.md,
// "Configuration"). Decoding is strict: an unknown key, a wrong type or an invalid value
// is an error naming the file, the line, the column and the key, and saying what is
// expected; every such problem of a file is reported in one run.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/yamlx"
	"github.com/rollcall-edge/rollcall/protocols/mdns"
)

// Config is the whole gateway configuration.
type Config struct {
	Gateway   Gateway   `yaml:"gateway"`
	MQTT      MQTT      `yaml:"mqtt"`
	Discovery Discovery `yaml:"discovery"`
	Health    Health    `yaml:"health"`
	Profiles  Profiles  `yaml:"profiles"`
	HTTP      HTTP      `yaml:"http"`
	Limits    Limits    `yaml:"limits"`
}

// Limits bound what the wire can make the gateway hold and publish. A cap that is hit
// is logged.
type Limits struct {
	// MaxInstances caps the live instances of the gateway. Default 2000.
	MaxInstances int `yaml:"max_instances"`
	// MaxRecordBytes caps one instance record's JSON size. Default 16384.
	MaxRecordBytes int `yaml:"max_record_bytes"`
	// MaxEndpoints caps the network endpoints polled for mDNS candidates. Default 512.
	MaxEndpoints int `yaml:"max_endpoints"`
}

// Gateway identifies this gateway.
type Gateway struct {
	// ID is the gateway id, a topic level: 1–64 characters [a-z0-9._-]. Default: the
	// host name, slugged.
	ID string `yaml:"id"`
	// StateDir keeps the epoch file. Default "./state".
	StateDir string `yaml:"state_dir"`
}

// MQTT configures the broker connection.
type MQTT struct {
	// Broker: "embedded" (default; an in-process broker) or a URL tcp://host:port,
	// ssl://host:port.
	Broker string `yaml:"broker"`
	// EmbeddedListen is the embedded broker's TCP listen address. Default 127.0.0.1:1883.
	EmbeddedListen string `yaml:"embedded_listen"`
	// EmbeddedAuth says who may use the embedded broker besides the gateway itself.
	// Default: nobody (anonymous clients refused).
	EmbeddedAuth EmbeddedAuth `yaml:"embedded_auth"`
	// TopicPrefix is <prefix> of the contract. Default "rollcall/v1".
	TopicPrefix string `yaml:"topic_prefix"`
	// ClientID: default "rollcall-<gateway id>".
	ClientID string `yaml:"client_id"`
	Username string `yaml:"username"`
	// PasswordFile holds the password (first line; trailing newline ignored). Or
	// PasswordEnv names an environment variable holding it. Never logged.
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	TLS          TLS    `yaml:"tls"`
}

// EmbeddedAuth configures the embedded broker's accounts. The gateway's own client
// always connects with a credential made at start, confined to its own subtree.
type EmbeddedAuth struct {
	// AllowAnonymous lets clients without a username read the catalog (<prefix>/#) and
	// use consumer sync topics (<prefix>/consumers/#). Default false.
	AllowAnonymous bool `yaml:"allow_anonymous"`
	// Users are named accounts.
	Users []EmbeddedUser `yaml:"users"`
}

// EmbeddedUser is one account of the embedded broker.
type EmbeddedUser struct {
	Username string `yaml:"username"`
	// PasswordFile or PasswordEnv gives the password (exactly one).
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// Read and Write are topic filters it may subscribe and publish to. Defaults:
	// read <prefix>/#, write <prefix>/consumers/#.
	Read  []string `yaml:"read"`
	Write []string `yaml:"write"`
}

// TLS configures the TLS client of an ssl:// broker.
type TLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Discovery lists where devices are looked for.
type Discovery struct {
	Serial []SerialBus `yaml:"serial"`
	TCP    []TCPTarget `yaml:"tcp"`
	MDNS   MDNS        `yaml:"mdns"`
}

// SerialBus is one RS-485 bus, swept for unit IDs and polled by one master.
type SerialBus struct {
	// Name is the bus name, used in endpoints, ids and logs: [a-z0-9._-], unique.
	Name string `yaml:"name"`
	// Device is the serial device path (/dev/ttyUSB0, or a firmware-sim link).
	Device string `yaml:"device"`
	// Baud: bits/s. Default 19200 (the Modbus over Serial Line V1.02 §2.2 default).
	Baud int `yaml:"baud"`
	// Parity: "none", "even" (the spec default) or "odd". Default "none".
	Parity string `yaml:"parity"`
	// StopBits: 1 or 2. Default 1.
	StopBits int `yaml:"stop_bits"`
	// Units to sweep: "1-32", "1,3,5-7". Default "1-247".
	Units string `yaml:"units"`
	// Timeout is the reply timeout of one request. Default 50 ms at ≥ 19200 baud, else
	// 200 ms.
	Timeout time.Duration `yaml:"timeout"`
	// PollInterval overrides health.poll_interval for this bus.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Turnaround is the slowest device turnaround assumed before one is observed: probes
	// of absent unit IDs wait t3.5 + the longest turnaround (observed or this) + margin.
	// Raise it for devices slower to answer than 5 ms. Default 5 ms.
	Turnaround time.Duration `yaml:"turnaround"`
	// FrameGap is the silence that ends a reply (and resync listening): default t3.5 +
	// 1 ms on a pseudo-terminal, + 20 ms on a USB adapter (latency timer), + 2 ms else.
	FrameGap time.Duration `yaml:"frame_gap"`
	// ProbeShare is the largest share of bus time given to probing absent unit IDs while
	// devices are being polled, 0 < share ≤ 1. Default 0.2.
	ProbeShare float64 `yaml:"probe_share"`
	// Meta is copied into the meta of every instance on this bus.
	Meta map[string]string `yaml:"meta"`
	// Devices adds meta per unit ID.
	Devices []UnitMeta `yaml:"devices"`

	// UnitList is Units parsed (ascending, unique). Set by Load.
	UnitList []int `yaml:"-"`
}

// UnitMeta attaches meta to one unit of a bus (e.g. {unit: 3, meta: {axis: "3"}}).
type UnitMeta struct {
	Unit int               `yaml:"unit"`
	Meta map[string]string `yaml:"meta"`
}

// TCPTarget is a static Modbus TCP endpoint: one connection shared by its unit IDs.
type TCPTarget struct {
	// Name is used in logs and in fallback instance ids: [a-z0-9._-], unique.
	Name string `yaml:"name"`
	// Address is host:port (port 502 is the Modbus TCP default).
	Address string `yaml:"address"`
	// Units to sweep behind the endpoint: "1", "1-4". Default "1".
	Units string `yaml:"units"`
	// Timeout is the reply timeout of one request. Default 500 ms.
	Timeout time.Duration `yaml:"timeout"`
	// PollInterval overrides health.poll_interval for this endpoint.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Meta is copied into the meta of every instance behind this endpoint.
	Meta map[string]string `yaml:"meta"`
	// Devices adds meta per unit ID.
	Devices []UnitMeta `yaml:"devices"`

	// UnitList is Units parsed. Set by Load.
	UnitList []int `yaml:"-"`
}

// MDNS configures DNS-SD browsing (RFC 6763). An announcement never makes a module
// live by itself: Modbus candidates are identified and polled over Modbus TCP, other
// services get the configured check.
type MDNS struct {
	// Enabled turns browsing on. Default false in a config file; on without --config.
	Enabled bool `yaml:"enabled"`
	// ServiceTypes to browse, "_name._tcp". Default ["_modbus._tcp"]. Types other than
	// _modbus._tcp need an entry in Checks.
	ServiceTypes []string `yaml:"service_types"`
	// Interfaces to browse on, by name; empty = every multicast interface.
	Interfaces []string `yaml:"interfaces"`
	// Window is one browse window; Every the gap between windows. Defaults 2 s and 5 s.
	Window time.Duration `yaml:"window"`
	Every  time.Duration `yaml:"every"`
	// Timeout is the Modbus TCP reply timeout for devices found over mDNS. Default 500 ms.
	Timeout time.Duration `yaml:"timeout"`
	// InstancePatterns, when not empty, is an allowlist: only announcements whose
	// instance name matches one of these regular expressions (RE2) are considered.
	InstancePatterns []string `yaml:"instance_patterns"`
	// Checks give non-Modbus service types their heartbeat.
	Checks []ServiceCheck `yaml:"checks"`
}

// ServiceCheck is the heartbeat of a non-Modbus module announced over mDNS.
type ServiceCheck struct {
	// ServiceType is the DNS-SD type it applies to, e.g. "_http._tcp".
	ServiceType string `yaml:"service_type"`
	// Type: "tcp" (a TCP connect succeeds) or "http" (GET returns 2xx).
	Type string `yaml:"type"`
	// Path of the HTTP GET. Default "/".
	Path string `yaml:"path"`
	// Service is the catalog service name, e.g. "vision-module". Default: the service
	// type's name without underscores and protocol ("_http._tcp" → "http").
	Service string `yaml:"service"`
	// Timeout of one check. Default 500 ms.
	Timeout time.Duration `yaml:"timeout"`
}

// Health holds the health policy (docs/design.md, "Health semantics").
type Health struct {
	PollInterval            time.Duration `yaml:"poll_interval"`             // default 250 ms
	FailuresBeforeCritical  int           `yaml:"failures_before_critical"`  // default 3
	SuccessesBeforePassing  int           `yaml:"successes_before_passing"`  // default 2
	DeregisterCriticalAfter time.Duration `yaml:"deregister_critical_after"` // default 30 s
	RefreshInterval         time.Duration `yaml:"refresh_interval"`          // default 10 s
	SlowRTT                 time.Duration `yaml:"slow_rtt"`                  // 0 = off (default)
	// RestartGrace: records of an earlier epoch that no poller claims after this long are
	// taken critical, then deregistered. Default 5 s.
	RestartGrace time.Duration `yaml:"restart_grace"`
	// PublishBurst and PublishEvery limit record publications per instance (token
	// bucket) against flapping devices. Defaults 5 and 1 s; publish_burst -1 = no limit.
	PublishBurst int           `yaml:"publish_burst"`
	PublishEvery time.Duration `yaml:"publish_every"`
	// StatusLease is the lease of the gateway's "online" status record, renewed every
	// third of it: consumers take the gateway's instances as unknown once it has not
	// been renewed (a dead gateway whose will never fired). Default 5 s; at least 1 s.
	StatusLease time.Duration `yaml:"status_lease"`
	// InstanceLease is the lease of every instance record, renewed by its refresh
	// (refresh_interval). Default 3 × refresh_interval; more than refresh_interval.
	InstanceLease time.Duration `yaml:"instance_lease"`
}

// Profiles says where device profiles are loaded from.
type Profiles struct {
	// Dirs are directories of *.yaml profiles. Empty (default): the profiles shipped in
	// the binary (configs/profiles of the source tree).
	Dirs []string `yaml:"dirs"`
}

// HTTP configures the HTTP listener: /metrics (Prometheus), /healthz, /readyz, the
// catalog API (/v1/catalog, /v1/events) and the live dashboard at /.
type HTTP struct {
	// Listen is host:port to listen on, e.g. 127.0.0.1:9180 (port 0: any free port).
	// Empty (the default in a config file): no HTTP listener. The config used without
	// --config listens on DefaultHTTPListen.
	Listen string `yaml:"listen"`
}

// DefaultHTTPListen is the HTTP listener of the config used without --config: loopback
// only.
const DefaultHTTPListen = "127.0.0.1:9180"

// Default returns the configuration used without --config (docs/design.md, "Commands"):
// embedded broker on 127.0.0.1:1883, mDNS on, no serial buses, HTTP on
// DefaultHTTPListen.
func Default() *Config {
	c := &Config{}
	c.Discovery.MDNS.Enabled = true
	c.HTTP.Listen = DefaultHTTPListen
	c.applyDefaults()
	return c
}

// Load reads and validates a config file (see Parse); a read error is wrapped.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes (strictly, with internal/yamlx) and validates config text; file names
// it in errors. It reports every problem of the text at once: each unknown key, value of
// the wrong type and rule violation is a *yamlx.Error ("file:line:column: key: what is
// expected"), several joined with errors.Join in order of line.
func Parse(file string, data []byte) (*Config, error) {
	var c Config
	doc, err := yamlx.Decode(file, data, &c)
	if doc == nil { // malformed YAML
		return nil, err
	}
	c.applyDefaults()
	if err := yamlx.Join(err, c.validate(doc)); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) applyDefaults() {
	if c.Gateway.ID == "" {
		c.Gateway.ID = "gateway"
		if host, _ := os.Hostname(); host != "" {
			c.Gateway.ID = contract.Slug(host)
		}
	}
	if c.Gateway.StateDir == "" {
		c.Gateway.StateDir = "./state"
	}
	m := &c.MQTT
	if m.Broker == "" {
		m.Broker = "embedded"
	}
	if m.EmbeddedListen == "" {
		m.EmbeddedListen = "127.0.0.1:1883"
	}
	if m.TopicPrefix == "" {
		m.TopicPrefix = contract.DefaultPrefix
	}
	if m.ClientID == "" {
		m.ClientID = "rollcall-" + c.Gateway.ID
	}
	h := &c.Health
	if h.PollInterval == 0 {
		h.PollInterval = 250 * time.Millisecond
	}
	if h.FailuresBeforeCritical == 0 {
		h.FailuresBeforeCritical = 3
	}
	if h.SuccessesBeforePassing == 0 {
		h.SuccessesBeforePassing = 2
	}
	if h.DeregisterCriticalAfter == 0 {
		h.DeregisterCriticalAfter = 30 * time.Second
	}
	if h.RefreshInterval == 0 {
		h.RefreshInterval = 10 * time.Second
	}
	if h.RestartGrace == 0 {
		h.RestartGrace = 5 * time.Second
	}
	if h.PublishBurst == 0 {
		h.PublishBurst = 5
	}
	if h.PublishEvery == 0 {
		h.PublishEvery = time.Second
	}
	if h.StatusLease == 0 {
		h.StatusLease = 5 * time.Second
	}
	if h.InstanceLease == 0 && h.RefreshInterval > 0 {
		h.InstanceLease = 3 * h.RefreshInterval
	}
	for i := range c.Discovery.TCP {
		t := &c.Discovery.TCP[i]
		if t.Units == "" {
			t.Units = "1"
		}
		if t.Timeout == 0 {
			t.Timeout = 500 * time.Millisecond
		}
		if t.PollInterval == 0 {
			t.PollInterval = h.PollInterval
		}
	}
	if c.Limits.MaxInstances == 0 {
		c.Limits.MaxInstances = 2000
	}
	if c.Limits.MaxRecordBytes == 0 {
		c.Limits.MaxRecordBytes = 16384
	}
	if c.Limits.MaxEndpoints == 0 {
		c.Limits.MaxEndpoints = 512
	}
	md := &c.Discovery.MDNS
	if len(md.ServiceTypes) == 0 {
		md.ServiceTypes = []string{"_modbus._tcp"}
	}
	if md.Window == 0 {
		md.Window = 2 * time.Second
	}
	if md.Every == 0 {
		md.Every = 5 * time.Second
	}
	if md.Timeout == 0 {
		md.Timeout = 500 * time.Millisecond
	}
	for i := range md.Checks {
		ck := &md.Checks[i]
		if ck.Path == "" {
			ck.Path = "/"
		}
		if ck.Timeout == 0 {
			ck.Timeout = 500 * time.Millisecond
		}
		if ck.Service == "" {
			name, _, _ := strings.Cut(strings.TrimPrefix(ck.ServiceType, "_"), ".")
			ck.Service = strings.ToLower(name)
		}
	}
	for i := range c.Discovery.Serial {
		b := &c.Discovery.Serial[i]
		if b.Baud == 0 {
			b.Baud = 19200
		}
		if b.Parity == "" {
			b.Parity = "none"
		}
		if b.StopBits == 0 {
			b.StopBits = 1
		}
		if b.Units == "" {
			b.Units = "1-247"
		}
		if b.Timeout == 0 {
			b.Timeout = 50 * time.Millisecond
			if b.Baud < 19200 {
				b.Timeout = 200 * time.Millisecond
			}
		}
		if b.PollInterval == 0 {
			b.PollInterval = h.PollInterval
		}
		if b.ProbeShare == 0 {
			b.ProbeShare = 0.2
		}
		if b.Turnaround == 0 {
			b.Turnaround = 5 * time.Millisecond
		}
	}
}

// validate checks the rules of every section and returns every violation, each a
// *yamlx.Error, joined (nil when none). It sets UnitList of each bus and TCP target, and
// lower-cases the mDNS service types (DNS names compare case-insensitively, RFC 4343;
// the browser reports them lower-cased).
func (c *Config) validate(doc *yamlx.Doc) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, doc.Errorf(key, format, args...))
	}
	if !contract.IsSlug(c.Gateway.ID) {
		bad("gateway.id", "expected 1–64 characters [a-z0-9._-] (it is an MQTT topic level), got %q", c.Gateway.ID)
	}
	c.validateMQTT(bad)
	h := c.Health
	if h.PollInterval < time.Millisecond {
		bad("health.poll_interval", "expected a duration of at least 1ms, got %v", h.PollInterval)
	}
	if h.FailuresBeforeCritical < 1 {
		bad("health.failures_before_critical", "expected an integer ≥ 1, got %d", h.FailuresBeforeCritical)
	}
	if h.SuccessesBeforePassing < 1 {
		bad("health.successes_before_passing", "expected an integer ≥ 1, got %d", h.SuccessesBeforePassing)
	}
	if h.PublishBurst < -1 {
		bad("health.publish_burst", "expected -1 (no limit) or a positive integer, got %d", h.PublishBurst)
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{
		{"deregister_critical_after", h.DeregisterCriticalAfter}, {"refresh_interval", h.RefreshInterval},
		{"slow_rtt", h.SlowRTT}, {"restart_grace", h.RestartGrace}, {"publish_every", h.PublishEvery},
	} {
		if d.d < 0 {
			bad("health."+d.key, "expected a duration ≥ 0, got %v", d.d)
		}
	}
	if h.StatusLease < time.Second {
		bad("health.status_lease", "expected a duration of at least 1s (it is renewed every third of it), got %v", h.StatusLease)
	}
	if h.InstanceLease <= h.RefreshInterval {
		bad("health.instance_lease", "expected more than refresh_interval (%v), which renews it, got %v", h.RefreshInterval, h.InstanceLease)
	}
	names := map[string]string{} // bus or target name → its key path
	for i, b := range c.Discovery.Serial {
		key := fmt.Sprintf("discovery.serial[%d]", i)
		if !contract.IsSlug(b.Name) {
			bad(key+".name", "expected a bus name of 1–64 characters [a-z0-9._-], got %q", b.Name)
		} else if prev, dup := names[b.Name]; dup {
			bad(key+".name", "bus name %q is already used by %s", b.Name, prev)
		} else {
			names[b.Name] = key
		}
		if b.Device == "" {
			bad(key+".device", "expected the serial device path, e.g. /dev/ttyUSB0")
		}
		if b.Baud < 300 || b.Baud > 4_000_000 {
			bad(key+".baud", "expected a baud rate between 300 and 4000000, got %d", b.Baud)
		}
		if b.Parity != "none" && b.Parity != "even" && b.Parity != "odd" {
			bad(key+".parity", `expected "none", "even" or "odd", got %q`, b.Parity)
		}
		if b.StopBits != 1 && b.StopBits != 2 {
			bad(key+".stop_bits", "expected 1 or 2, got %d", b.StopBits)
		}
		if units, err := ParseUnits(b.Units); err != nil {
			bad(key+".units", "%v", err)
		} else {
			c.Discovery.Serial[i].UnitList = units
		}
		if b.Timeout < time.Millisecond {
			bad(key+".timeout", "expected a duration of at least 1ms, got %v", b.Timeout)
		}
		if b.ProbeShare <= 0 || b.ProbeShare > 1 {
			bad(key+".probe_share", "expected a share 0 < share ≤ 1, got %v", b.ProbeShare)
		}
		for j, d := range b.Devices {
			if d.Unit < 1 || d.Unit > 247 {
				bad(fmt.Sprintf("%s.devices[%d].unit", key, j), "expected a unit ID 1–247, got %d", d.Unit)
			}
		}
	}
	for i, t := range c.Discovery.TCP {
		key := fmt.Sprintf("discovery.tcp[%d]", i)
		if !contract.IsSlug(t.Name) {
			bad(key+".name", "expected a name of 1–64 characters [a-z0-9._-], got %q", t.Name)
		} else if prev, dup := names[t.Name]; dup {
			bad(key+".name", "name %q is already used by %s", t.Name, prev)
		} else {
			names[t.Name] = key
		}
		if host, port, err := net.SplitHostPort(t.Address); err != nil || host == "" || port == "" {
			bad(key+".address", "expected host:port, e.g. 192.168.1.20:502, got %q", t.Address)
		}
		if units, err := parseUnitsTCP(t.Units); err != nil {
			bad(key+".units", "%v", err)
		} else {
			c.Discovery.TCP[i].UnitList = units
		}
		if t.Timeout < time.Millisecond {
			bad(key+".timeout", "expected a duration of at least 1ms, got %v", t.Timeout)
		}
	}
	c.validateMDNS(bad)
	if l := c.Limits; l.MaxInstances < 1 {
		bad("limits.max_instances", "expected an integer ≥ 1, got %d", l.MaxInstances)
	}
	if l := c.Limits; l.MaxRecordBytes < 1024 {
		bad("limits.max_record_bytes", "expected at least 1024 bytes, got %d", l.MaxRecordBytes)
	}
	if l := c.Limits; l.MaxEndpoints < 1 {
		bad("limits.max_endpoints", "expected an integer ≥ 1, got %d", l.MaxEndpoints)
	}
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			bad("http.listen", "expected host:port, got %q", c.HTTP.Listen)
		}
	}
	return yamlx.Join(errs...)
}

// validateMDNS checks discovery.mdns: service types (mdns.ValidServiceType), checks,
// instance patterns and durations.
func (c *Config) validateMDNS(bad func(key, format string, args ...any)) {
	md := &c.Discovery.MDNS
	checks := map[string]bool{}
	for i := range md.Checks {
		ck := &md.Checks[i]
		key := fmt.Sprintf("discovery.mdns.checks[%d]", i)
		if reason := serviceTypeProblem(ck.ServiceType); reason != "" {
			bad(key+".service_type", `expected a DNS-SD service type such as "_http._tcp", got %q: %s`, ck.ServiceType, reason)
		} else {
			ck.ServiceType = strings.ToLower(ck.ServiceType)
			checks[ck.ServiceType] = true
		}
		if ck.Type != "tcp" && ck.Type != "http" {
			bad(key+".type", `expected "tcp" or "http", got %q`, ck.Type)
		}
		if !strings.HasPrefix(ck.Path, "/") {
			bad(key+".path", `expected a path starting with "/", got %q`, ck.Path)
		}
		if !contract.IsSlug(ck.Service) {
			bad(key+".service", "expected a service name of 1–64 characters [a-z0-9._-], got %q", ck.Service)
		}
	}
	for i, st := range md.ServiceTypes {
		key := fmt.Sprintf("discovery.mdns.service_types[%d]", i)
		if reason := serviceTypeProblem(st); reason != "" {
			bad(key, `expected a DNS-SD service type such as "_modbus._tcp", got %q: %s`, st, reason)
			continue
		}
		st = strings.ToLower(st)
		md.ServiceTypes[i] = st
		if st != "_modbus._tcp" && !checks[st] {
			bad(key, "%s is not Modbus: add a discovery.mdns.checks entry (type tcp or http) for it", st)
		}
	}
	for i, pat := range md.InstancePatterns {
		if _, err := regexp.Compile(pat); err != nil {
			bad(fmt.Sprintf("discovery.mdns.instance_patterns[%d]", i), "expected a regular expression: %v", err)
		}
	}
	if md.Window <= 0 {
		bad("discovery.mdns.window", "expected a positive duration, got %v", md.Window)
	}
	if md.Every < 0 {
		bad("discovery.mdns.every", "expected a duration ≥ 0, got %v", md.Every)
	}
	if md.Timeout < time.Millisecond {
		bad("discovery.mdns.timeout", "expected a duration of at least 1ms, got %v", md.Timeout)
	}
}

// serviceTypeProblem returns why st is not a DNS-SD service type, or "".
func serviceTypeProblem(st string) string {
	var ste *mdns.ServiceTypeError
	if err := mdns.ValidServiceType(st); errors.As(err, &ste) {
		return ste.Reason
	} else if err != nil {
		return err.Error()
	}
	return ""
}

// validateMQTT checks the mqtt section.
func (c *Config) validateMQTT(bad func(key, format string, args ...any)) {
	m := c.MQTT
	if m.Broker != "embedded" {
		u, err := url.Parse(m.Broker)
		switch {
		case err != nil || u.Host == "":
			bad("mqtt.broker", `expected "embedded" or a URL such as tcp://host:1883, got %q`, m.Broker)
		case u.Scheme != "tcp" && u.Scheme != "mqtt" && u.Scheme != "ssl" && u.Scheme != "tls" &&
			u.Scheme != "mqtts" && u.Scheme != "ws" && u.Scheme != "wss":
			bad("mqtt.broker", "unsupported URL scheme %q (tcp, ssl, ws, wss)", u.Scheme)
		}
	}
	if _, _, err := net.SplitHostPort(m.EmbeddedListen); err != nil {
		bad("mqtt.embedded_listen", "expected host:port, got %q", m.EmbeddedListen)
	}
	if err := (contract.Topics{Prefix: m.TopicPrefix}).Validate(); err != nil {
		bad("mqtt.topic_prefix", "expected topic levels without wildcards, empty levels or a leading '$', got %q", m.TopicPrefix)
	}
	if m.PasswordFile != "" && m.PasswordEnv != "" {
		bad("mqtt.password_env", "give password_file or password_env, not both")
	}
	if (m.PasswordFile != "" || m.PasswordEnv != "") && m.Username == "" {
		bad("mqtt.username", "a password is configured but no username")
	}
	for i, u := range m.EmbeddedAuth.Users {
		key := fmt.Sprintf("mqtt.embedded_auth.users[%d]", i)
		if u.Username == "" || strings.ContainsAny(u.Username, "+#/\x00") {
			bad(key+".username", "expected a user name without + # / or NUL, got %q", u.Username)
		}
		if (u.PasswordFile == "") == (u.PasswordEnv == "") {
			bad(key, "give exactly one of password_file or password_env")
		}
		for j, f := range u.Read {
			if f == "" || strings.Contains(f, "\x00") {
				bad(fmt.Sprintf("%s.read[%d]", key, j), "expected a topic filter, got %q (empty or with NUL)", f)
			}
		}
		for j, f := range u.Write {
			if f == "" || strings.Contains(f, "\x00") {
				bad(fmt.Sprintf("%s.write[%d]", key, j), "expected a topic filter, got %q (empty or with NUL)", f)
			}
		}
	}
	if (m.TLS.CertFile == "") != (m.TLS.KeyFile == "") {
		bad("mqtt.tls", "cert_file and key_file go together")
	}
}

// parseUnitsTCP is ParseUnits for Modbus TCP, where unit IDs 0 and 255 are also used
// (Modbus Messaging on TCP/IP Implementation Guide V1.0b §4.4.2: 0xFF "not used").
func parseUnitsTCP(s string) ([]int, error) {
	switch strings.TrimSpace(s) {
	case "0":
		return []int{0}, nil
	case "255":
		return []int{255}, nil
	}
	return ParseUnits(s)
}

// ParseUnits parses a unit ID list such as "1-32" or "1,3,5-7" into ascending unique
// unit IDs, each 1–247 (Modbus over Serial Line V1.02 §2.2: 0 is broadcast, 248–255
// reserved).
func ParseUnits(s string) ([]int, error) {
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err1 != nil || err2 != nil || part == "" {
			return nil, fmt.Errorf(`expected unit IDs such as "1-32" or "1,3,5-7", got %q`, s)
		}
		if a < 1 || b > 247 || a > b {
			return nil, fmt.Errorf("unit IDs must be 1–247 in ascending ranges, got %q", part)
		}
		for u := a; u <= b; u++ {
			seen[u] = true
		}
	}
	out := make([]int, 0, len(seen))
	for u := 1; u <= 247; u++ {
		if seen[u] {
			out = append(out, u)
		}
	}
	return out, nil
}
