// Package config loads and validates the gateway's YAML configuration (docs/design.md,
// "Configuration"). Decoding is strict: an unknown key, a wrong type or an invalid value
// is an error naming the file, the line, the column and the key, and saying what is
// expected and why; every such problem of a file is reported in one run.
//
// A key left out takes its default; a key written is taken as written and must be in
// its range (so "failures_before_critical: 0" is refused, not read as the default).
// Every count and duration has a minimum and a maximum, each with its reason in the
// message. A config file is at most MaxConfigBytes, refused before it is read.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway/dnsserver"
	"github.com/rollcall-edge/rollcall/gateway/router"
	"github.com/rollcall-edge/rollcall/gateway/scriptcheck"
	"github.com/rollcall-edge/rollcall/internal/yamlx"
	"github.com/rollcall-edge/rollcall/protocols/mdns"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
	"github.com/rollcall-edge/rollcall/protocols/sparkplug"
)

// Config is the whole gateway configuration.
type Config struct {
	Gateway   Gateway   `yaml:"gateway"`
	MQTT      MQTT      `yaml:"mqtt"`
	Discovery Discovery `yaml:"discovery"`
	Health    Health    `yaml:"health"`
	Profiles  Profiles  `yaml:"profiles"`
	HTTP      HTTP      `yaml:"http"`
	Metrics   Metrics   `yaml:"metrics"`
	Limits    Limits    `yaml:"limits"`
	// ModbusServer is the routing Modbus TCP server (off unless listen is set).
	ModbusServer ModbusServer `yaml:"modbus_server"`
	// DNS is the DNS interface (off unless listen is set).
	DNS DNS `yaml:"dns"`
	// SelfRegistration lets modules register themselves (off by default).
	SelfRegistration SelfRegistration `yaml:"self_registration"`
	// Sparkplug exports the catalog as a Sparkplug B edge node (off unless group_id is
	// set).
	Sparkplug Sparkplug `yaml:"sparkplug"`

	warnings []string // see Warnings
}

// MaxConfigBytes is the largest config file Load reads, in bytes (1 MiB): a gateway
// config of a large cell (16 buses of 247 units, each with its meta) is about 200 KiB.
// A larger file is refused after a Stat, without being read. It equals
// yamlx.MaxDocumentBytes, the largest document Parse takes.
const MaxConfigBytes = yamlx.MaxDocumentBytes

// Limits bound what the wire can make the gateway hold and publish. A cap that is hit
// is logged.
type Limits struct {
	// MaxInstances caps the live instances of the gateway. Default 2000; 1–100000.
	MaxInstances int `yaml:"max_instances"`
	// MaxRecordBytes caps one instance record's JSON size, in bytes. Default 16384;
	// 1024–1048576.
	MaxRecordBytes int `yaml:"max_record_bytes"`
	// MaxEndpoints caps the network endpoints polled for mDNS candidates. Default 512;
	// 1–10000.
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
	// Brokers, instead of Broker: the URLs of the nodes of one clustered broker (e.g. a
	// NATS cluster) or of a bridged pair. Each connection attempt tries them in order
	// and keeps the first that accepts; after every (re)connection, to whichever node,
	// the gateway republishes its status and records and reconciles its subtree.
	Brokers []string `yaml:"brokers"`
	// EmbeddedListen is the embedded broker's TCP listen address, host:port with a port
	// 0–65535 (0: any free port). Default 127.0.0.1:1883.
	EmbeddedListen string `yaml:"embedded_listen"`
	// EmbeddedAuth says who may use the embedded broker besides the gateway itself.
	// Default: nobody (anonymous clients refused).
	EmbeddedAuth EmbeddedAuth `yaml:"embedded_auth"`
	// EmbeddedLimits bound what clients can make the embedded broker hold.
	EmbeddedLimits EmbeddedLimits `yaml:"embedded_limits"`
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

// EmbeddedLimits bound what clients can make the embedded broker hold
// (protocols/mqtt/embedded.Limits). Retained quotas count the retained messages (topic +
// payload bytes) of every account but the gateway's own, per account (a user name; all
// anonymous clients are one account, and may not retain anything anyway) and in total;
// a retained publish over a quota is acknowledged and dropped, and counted and logged
// once per client.
type EmbeddedLimits struct {
	// MaxClients: connections beyond it are refused (CONNACK "server unavailable").
	// Default 1024; 1–100000.
	MaxClients int `yaml:"max_clients"`
	// MaxPacketBytes: a client sending a larger MQTT packet is disconnected before the
	// packet is read. Default 262144 (256 KiB); 69632–16777216.
	MaxPacketBytes int `yaml:"max_packet_bytes"`
	// MaxInflight: QoS 1 messages a client may leave unacknowledged. Default 256;
	// 1–65535.
	MaxInflight int `yaml:"max_inflight"`
	// MaxRetained and MaxRetainedBytes: retained messages of all limited accounts
	// together. Defaults 16384 and 67108864 (64 MiB).
	MaxRetained      int `yaml:"max_retained"`
	MaxRetainedBytes int `yaml:"max_retained_bytes"`
	// MaxRetainedPerAccount and MaxRetainedBytesPerAccount: per account. Defaults 4096
	// and 16777216 (16 MiB).
	MaxRetainedPerAccount      int `yaml:"max_retained_per_account"`
	MaxRetainedBytesPerAccount int `yaml:"max_retained_bytes_per_account"`
}

// EmbeddedAuth configures the embedded broker's accounts. The gateway's own client
// always connects with a credential made at start, confined to its own subtree.
type EmbeddedAuth struct {
	// AllowAnonymous lets clients without a username read the catalog (<prefix>/#) and
	// publish, not retained, on their own consumer sync topic
	// (<prefix>/consumers/<slug(client id)>/#); they can store nothing: no retained
	// message, no retained will, no will outside their sync topic. Default false.
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
	// Device is the serial device path (/dev/ttyUSB0, or a firmware-sim link). Two buses
	// may not name one device, directly or through symbolic links: one RS-485 line has
	// one master (Modbus over Serial Line V1.02 §2.1).
	Device string `yaml:"device"`
	// Baud: bits/s, 300–4000000. Default 19200 (the Modbus over Serial Line V1.02 §2.2
	// default).
	Baud int `yaml:"baud"`
	// Parity: "none", "even" (the spec default) or "odd". Default "none".
	Parity string `yaml:"parity"`
	// StopBits: 1 or 2. Default 1.
	StopBits int `yaml:"stop_bits"`
	// Units to sweep: "1-32", "1,3,5-7". Default "1-247".
	Units string `yaml:"units"`
	// Timeout is the reply timeout of one request, 1 ms–10 s. Default 50 ms at
	// ≥ 19200 baud, else 200 ms. With AdaptiveTimeout it is the ceiling of the adaptive
	// timeouts and the timeout of registration and of thorough sweep cycles.
	Timeout time.Duration `yaml:"timeout"`
	// AdaptiveTimeout makes each poll wait for its reply's first byte only as long as
	// its device needs: the request's wire time + t3.5 + the device's turnaround (the
	// second longest of its last 32 replies, plus the spread of all but the longest) +
	// one character + 2 ms, at most Timeout; sweep probes likewise with the longest
	// turnaround of the bus's devices (at least Turnaround) in every other cycle.
	// Default true when timeout is not set, false when it is (every request then waits
	// up to Timeout, e.g. for devices whose reply time varies widely).
	AdaptiveTimeout bool `yaml:"adaptive_timeout"`
	// PollInterval overrides health.poll_interval for this bus (same range).
	PollInterval time.Duration `yaml:"poll_interval"`
	// Turnaround is the slowest device turnaround assumed before one is observed: probes
	// of absent unit IDs in fast sweep cycles wait for a first reply byte from a device
	// this slow (or as slow as the slowest one seen on the bus); every other cycle waits
	// Timeout, so slower devices are still found. Default 2 ms; 0–1 s.
	Turnaround time.Duration `yaml:"turnaround"`
	// FrameGap is the silence that ends a reply (and resync listening): default (0)
	// t3.5 + 10 ms on a pseudo-terminal, + 2 ms on an on-board UART, + 20 ms on a USB
	// adapter (latency timer) or a port that cannot be told. Set, it is from t3.5 at
	// Baud (modbus.T35) to 1 s.
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

// UnitMeta attaches meta to one unit of a bus (e.g. {unit: 3, meta: {axis: "3"}}): unit
// 1–247 on a serial bus, 0–255 behind a TCP target.
type UnitMeta struct {
	Unit int               `yaml:"unit"`
	Meta map[string]string `yaml:"meta"`
}

// TCPTarget is a static Modbus TCP endpoint: one connection shared by its unit IDs.
type TCPTarget struct {
	// Name is used in logs and in fallback instance ids: [a-z0-9._-], unique.
	Name string `yaml:"name"`
	// Address is host:port, port 1–65535 (502 is the Modbus TCP default).
	Address string `yaml:"address"`
	// Units to sweep behind the endpoint: "1", "1-4". Default "1".
	Units string `yaml:"units"`
	// Timeout is the reply timeout of one request. Default 500 ms; 1 ms–30 s.
	Timeout time.Duration `yaml:"timeout"`
	// PollInterval overrides health.poll_interval for this endpoint (same range).
	PollInterval time.Duration `yaml:"poll_interval"`
	// Meta is copied into the meta of every instance behind this endpoint.
	Meta map[string]string `yaml:"meta"`
	// Devices adds meta per unit ID.
	Devices []UnitMeta `yaml:"devices"`
	// Checks are checks of the endpoint's instances besides their poll (a drive's web
	// server, a script): an instance's status is the worst of its poll and its checks,
	// and its record lists them (docs/contract.md, "Several checks").
	Checks []TargetCheck `yaml:"checks"`

	// UnitList is Units parsed. Set by Load.
	UnitList []int `yaml:"-"`
}

// TargetCheck is one configured check of a TCP target's instances.
type TargetCheck struct {
	// Name names the check in records and logs: [a-z0-9._-], unique per target, not
	// "poll" or "ttl".
	Name string `yaml:"name"`
	// Type: script (Command's exit code: 0 passing, 1 warning, anything else
	// critical; its output is the note), http (GET URL: 2xx passing, 429 warning,
	// anything else critical) or tcp (a connection to Address: passing or critical).
	Type string `yaml:"type"`
	// Command is the script's argv (script): the program (an absolute path, or a name
	// found in PATH) and its arguments; no shell. Only from this file: nothing that
	// comes over the network ever names a command.
	Command []string `yaml:"command"`
	// URL is what an http check gets: http:// or https://.
	URL string `yaml:"url"`
	// Address is host:port of a tcp check.
	Address string `yaml:"address"`
	// Interval between runs. Default 10 s; 100 ms–1 h.
	Interval time.Duration `yaml:"interval"`
	// Timeout of one run; a script still running then is killed with its children.
	// Default 5 s; 10 ms–10 min, at most Interval.
	Timeout time.Duration `yaml:"timeout"`
}

// Sparkplug configures the Sparkplug B 3.0 export (gateway/edgenode): the gateway is an
// edge node on its MQTT broker(s), each live instance a device. Off unless GroupID is
// set.
type Sparkplug struct {
	// GroupID is the Sparkplug group id (a topic level: no '/', '+' or '#').
	GroupID string `yaml:"group_id"`
	// EdgeNodeID is the edge node id. Default: gateway.id.
	EdgeNodeID string `yaml:"edge_node_id"`
	// PrimaryHostID, if set, makes births wait for that host application's STATE to say
	// online, and a new session start when it goes offline.
	PrimaryHostID string `yaml:"primary_host_id"`
}

// SelfRegistration lets modules register themselves (docs/contract.md,
// "Self-registration"): over MQTT, over the HTTP API, or both. Off by default.
type SelfRegistration struct {
	// MQTT: take registrations published on <prefix>/register/<gateway>/<client>
	// (contract.Topics.Register). On the embedded broker each configured user may then
	// publish to its own client id's topic; on another broker, grant that in its ACL
	// (Mosquitto: "pattern write rollcall/v1/register/+/%c").
	MQTT bool `yaml:"mqtt"`
	// HTTP: take them on the HTTP API (POST /v1/instances, PUT /v1/instances/<id>/ttl,
	// DELETE /v1/instances/<id>) with the token of http.admin_token_file.
	HTTP bool `yaml:"http"`
	// MaxInstances caps the self-registered instances. Default 256; 1–10000.
	MaxInstances int `yaml:"max_instances"`
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
	// Window is one browse window, 120 ms–1 min; Every the gap between windows,
	// 100 ms–1 h. Defaults 2 s and 5 s.
	Window time.Duration `yaml:"window"`
	Every  time.Duration `yaml:"every"`
	// Timeout is the Modbus TCP reply timeout for devices found over mDNS. Default
	// 500 ms; 1 ms–30 s.
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
	// Timeout of one check. Default 500 ms; 1 ms–30 s.
	Timeout time.Duration `yaml:"timeout"`
}

// Health holds the health policy (docs/design.md, "Health semantics"). Each field gives
// its default and its range.
type Health struct {
	PollInterval            time.Duration `yaml:"poll_interval"`             // default 250 ms; 1 ms–10 min
	FailuresBeforeCritical  int           `yaml:"failures_before_critical"`  // default 3; 1–1000
	SuccessesBeforePassing  int           `yaml:"successes_before_passing"`  // default 2; 1–1000
	DeregisterCriticalAfter time.Duration `yaml:"deregister_critical_after"` // default 30 s; 1 s–168 h
	RefreshInterval         time.Duration `yaml:"refresh_interval"`          // default 10 s; 1 s–1 h
	SlowRTT                 time.Duration `yaml:"slow_rtt"`                  // 0 = off (default); else 1 ms–1 min
	// RestartGrace: records of an earlier epoch that no poller claims after this long are
	// taken critical, then deregistered. Default 5 s; 1 s–1 h.
	RestartGrace time.Duration `yaml:"restart_grace"`
	// PublishBurst and PublishEvery limit record publications per instance (token
	// bucket) against flapping devices. Defaults 5 and 1 s; publish_burst -1 = no limit,
	// else 1–1000; publish_every 10 ms–1 h.
	PublishBurst int           `yaml:"publish_burst"`
	PublishEvery time.Duration `yaml:"publish_every"`
	// StatusLease is the lease of the gateway's "online" status record, renewed every
	// third of it: consumers take the gateway's instances as unknown once it has not
	// been renewed (a dead gateway whose will never fired). Default 5 s; 1 s–1 h.
	StatusLease time.Duration `yaml:"status_lease"`
	// InstanceLease is the lease of every instance record, renewed by its refresh
	// (refresh_interval). Default 3 × refresh_interval; more than refresh_interval, at
	// most 24 h.
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
	// The host is required: ":9180" is refused, since it would listen on every interface
	// without saying so; write 0.0.0.0:9180 or [::]:9180 for that, which is accepted with
	// a warning (Config.Warnings): the HTTP API has no authentication. Empty (the
	// default in a config file): no HTTP listener. The config used without --config
	// listens on DefaultHTTPListen.
	Listen string `yaml:"listen"`
	// MaxConnections caps the HTTP connections open at once (each is a file descriptor
	// and a goroutine). Default DefaultHTTPMaxConnections (256); 1–65535.
	MaxConnections int `yaml:"max_connections"`
	// MaxEventStreams caps the /v1/events streams (server-sent events) open at once;
	// each holds a connection, counted in MaxConnections too. Default
	// DefaultHTTPMaxEventStreams (64); 1–4096.
	MaxEventStreams int `yaml:"max_event_streams"`
	// PlantView: the gateway also reads the whole catalog of its broker, as a line
	// controller does (registry/client), and serves it at /v1/plant and on the
	// dashboard: every gateway's live devices, each once, with the gateways that see it.
	// Its MQTT account must be allowed to read <prefix>/# and write its sync topic
	// <prefix>/consumers/rollcall-<gateway>-view/# (the embedded broker allows both).
	// Default false.
	PlantView bool `yaml:"plant_view"`
	// AdminTokenFile is a file whose first line is the bearer token (at least 16
	// characters) of the API's write endpoints: maintenance (PUT and DELETE
	// /v1/instances/<id>/maintenance, `rollcall maint`) and, with
	// self_registration.http, self-registration. Empty: no write endpoint.
	AdminTokenFile string `yaml:"admin_token_file"`
	// TrustedKeys is a trusted-keys file (lines "<gateway-id> ed25519:<base64>", as
	// `rollcall key` prints them) for the plant view: records not signed by them are not
	// shown. The gateway's own key is always trusted. Empty: the plant view shows
	// unauthenticated records of other gateways (and warns).
	TrustedKeys string `yaml:"trusted_keys"`
}

// Defaults of HTTP.MaxConnections and HTTP.MaxEventStreams.
const (
	DefaultHTTPMaxConnections  = 256
	DefaultHTTPMaxEventStreams = 64
)

// DefaultHTTPListen is the HTTP listener of the config used without --config: loopback
// only.
const DefaultHTTPListen = "127.0.0.1:9180"

// Metrics configures what /metrics shows (gateway/metrics).
type Metrics struct {
	// PerUnit: "auto" (default), "true" or "false". With true, rollcall_polls_total is
	// per unit and every Modbus TCP endpoint (and checked module) has its own
	// per-master series; with false, polls are summed per master (unit="") and the
	// series of all network endpoints together carry master="*" (RTU buses keep their
	// own). auto is true while the gateway polls at most 256 devices
	// (metrics.PerUnitAutoMax), false above. Counting costs the same either way: the
	// choice is made at each scrape.
	PerUnit string `yaml:"per_unit"`
}

// ModbusServer configures the routing Modbus TCP server (gateway/router): clients that
// speak Modbus TCP address a virtual unit ID, and each request goes to a live instance
// that the unit's route selects, picked at that moment. Off unless Listen is set.
type ModbusServer struct {
	// Listen is host:port, e.g. 127.0.0.1:1502 (502 is the Modbus TCP port, which needs
	// CAP_NET_BIND_SERVICE; port 0: any free port). Host rules as http.listen: required,
	// a wildcard (0.0.0.0) is accepted with a warning, as the server has no
	// authentication. Empty (the default): off.
	Listen string `yaml:"listen"`
	// Advertise is the host (IP address or name) DNS answers give for instances reached
	// through this server (RTU drives): default the Listen host; required when that is a
	// wildcard and dns is on.
	Advertise string `yaml:"advertise"`
	// MaxConnections caps the client connections open at once. Default 32; 1–4096.
	MaxConnections int `yaml:"max_connections"`
	// MaxClientConnections caps the connections open at once from one client IP
	// address. Default 8; 1–4096.
	MaxClientConnections int `yaml:"max_client_connections"`
	// MaxInFlight caps the requests of one connection answered at once (pipelined, told
	// apart by transaction identifier); more wait. Default 4; 1–64.
	MaxInFlight int `yaml:"max_in_flight"`
	// RequestTimeout bounds one routed request from its arrival to its reply, a retry on
	// another instance included. Default 1 s; 10 ms–60 s.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// IdleTimeout closes a connection without requests for this long. Default 60 s;
	// 1 s–24 h.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// BusShare is the largest share of an RS-485 bus's time given to routed requests
	// over time, 0 < share ≤ 1 (an occasional request goes out at once; a client
	// reading without pause gets this share); heartbeat polls that are due always go
	// first. Default 0.5.
	BusShare float64 `yaml:"bus_share"`
	// Routes bind virtual unit IDs to selectors; at least one when Listen is set.
	Routes []Route `yaml:"routes"`
}

// Route binds a virtual unit ID of the Modbus TCP server to the instances it routes to.
type Route struct {
	// Unit is the virtual unit ID, 1–255, unique.
	Unit int `yaml:"unit"`
	// Service is the service of the instances (e.g. servo-drive). Required.
	Service string `yaml:"service"`
	// Meta pairs every instance must have (e.g. {axis: "2"}).
	Meta map[string]string `yaml:"meta"`
	// Strategy: sticky (default: the same instance while it is live), round-robin,
	// lowest-rtt or random. Passing instances always go before warning ones.
	Strategy string `yaml:"strategy"`
	// Writes allows write function codes (FC 05, 06, 15, 16, 22, 23); without it they are
	// refused with exception 0x01. A write is never retried on another instance.
	Writes bool `yaml:"writes"`
}

// DNS configures the DNS interface (gateway/dnsserver): <service>.service.<domain>
// answers A, AAAA, SRV and TXT records of passing instances only. Off unless Listen is
// set.
type DNS struct {
	// Listen is host:port for UDP and TCP, e.g. 127.0.0.1:8600 (port 0: any free port).
	// Host rules as http.listen. Empty (the default): off.
	Listen string `yaml:"listen"`
	// Domain is the zone answered, e.g. "rollcall" (names end in .service.rollcall).
	// Default "rollcall".
	Domain string `yaml:"domain"`
	// TTL of every record: 0–1 s, whole seconds. Default 1 s: a client asks again
	// within a second, so a dead instance leaves its answers that fast.
	TTL time.Duration `yaml:"ttl"`
}

// Default returns the configuration used without --config (docs/design.md, "Commands"):
// embedded broker on 127.0.0.1:1883, mDNS on, no serial buses, HTTP on
// DefaultHTTPListen.
func Default() *Config {
	c := &Config{}
	c.Discovery.MDNS.Enabled = true
	c.HTTP.Listen = DefaultHTTPListen
	c.applyDefaults(nil)
	return c
}

// Load reads and validates a config file (see Parse). A file larger than MaxConfigBytes
// is refused without being read, with a *yamlx.Error naming the file, its size and the
// limit; a read error is wrapped ("config: ...", errors.Is works on it).
func Load(path string) (*Config, error) {
	data, err := yamlx.ReadFile(path, MaxConfigBytes, "a gateway config")
	if err != nil {
		if ye := (*yamlx.Error)(nil); errors.As(err, &ye) {
			return nil, err
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Warnings returns what is allowed but probably not meant (an HTTP listener on every
// interface), each "file:line:column: key: what and why" like the errors; nil when none
// (always for Default). The gateway logs them at start.
func (c *Config) Warnings() []string {
	return slices.Clone(c.warnings)
}

// Parse decodes (strictly, with internal/yamlx) and validates config text; file names
// it in errors. It reports every problem of the text at once: each unknown key, value of
// the wrong type and rule violation is a *yamlx.Error ("file:line:column: key: what is
// expected"), several joined with errors.Join in order of line. Text over the limits of
// yamlx.Decode (yamlx.MaxDocumentBytes, MaxMappingKeys, MaxDepth) is refused before it
// is parsed. The serial device paths are resolved (filepath.EvalSymlinks) to find two
// buses on one device; nothing else is read from the system.
func Parse(file string, data []byte) (*Config, error) {
	c, _, err := parse(file, data)
	return c, err
}

// parse is Parse, also returning the decoded document (nil for malformed YAML) and,
// with an error, the config as far as it was decoded.
func parse(file string, data []byte) (*Config, *yamlx.Doc, error) {
	var c Config
	doc, err := yamlx.Decode(file, data, &c)
	if doc == nil { // malformed YAML
		return nil, nil, err
	}
	c.applyDefaults(doc)
	if err := yamlx.Join(err, c.validate(doc)); err != nil {
		return &c, doc, err
	}
	return &c, doc, nil
}

// Check is what `rollcall check` reports about the config file at path, beyond Load:
// every rule violation (as Load), and then, on what the system holds now, whether each
// file the config names can be read (password, TLS, trusted-keys, admin-token files,
// profile directories) and each serial device exists. Every problem is a *yamlx.Error
// naming file:line:column and the key, all joined in one error (nil when none); the
// warnings are Config.Warnings. A file that cannot be read at all is one error. c is the
// config as far as it could be decoded (nil when the YAML itself is malformed), for
// further checks of what it names.
func Check(path string) (c *Config, warnings []string, err error) {
	data, err := yamlx.ReadFile(path, MaxConfigBytes, "a gateway config")
	if err != nil {
		return nil, nil, err
	}
	c, doc, perr := parse(path, data)
	if doc == nil {
		return nil, nil, perr
	}
	errs := []error{perr}
	bad := func(key, format string, args ...any) { errs = append(errs, doc.Errorf(key, format, args...)) }
	readable := func(key, file string) {
		if file == "" {
			return
		}
		f, err := os.Open(file)
		if err != nil {
			bad(key, "cannot be read: %v", err)
			return
		}
		f.Close()
	}
	readable("mqtt.password_file", c.MQTT.PasswordFile)
	readable("mqtt.tls.ca_file", c.MQTT.TLS.CAFile)
	readable("mqtt.tls.cert_file", c.MQTT.TLS.CertFile)
	readable("mqtt.tls.key_file", c.MQTT.TLS.KeyFile)
	for i, u := range c.MQTT.EmbeddedAuth.Users {
		readable(fmt.Sprintf("mqtt.embedded_auth.users[%d].password_file", i), u.PasswordFile)
	}
	readable("http.trusted_keys", c.HTTP.TrustedKeys)
	readable("http.admin_token_file", c.HTTP.AdminTokenFile)
	for i, d := range c.Profiles.Dirs {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			bad(fmt.Sprintf("profiles.dirs[%d]", i), "%q is not a directory that can be read (%v)", d, err)
		}
	}
	for i, b := range c.Discovery.Serial {
		if b.Device == "" {
			continue
		}
		if _, err := os.Stat(b.Device); err != nil {
			bad(fmt.Sprintf("discovery.serial[%d].device", i), "bus %s: %v (the gateway would wait for it, retrying)", b.Name, err)
		}
	}
	return c, c.Warnings(), yamlx.Join(errs...)
}

// applyDefaults sets the default of every key that doc does not have (every key, for a
// nil doc): a value written, zero included, is kept for validate to check.
func (c *Config) applyDefaults(doc *yamlx.Doc) {
	unset := func(key string) bool { return !doc.Has(key) }
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
	setDuration := func(key string, d *time.Duration, def time.Duration) {
		if unset(key) {
			*d = def
		}
	}
	setInt := func(key string, n *int, def int) {
		if unset(key) {
			*n = def
		}
	}
	setDuration("health.poll_interval", &h.PollInterval, 250*time.Millisecond)
	setInt("health.failures_before_critical", &h.FailuresBeforeCritical, 3)
	setInt("health.successes_before_passing", &h.SuccessesBeforePassing, 2)
	setDuration("health.deregister_critical_after", &h.DeregisterCriticalAfter, 30*time.Second)
	setDuration("health.refresh_interval", &h.RefreshInterval, 10*time.Second)
	setDuration("health.restart_grace", &h.RestartGrace, 5*time.Second)
	setInt("health.publish_burst", &h.PublishBurst, 5)
	setDuration("health.publish_every", &h.PublishEvery, time.Second)
	setDuration("health.status_lease", &h.StatusLease, 5*time.Second)
	setDuration("health.instance_lease", &h.InstanceLease, 3*h.RefreshInterval)
	setInt("self_registration.max_instances", &c.SelfRegistration.MaxInstances, 256)
	if c.Sparkplug.GroupID != "" && c.Sparkplug.EdgeNodeID == "" {
		c.Sparkplug.EdgeNodeID = c.Gateway.ID
	}
	for i := range c.Discovery.TCP {
		t := &c.Discovery.TCP[i]
		key := fmt.Sprintf("discovery.tcp[%d].", i)
		if t.Units == "" {
			t.Units = "1"
		}
		for j := range t.Checks {
			ck := &t.Checks[j]
			ckey := fmt.Sprintf("%schecks[%d].", key, j)
			setDuration(ckey+"interval", &ck.Interval, 10*time.Second)
			setDuration(ckey+"timeout", &ck.Timeout, min(5*time.Second, ck.Interval))
		}
		setDuration(key+"timeout", &t.Timeout, 500*time.Millisecond)
		setDuration(key+"poll_interval", &t.PollInterval, h.PollInterval)
	}
	setInt("limits.max_instances", &c.Limits.MaxInstances, 2000)
	setInt("limits.max_record_bytes", &c.Limits.MaxRecordBytes, 16384)
	setInt("limits.max_endpoints", &c.Limits.MaxEndpoints, 512)
	el := &c.MQTT.EmbeddedLimits
	setInt("mqtt.embedded_limits.max_clients", &el.MaxClients, 1024)
	setInt("mqtt.embedded_limits.max_packet_bytes", &el.MaxPacketBytes, 256<<10)
	setInt("mqtt.embedded_limits.max_inflight", &el.MaxInflight, 256)
	setInt("mqtt.embedded_limits.max_retained", &el.MaxRetained, 16384)
	setInt("mqtt.embedded_limits.max_retained_bytes", &el.MaxRetainedBytes, 64<<20)
	setInt("mqtt.embedded_limits.max_retained_per_account", &el.MaxRetainedPerAccount, 4096)
	setInt("mqtt.embedded_limits.max_retained_bytes_per_account", &el.MaxRetainedBytesPerAccount, 16<<20)
	if c.Metrics.PerUnit == "" && unset("metrics.per_unit") {
		c.Metrics.PerUnit = "auto"
	}
	ms := &c.ModbusServer
	setInt("modbus_server.max_connections", &ms.MaxConnections, 32)
	setInt("modbus_server.max_client_connections", &ms.MaxClientConnections, 8)
	setInt("modbus_server.max_in_flight", &ms.MaxInFlight, 4)
	setDuration("modbus_server.request_timeout", &ms.RequestTimeout, time.Second)
	setDuration("modbus_server.idle_timeout", &ms.IdleTimeout, time.Minute)
	if unset("modbus_server.bus_share") {
		ms.BusShare = 0.5
	}
	if c.DNS.Domain == "" && unset("dns.domain") {
		c.DNS.Domain = "rollcall"
	}
	setDuration("dns.ttl", &c.DNS.TTL, time.Second)
	setInt("http.max_connections", &c.HTTP.MaxConnections, DefaultHTTPMaxConnections)
	setInt("http.max_event_streams", &c.HTTP.MaxEventStreams, DefaultHTTPMaxEventStreams)
	md := &c.Discovery.MDNS
	if len(md.ServiceTypes) == 0 {
		md.ServiceTypes = []string{"_modbus._tcp"}
	}
	setDuration("discovery.mdns.window", &md.Window, 2*time.Second)
	setDuration("discovery.mdns.every", &md.Every, 5*time.Second)
	setDuration("discovery.mdns.timeout", &md.Timeout, 500*time.Millisecond)
	for i := range md.Checks {
		ck := &md.Checks[i]
		if ck.Path == "" {
			ck.Path = "/"
		}
		setDuration(fmt.Sprintf("discovery.mdns.checks[%d].timeout", i), &ck.Timeout, 500*time.Millisecond)
		if ck.Service == "" {
			name, _, _ := strings.Cut(strings.TrimPrefix(ck.ServiceType, "_"), ".")
			ck.Service = strings.ToLower(name)
		}
	}
	for i := range c.Discovery.Serial {
		b := &c.Discovery.Serial[i]
		key := fmt.Sprintf("discovery.serial[%d].", i)
		setInt(key+"baud", &b.Baud, 19200)
		if b.Parity == "" {
			b.Parity = "none"
		}
		setInt(key+"stop_bits", &b.StopBits, 1)
		if b.Units == "" {
			b.Units = "1-247"
		}
		if unset(key + "timeout") {
			b.Timeout = 50 * time.Millisecond
			if b.Baud < 19200 {
				b.Timeout = 200 * time.Millisecond
			}
			if unset(key + "adaptive_timeout") {
				b.AdaptiveTimeout = true
			}
		}
		setDuration(key+"poll_interval", &b.PollInterval, h.PollInterval)
		if unset(key + "probe_share") {
			b.ProbeShare = 0.2
		}
		setDuration(key+"turnaround", &b.Turnaround, 2*time.Millisecond)
	}
}

// validate checks the rules of every section and returns every violation, each a
// *yamlx.Error, joined (nil when none); it records the warnings (Warnings). It sets
// UnitList of each bus and TCP target, and lower-cases the mDNS service types (DNS names
// compare case-insensitively, RFC 4343; the browser reports them lower-cased).
func (c *Config) validate(doc *yamlx.Doc) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, doc.Errorf(key, format, args...))
	}
	c.warnings = nil
	warn := func(key, format string, args ...any) {
		c.warnings = append(c.warnings, doc.Errorf(key, format, args...).Error())
	}
	if !contract.IsSlug(c.Gateway.ID) {
		bad("gateway.id", "expected 1–64 characters [a-z0-9._-] (it is an MQTT topic level), got %q", c.Gateway.ID)
	}
	c.validateMQTT(bad)
	c.validateHealth(doc, bad)
	c.validateSerial(doc, bad)
	for i, t := range c.Discovery.TCP {
		key := fmt.Sprintf("discovery.tcp[%d]", i)
		if !contract.IsSlug(t.Name) {
			bad(key+".name", "expected a name of 1–64 characters [a-z0-9._-], got %q", t.Name)
		}
		if host, port, err := net.SplitHostPort(t.Address); err != nil || host == "" || port == "" {
			bad(key+".address", "expected host:port, e.g. 192.168.1.20:502, got %q", t.Address)
		} else if n, ok := portNumber(port); !ok || n == 0 {
			bad(key+".address", "expected a port from 1 to 65535 (502 is the Modbus TCP port), got %q", port)
		}
		if units, err := parseUnitsTCP(t.Units); err != nil {
			bad(key+".units", "%v", err)
		} else {
			c.Discovery.TCP[i].UnitList = units
		}
		inRange(bad, key+".timeout", t.Timeout, tcpTimeout)
		if doc.Has(key + ".poll_interval") { // else health.poll_interval, checked there
			inRange(bad, key+".poll_interval", t.PollInterval, pollInterval)
		}
		c.validateTargetChecks(bad, key, t.Checks)
		for j, d := range t.Devices {
			if d.Unit < 0 || d.Unit > 255 {
				bad(fmt.Sprintf("%s.devices[%d].unit", key, j),
					"expected a unit ID 0–255 (the MBAP unit identifier is one byte, Modbus Messaging on TCP/IP Implementation Guide V1.0b §3.1.3), got %d", d.Unit)
			}
		}
	}
	c.checkNames(bad)
	c.validateMDNS(bad)
	inRange(bad, "limits.max_instances", c.Limits.MaxInstances, maxInstances)
	inRange(bad, "limits.max_record_bytes", c.Limits.MaxRecordBytes, maxRecordBytes)
	inRange(bad, "limits.max_endpoints", c.Limits.MaxEndpoints, maxEndpoints)
	c.validateHTTP(bad, warn)
	c.validateModbusServer(bad, warn)
	c.validateDNS(bad, warn)
	c.validateSelfRegistration(bad)
	c.validateSparkplug(doc, bad)
	if pu := c.Metrics.PerUnit; pu != "auto" && pu != "true" && pu != "false" {
		bad("metrics.per_unit", "expected auto, true or false (per-unit series in /metrics), got %q", pu)
	}
	return yamlx.Join(errs...)
}

// span is the range of a count or a duration and why each bound: a value outside it
// is refused with the reason of the bound it crosses ("expected an integer from 1 to
// 1000, got 0: at least 1 (why)").
type span[T int | time.Duration] struct {
	min, max T
	whyMin   string // completes "at least <min> "
	whyMax   string // completes "at most <max> "
	// alt, when altMeans is not "", is accepted too, meaning altMeans (0 = "off").
	alt      T
	altMeans string
}

// inRange reports v at key when it is outside s.
func inRange[T int | time.Duration](bad func(key, format string, args ...any), key string, v T, s span[T]) {
	if v == s.alt && s.altMeans != "" || v >= s.min && v <= s.max {
		return
	}
	what := "an integer"
	if _, isDuration := any(v).(time.Duration); isDuration {
		what = "a duration"
	}
	expected := fmt.Sprintf("%s from %v to %v", what, s.min, s.max)
	if s.altMeans != "" {
		expected = fmt.Sprintf("%v (%s) or %s", s.alt, s.altMeans, expected)
	}
	bound, why := fmt.Sprintf("at least %v", s.min), s.whyMin
	if v > s.max {
		bound, why = fmt.Sprintf("at most %v", s.max), s.whyMax
	}
	if why != "" {
		bound += " " + why
	}
	bad(key, "expected %s, got %v: %s", expected, v, bound)
}

// The ranges of the counts and durations (see the field documentation). The maxima are
// far beyond what a plant uses: they catch a mistyped value (a missing unit, extra
// digits), not a choice.
var (
	pollInterval = span[time.Duration]{min: time.Millisecond, max: 10 * time.Minute,
		whyMin: "(a device is polled at most once a millisecond)",
		whyMax: "(a slower heartbeat leaves a dead device listed as alive for over 10 minutes)"}
	failuresBeforeCritical = span[int]{min: 1, max: 1000,
		whyMin: "(it is how many polls in a row without an answer make a device critical)",
		whyMax: "(more would keep a silent device listed as alive for over 1000 polls)"}
	successesBeforePassing = span[int]{min: 1, max: 1000,
		whyMin: "(it is how many good polls in a row bring a device back)",
		whyMax: "(more would keep a device that answers again critical for over 1000 polls)"}
	deregisterCriticalAfter = span[time.Duration]{min: time.Second, max: 168 * time.Hour,
		whyMin: "(consumers must get to see the critical record before it is removed)",
		whyMax: "(a dead device would stay in the catalog for over a week)"}
	refreshInterval = span[time.Duration]{min: time.Second, max: time.Hour,
		whyMin: "(every unchanged record would be republished more than once a second, flooding the broker)",
		whyMax: "(consumers would see last_seen over an hour old)"}
	slowRTT = span[time.Duration]{min: time.Millisecond, max: time.Minute, altMeans: "off",
		whyMin: "(a round trip is measured in milliseconds)",
		whyMax: "(a reply that slow has timed out long before)"}
	restartGrace = span[time.Duration]{min: time.Second, max: time.Hour,
		whyMin: "(after a restart, pollers need time to claim the devices they find again)",
		whyMax: "(devices gone while the gateway was down would stay listed for over an hour)"}
	publishBurst = span[int]{min: 1, max: 1000, alt: -1, altMeans: "no limit",
		whyMin: "(0 would hold back every publication but deaths; -1 is no limit)",
		whyMax: "(more is no limit in practice: write -1)"}
	publishEvery = span[time.Duration]{min: 10 * time.Millisecond, max: time.Hour,
		whyMin: "(faster is no limit in practice: write publish_burst: -1)",
		whyMax: "(the latest state of a flapping device would wait over an hour)"}
	statusLease = span[time.Duration]{min: time.Second, max: time.Hour,
		whyMin: "(it is renewed every third of it)",
		whyMax: "(consumers would take over an hour to drop the instances of a dead gateway)"}
	serialTimeout = span[time.Duration]{min: time.Millisecond, max: 10 * time.Second,
		whyMin: "(a reply takes at least the wire time of its bytes)",
		whyMax: "(while it waits, the master polls no other device of the bus)"}
	turnaround = span[time.Duration]{min: 0, max: time.Second,
		whyMin: "(a device cannot answer before it is asked)",
		whyMax: "(probes of absent unit IDs would each wait that long; no Modbus device takes a second to start its reply)"}
	tcpTimeout = span[time.Duration]{min: time.Millisecond, max: 30 * time.Second,
		whyMin: "(a reply takes at least a network round trip)",
		whyMax: "(while it waits, the master polls no other unit of the endpoint)"}
	checkTimeout = span[time.Duration]{min: time.Millisecond, max: 30 * time.Second,
		whyMin: "(a check takes at least a network round trip)",
		whyMax: "(a module that slow to answer is as good as down)"}
	mdnsWindow = span[time.Duration]{min: 120 * time.Millisecond, max: time.Minute,
		whyMin: "(RFC 6762 §6: a responder may wait up to 120 ms before answering)",
		whyMax: "(a device announced would wait over a minute to be seen)"}
	mdnsEvery = span[time.Duration]{min: 100 * time.Millisecond, max: time.Hour,
		whyMin: "(windows back to back would query the network without pause)",
		whyMax: "(a device announced would wait over an hour to be found)"}
	maxInstances = span[int]{min: 1, max: 100_000,
		whyMin: "(0 would admit no device)",
		whyMax: "(a gateway polls a few thousand devices; a larger cap only lets a rogue network fill the memory)"}
	maxRecordBytes = span[int]{min: 1024, max: 1 << 20,
		whyMin: "bytes (a record with its meta and identity needs that much room)",
		whyMax: "(a record is well under 1 KiB; a larger cap only lets a device bloat the catalog)"}
	maxEndpoints = span[int]{min: 1, max: 10_000,
		whyMin: "(0 would admit no mDNS candidate)",
		whyMax: "(each endpoint is a TCP connection polled on its own; a larger cap only lets a rogue network exhaust the sockets)"}
	brokerClients = span[int]{min: 1, max: 100_000,
		whyMin: "(0 would refuse every client, the gateway's own included)",
		whyMax: "(each client is a connection and goroutines of the gateway's process)"}
	brokerPacketBytes = span[int]{min: 69632, max: 16 << 20,
		whyMin: "bytes (a signed record may be 64 KiB plus its topic and header)",
		whyMax: "bytes (a larger packet is read whole into the gateway's memory)"}
	brokerInflight = span[int]{min: 1, max: 65535,
		whyMin: "(0 would let no client publish with QoS 1)",
		whyMax: "(MQTT's receive maximum is a 16-bit number)"}
	brokerRetained = span[int]{min: 1, max: 1_000_000,
		whyMin: "(0 would refuse every retained message of the other accounts)",
		whyMax: "(each retained message is held in the gateway's memory)"}
	brokerRetainedBytes = span[int]{min: 1 << 10, max: 1 << 30,
		whyMin: "bytes (smaller than one record)",
		whyMax: "bytes (retained messages are held in the gateway's memory)"}
	httpMaxConnections = span[int]{min: 1, max: 65535,
		whyMin: "(0 would refuse every client)",
		whyMax: "(one listener cannot have more connections than TCP has ports)"}
	checkInterval = span[time.Duration]{min: 100 * time.Millisecond, max: time.Hour,
		whyMin: "(a check that runs more often loads the module more than it tells)",
		whyMax: "(a failing module would go unnoticed for over an hour)"}
	scriptTimeout = span[time.Duration]{min: 10 * time.Millisecond, max: 10 * time.Minute,
		whyMin: "(starting a program takes a few milliseconds)",
		whyMax: "(a check that takes longer is hung)"}
	selfMaxInstances = span[int]{min: 1, max: 10_000,
		whyMin: "(0 would refuse every registration)",
		whyMax: "(a larger cap only lets a rogue client fill the catalog)"}
	routerConnections = span[int]{min: 1, max: 4096,
		whyMin: "(0 would refuse every client)",
		whyMax: "(each connection holds a goroutine and buffers; a plant's Modbus clients are a few dozen)"}
	routerInFlight = span[int]{min: 1, max: 64,
		whyMin: "(0 would answer nothing)",
		whyMax: "(requests beyond a few per connection only queue at the devices' masters)"}
	routerRequestTimeout = span[time.Duration]{min: 10 * time.Millisecond, max: time.Minute,
		whyMin: "(a request and its retry on another instance take a few round trips)",
		whyMax: "(a client waiting that long has given up long before)"}
	routerIdleTimeout = span[time.Duration]{min: time.Second, max: 24 * time.Hour,
		whyMin: "(clients pause between polls)",
		whyMax: "(an abandoned connection would hold its slot for over a day)"}
	httpMaxEventStreams = span[int]{min: 1, max: 4096,
		whyMin: "(0 would refuse every /v1/events client)",
		whyMax: "(each stream holds a connection and a goroutine for as long as it lasts)"}
)

// validateHealth checks the health section.
func (c *Config) validateHealth(doc *yamlx.Doc, bad func(key, format string, args ...any)) {
	h := c.Health
	inRange(bad, "health.poll_interval", h.PollInterval, pollInterval)
	inRange(bad, "health.failures_before_critical", h.FailuresBeforeCritical, failuresBeforeCritical)
	inRange(bad, "health.successes_before_passing", h.SuccessesBeforePassing, successesBeforePassing)
	inRange(bad, "health.publish_burst", h.PublishBurst, publishBurst)
	inRange(bad, "health.deregister_critical_after", h.DeregisterCriticalAfter, deregisterCriticalAfter)
	inRange(bad, "health.refresh_interval", h.RefreshInterval, refreshInterval)
	inRange(bad, "health.slow_rtt", h.SlowRTT, slowRTT)
	inRange(bad, "health.restart_grace", h.RestartGrace, restartGrace)
	inRange(bad, "health.publish_every", h.PublishEvery, publishEvery)
	inRange(bad, "health.status_lease", h.StatusLease, statusLease)
	refreshOK := h.RefreshInterval >= refreshInterval.min && h.RefreshInterval <= refreshInterval.max
	switch {
	case !refreshOK && !doc.Has("health.instance_lease"):
		// 3 × refresh_interval by default: refresh_interval is the one to fix.
	case refreshOK && h.InstanceLease <= h.RefreshInterval:
		bad("health.instance_lease", "expected more than refresh_interval (%v), which renews it, got %v", h.RefreshInterval, h.InstanceLease)
	case h.InstanceLease > 24*time.Hour:
		bad("health.instance_lease", "expected a duration more than refresh_interval and at most 24h0m0s, got %v: "+
			"at most 24h0m0s (a record of a dead gateway would stay valid for over a day)", h.InstanceLease)
	}
}

// validateSerial checks discovery.serial: each bus, and that no two buses have one
// device (sameDevice).
func (c *Config) validateSerial(doc *yamlx.Doc, bad func(key, format string, args ...any)) {
	for i, b := range c.Discovery.Serial {
		key := fmt.Sprintf("discovery.serial[%d]", i)
		if !contract.IsSlug(b.Name) {
			bad(key+".name", "expected a bus name of 1–64 characters [a-z0-9._-], got %q", b.Name)
		}
		if b.Device == "" {
			bad(key+".device", "expected the serial device path, e.g. /dev/ttyUSB0")
		}
		baudOK := b.Baud >= 300 && b.Baud <= 4_000_000
		if !baudOK {
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
		inRange(bad, key+".timeout", b.Timeout, serialTimeout)
		if doc.Has(key + ".poll_interval") { // else health.poll_interval, checked there
			inRange(bad, key+".poll_interval", b.PollInterval, pollInterval)
		}
		inRange(bad, key+".turnaround", b.Turnaround, turnaround)
		if b.FrameGap != 0 && baudOK {
			t35 := modbus.T35(b.Baud)
			inRange(bad, key+".frame_gap", b.FrameGap, span[time.Duration]{min: t35, max: time.Second, altMeans: "the default",
				whyMin: fmt.Sprintf("(t3.5 at %d baud: Modbus over Serial Line V1.02 §2.5.1.1 separates frames by 3.5 character times)", b.Baud),
				whyMax: "(the master waits this long after every reply)"})
		}
		if !(b.ProbeShare > 0 && b.ProbeShare <= 1) { // NaN too
			bad(key+".probe_share", "expected a share 0 < share ≤ 1, got %v", b.ProbeShare)
		}
		for j, d := range b.Devices {
			if d.Unit < 1 || d.Unit > 247 {
				bad(fmt.Sprintf("%s.devices[%d].unit", key, j), "expected a unit ID 1–247, got %d", d.Unit)
			}
		}
	}
	c.sameDevice(doc, bad)
}

// sameDevice reports a bus whose device is the device of an earlier bus: the same path
// once cleaned, or the same file once symbolic links are resolved (when the path
// exists). Two masters on one RS-485 line corrupt each other's frames (Modbus over
// Serial Line V1.02 §2.1: one master per bus; docs/design.md, "One master per serial
// bus").
func (c *Config) sameDevice(doc *yamlx.Doc, bad func(key, format string, args ...any)) {
	type first struct {
		bus  int
		path string // as written
	}
	seen := map[string]first{} // resolved path → first bus
	for i, b := range c.Discovery.Serial {
		if b.Device == "" {
			continue
		}
		resolved := filepath.Clean(b.Device)
		if r, err := filepath.EvalSymlinks(resolved); err == nil {
			resolved = r
		}
		prev, dup := seen[resolved]
		if !dup {
			seen[resolved] = first{i, b.Device}
			continue
		}
		written := ""
		if b.Device != resolved || prev.path != resolved {
			written = fmt.Sprintf(" (written %q and %q)", b.Device, prev.path)
		}
		line, _ := doc.Pos(fmt.Sprintf("discovery.serial[%d].device", prev.bus))
		bad(fmt.Sprintf("discovery.serial[%d].device", i),
			"bus %q and bus %q (discovery.serial[%d], line %d) both use device %s%s: one RS-485 line takes one master "+
				"(Modbus over Serial Line V1.02 §2.1); give each bus its own device",
			b.Name, c.Discovery.Serial[prev.bus].Name, prev.bus, line, resolved, written)
	}
}

// checkNames reports bus and target names used twice (they name endpoints and ids).
func (c *Config) checkNames(bad func(key, format string, args ...any)) {
	names := map[string]string{} // bus or target name → its key path
	for i, b := range c.Discovery.Serial {
		key := fmt.Sprintf("discovery.serial[%d]", i)
		if !contract.IsSlug(b.Name) {
			continue
		}
		if prev, dup := names[b.Name]; dup {
			bad(key+".name", "bus name %q is already used by %s", b.Name, prev)
		} else {
			names[b.Name] = key
		}
	}
	for i, t := range c.Discovery.TCP {
		key := fmt.Sprintf("discovery.tcp[%d]", i)
		if !contract.IsSlug(t.Name) {
			continue
		}
		if prev, dup := names[t.Name]; dup {
			bad(key+".name", "name %q is already used by %s", t.Name, prev)
		} else {
			names[t.Name] = key
		}
	}
}

// validateHTTP checks the http section; an explicit wildcard host is a warning.
func (c *Config) validateHTTP(bad, warn func(key, format string, args ...any)) {
	validateListen(bad, warn, "http.listen", c.HTTP.Listen, "the HTTP API (catalog, events, dashboard, metrics)", "read the catalog")
	inRange(bad, "http.max_connections", c.HTTP.MaxConnections, httpMaxConnections)
	inRange(bad, "http.max_event_streams", c.HTTP.MaxEventStreams, httpMaxEventStreams)
	if c.HTTP.TrustedKeys != "" && !c.HTTP.PlantView {
		bad("http.trusted_keys", "is used by the plant view only: set plant_view: true, or remove it")
	}
	if c.HTTP.PlantView && c.HTTP.Listen == "" {
		warn("http.plant_view", "is on but http.listen is not set: nobody can see the plant view")
	}
}

// validateListen checks a listener's host:port at key (empty: off): a port 0–65535 and
// an explicit host; a wildcard host is a warning naming what would be exposed (what)
// and what any network it reaches could then do (can).
func validateListen(bad, warn func(key, format string, args ...any), key, l, what, can string) {
	if l == "" {
		return
	}
	host, port, err := net.SplitHostPort(l)
	_, portOK := portNumber(port)
	switch {
	case err != nil:
		bad(key, "expected host:port, got %q", l)
	case !portOK:
		bad(key, "expected a port from 0 to 65535 (0: any free port), got %q", port)
	case host == "":
		bad(key, "%q has no host, which listens on every interface without saying so: write 0.0.0.0:%s or [::]:%s "+
			"if every interface is meant, or 127.0.0.1:%s for this host only", l, port, port, port)
	case isWildcard(host):
		warn(key, "%s listens on every interface: %s has no authentication; keep it on loopback or behind a "+
			"proxy or firewall unless every network it reaches may %s", l, what, can)
	}
}

// validateTargetChecks checks the checks of a TCP target (key "discovery.tcp[i]").
func (c *Config) validateTargetChecks(bad func(key, format string, args ...any), key string, checks []TargetCheck) {
	seen := map[string]int{}
	for j, ck := range checks {
		k := fmt.Sprintf("%s.checks[%d]", key, j)
		switch {
		case !contract.IsSlug(ck.Name) || ck.Name == "poll" || ck.Name == "ttl":
			bad(k+".name", "expected a name of 1–64 characters [a-z0-9._-], not poll or ttl (the heartbeat's), got %q", ck.Name)
		default:
			if first, dup := seen[ck.Name]; dup {
				bad(k+".name", "check %q is already defined by %s.checks[%d]", ck.Name, key, first)
			}
			seen[ck.Name] = j
		}
		switch ck.Type {
		case "script":
			if err := scriptcheck.Check(ck.Command); err != nil {
				bad(k+".command", "%v", err)
			}
		case "http":
			if u, err := url.Parse(ck.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad(k+".url", "expected an http:// or https:// URL, got %q", ck.URL)
			}
		case "tcp":
			if host, port, err := net.SplitHostPort(ck.Address); err != nil || host == "" {
				bad(k+".address", "expected host:port, got %q", ck.Address)
			} else if n, ok := portNumber(port); !ok || n == 0 {
				bad(k+".address", "expected a port from 1 to 65535, got %q", port)
			}
		default:
			bad(k+".type", "expected script, http or tcp, got %q", ck.Type)
		}
		inRange(bad, k+".interval", ck.Interval, checkInterval)
		inRange(bad, k+".timeout", ck.Timeout, scriptTimeout)
		if ck.Timeout > ck.Interval {
			bad(k+".timeout", "%v is longer than the interval %v: runs would overlap", ck.Timeout, ck.Interval)
		}
	}
}

// validateSparkplug checks the sparkplug section: ids are Sparkplug ids
// (sparkplug.ValidID); keys other than group_id need it.
func (c *Config) validateSparkplug(doc *yamlx.Doc, bad func(key, format string, args ...any)) {
	sp := c.Sparkplug
	if sp.GroupID == "" {
		if doc.Has("sparkplug.edge_node_id") || doc.Has("sparkplug.primary_host_id") {
			bad("sparkplug", "group_id is required to turn the Sparkplug B export on")
		}
		return
	}
	for key, v := range map[string]string{"group_id": sp.GroupID, "edge_node_id": sp.EdgeNodeID} {
		if err := sparkplug.ValidID(v); err != nil {
			bad("sparkplug."+key, "%v", err)
		}
	}
	if sp.PrimaryHostID != "" {
		if err := sparkplug.ValidID(sp.PrimaryHostID); err != nil {
			bad("sparkplug.primary_host_id", "%v", err)
		}
	}
}

// validateSelfRegistration checks the self_registration section and the admin token.
func (c *Config) validateSelfRegistration(bad func(key, format string, args ...any)) {
	sr := c.SelfRegistration
	inRange(bad, "self_registration.max_instances", sr.MaxInstances, selfMaxInstances)
	if sr.HTTP && c.HTTP.AdminTokenFile == "" {
		bad("self_registration.http", "needs http.admin_token_file: the registration endpoints take its token")
	}
	if sr.HTTP && c.HTTP.Listen == "" {
		bad("self_registration.http", "needs http.listen: there is no HTTP API to register with")
	}
}

// validateModbusServer checks the modbus_server section.
func (c *Config) validateModbusServer(bad, warn func(key, format string, args ...any)) {
	ms := &c.ModbusServer
	validateListen(bad, warn, "modbus_server.listen", ms.Listen, "the routing Modbus TCP server", "read the drives' registers")
	inRange(bad, "modbus_server.max_connections", ms.MaxConnections, routerConnections)
	inRange(bad, "modbus_server.max_client_connections", ms.MaxClientConnections, routerConnections)
	inRange(bad, "modbus_server.max_in_flight", ms.MaxInFlight, routerInFlight)
	inRange(bad, "modbus_server.request_timeout", ms.RequestTimeout, routerRequestTimeout)
	inRange(bad, "modbus_server.idle_timeout", ms.IdleTimeout, routerIdleTimeout)
	if !(ms.BusShare > 0 && ms.BusShare <= 1) { // NaN too
		bad("modbus_server.bus_share", "expected a share 0 < share ≤ 1, got %v", ms.BusShare)
	}
	if ms.Listen != "" && len(ms.Routes) == 0 {
		bad("modbus_server.routes", "expected at least one route ({unit: 1, service: servo-drive}): the server has nothing to route to")
	}
	seen := map[int]int{}
	for i, r := range ms.Routes {
		key := fmt.Sprintf("modbus_server.routes[%d]", i)
		if r.Unit < 1 || r.Unit > 255 {
			bad(key+".unit", "expected a virtual unit ID 1–255 (0 is the serial broadcast address), got %d", r.Unit)
		} else if j, dup := seen[r.Unit]; dup {
			bad(key+".unit", "unit %d is routed already by modbus_server.routes[%d]", r.Unit, j)
		} else {
			seen[r.Unit] = i
		}
		if !contract.IsSlug(r.Service) {
			bad(key+".service", "expected a service name of 1–64 characters [a-z0-9._-], got %q", r.Service)
		}
		if _, err := router.ParseStrategy(r.Strategy); err != nil {
			bad(key+".strategy", "%v", err)
		}
	}
}

// validateDNS checks the dns section.
func (c *Config) validateDNS(bad, warn func(key, format string, args ...any)) {
	d := &c.DNS
	validateListen(bad, warn, "dns.listen", d.Listen, "the DNS interface", "list the live instances")
	if err := dnsserver.CheckDomain(d.Domain); err != nil {
		bad("dns.domain", "%v", err)
	}
	if d.TTL < 0 || d.TTL > time.Second || d.TTL%time.Second != 0 {
		bad("dns.ttl", "expected 0s or 1s, got %v: a longer TTL keeps a dead instance in clients' caches", d.TTL)
	}
	if d.Listen != "" && c.ModbusServer.Listen != "" && c.ModbusServer.Advertise == "" {
		if host, _, err := net.SplitHostPort(c.ModbusServer.Listen); err == nil && isWildcard(host) {
			bad("modbus_server.advertise", "expected the address clients reach the Modbus TCP server at: "+
				"it listens on every interface (%s), so DNS answers cannot name one", c.ModbusServer.Listen)
		}
	}
}

// isWildcard reports whether host is an unspecified address (0.0.0.0, ::): a listener
// on every interface.
func isWildcard(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// portNumber parses a port number 0–65535 (digits only: service names are refused).
func portNumber(s string) (int, bool) {
	if s == "" || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n <= 65535
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
		inRange(bad, key+".timeout", ck.Timeout, checkTimeout)
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
	inRange(bad, "discovery.mdns.window", md.Window, mdnsWindow)
	inRange(bad, "discovery.mdns.every", md.Every, mdnsEvery)
	inRange(bad, "discovery.mdns.timeout", md.Timeout, tcpTimeout)
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
	checkURL := func(key, raw string) {
		u, err := url.Parse(raw)
		switch {
		case err != nil || u.Host == "":
			bad(key, `expected "embedded" or a URL such as tcp://host:1883, got %q`, raw)
		case u.Scheme != "tcp" && u.Scheme != "mqtt" && u.Scheme != "ssl" && u.Scheme != "tls" &&
			u.Scheme != "mqtts" && u.Scheme != "ws" && u.Scheme != "wss":
			bad(key, "unsupported URL scheme %q (tcp, ssl, ws, wss)", u.Scheme)
		}
	}
	switch {
	case len(m.Brokers) > 0 && m.Broker != "embedded":
		bad("mqtt.brokers", "give broker (one) or brokers (a cluster's nodes), not both")
	case len(m.Brokers) > 0:
		for i, b := range m.Brokers {
			checkURL(fmt.Sprintf("mqtt.brokers[%d]", i), b)
		}
	case m.Broker != "embedded":
		checkURL("mqtt.broker", m.Broker)
	}
	if _, port, err := net.SplitHostPort(m.EmbeddedListen); err != nil {
		bad("mqtt.embedded_listen", "expected host:port, got %q", m.EmbeddedListen)
	} else if _, ok := portNumber(port); !ok {
		bad("mqtt.embedded_listen", "expected a port from 0 to 65535 (0: any free port), got %q", port)
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
	el := m.EmbeddedLimits
	inRange(bad, "mqtt.embedded_limits.max_clients", el.MaxClients, brokerClients)
	inRange(bad, "mqtt.embedded_limits.max_packet_bytes", el.MaxPacketBytes, brokerPacketBytes)
	inRange(bad, "mqtt.embedded_limits.max_inflight", el.MaxInflight, brokerInflight)
	inRange(bad, "mqtt.embedded_limits.max_retained", el.MaxRetained, brokerRetained)
	inRange(bad, "mqtt.embedded_limits.max_retained_bytes", el.MaxRetainedBytes, brokerRetainedBytes)
	inRange(bad, "mqtt.embedded_limits.max_retained_per_account", el.MaxRetainedPerAccount, brokerRetained)
	inRange(bad, "mqtt.embedded_limits.max_retained_bytes_per_account", el.MaxRetainedBytesPerAccount, brokerRetainedBytes)
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
