package contract

import (
	"encoding/json"
	"strings"
	"time"
)

// Schema is the value of the "schema" field of every v1 instance record.
const Schema = "rollcall.instance/v1"

// Status is an instance's health (docs/contract.md, "Health semantics").
type Status string

// Health statuses, with Consul's names.
const (
	Passing  Status = "passing"  // answering, no fault reported
	Warning  Status = "warning"  // answering but degraded: fault/warning bit, Modbus exception, or slow round trip
	Critical Status = "critical" // failures_before_critical consecutive polls got no valid answer
)

// Endpoint says where an instance is reached. Modbus RTU uses Bus, Device, Baud, Unit;
// Modbus TCP uses Host, Port, Unit; a non-Modbus module checked by "tcp" or "http" uses
// Host, Port (and URL for http). Zero fields are omitted from JSON, except Unit on the
// Modbus transports (unit 0 is valid on Modbus TCP).
type Endpoint struct {
	Transport string `json:"transport"`        // "modbus-rtu" | "modbus-tcp" | "tcp" | "http"
	Bus       string `json:"bus,omitempty"`    // configured bus name (RTU)
	Device    string `json:"device,omitempty"` // serial device path (RTU)
	Baud      int    `json:"baud,omitempty"`   // bits/s (RTU)
	Host      string `json:"host,omitempty"`   // IP address or host name (TCP)
	Port      int    `json:"port,omitempty"`   // TCP port (TCP)
	Unit      int    `json:"unit"`             // Modbus unit ID, 0–247 (0 and 255 on TCP)
	URL       string `json:"url,omitempty"`    // checked URL (http)
}

// MarshalJSON implements json.Marshaler: unit is written for the Modbus transports only.
func (e Endpoint) MarshalJSON() ([]byte, error) {
	type plain Endpoint
	if strings.HasPrefix(e.Transport, "modbus-") {
		return json.Marshal(plain(e))
	}
	return json.Marshal(struct {
		plain
		Unit *int `json:"unit,omitempty"`
	}{plain: plain(e)})
}

// Identity is what the device said about itself (FC 0x2B objects and/or profile
// identity registers). Empty fields are omitted.
type Identity struct {
	Vendor      string `json:"vendor,omitempty"`
	ProductCode string `json:"product_code,omitempty"`
	Revision    string `json:"revision,omitempty"`
	Model       string `json:"model,omitempty"`
	Serial      string `json:"serial,omitempty"`
}

// Check describes the heartbeat of an instance. Durations are milliseconds.
type Check struct {
	IntervalMS     int64   `json:"interval_ms"`      // poll period
	TimeoutMS      int64   `json:"timeout_ms"`       // per-poll reply timeout
	Failures       int     `json:"failures"`         // consecutive failed polls now
	RTTMS          float64 `json:"rtt_ms"`           // round trip of the last successful poll, ms (0.01 ms resolution)
	DetectBudgetMS int64   `json:"detect_budget_ms"` // worst case from device death to critical
	// LinkQuality is the share (0–1, 3 decimals) of the device's latest replies that
	// arrived intact, on an RTU bus; omitted where it is not measured (Modbus TCP,
	// checks). Below 0.97 the instance is warning (docs/contract.md, "Health semantics").
	LinkQuality *float64 `json:"link_quality,omitempty"`
}

// Record is the v1 instance record published retained at
// <prefix>/catalog/<service>/<gateway>/<instance> (docs/contract.md, "Topics and payloads").
// Readers must ignore unknown fields.
type Record struct {
	Schema       string            `json:"schema"`
	ID           string            `json:"id"`
	Service      string            `json:"service"`
	Gateway      string            `json:"gateway"`
	Epoch        int64             `json:"epoch"`
	Revision     int64             `json:"revision"`
	Status       Status            `json:"status"`
	StatusSince  Time              `json:"status_since"`
	LastSeen     Time              `json:"last_seen"`
	Endpoint     Endpoint          `json:"endpoint"`
	Identity     Identity          `json:"identity"`
	Profile      string            `json:"profile"`
	State        map[string]any    `json:"state"`
	Check        Check             `json:"check"`
	DiscoveredBy []string          `json:"discovered_by"`
	Meta         map[string]string `json:"meta"`
	// ValidUntil is the record's lease (see Lease): after it, readers treat the instance
	// as unknown. Zero (null) in records of gateways without leases: no lease.
	ValidUntil Time `json:"valid_until,omitzero"`
	// Checks lists the instance's checks when it has more than its heartbeat poll, or a
	// heartbeat with a note (CheckState); omitted otherwise. Additive in v1.
	Checks []CheckState `json:"checks,omitempty"`
	// Maintenance says why the instance is in maintenance (Status Maintenance); omitted
	// otherwise. Additive in v1.
	Maintenance *MaintenanceInfo `json:"maintenance,omitempty"`
}

// TimeLayout is RFC 3339 in UTC with exactly three fractional digits (milliseconds),
// as the contract requires for status_since and last_seen.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Time is a time.Time that marshals as RFC 3339 with milliseconds in UTC. The zero Time
// marshals as JSON null.
type Time struct{ time.Time }

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + t.UTC().Format(TimeLayout) + `"`), nil
}

// UnmarshalJSON implements json.Unmarshaler; it accepts any RFC 3339 time or null.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return &time.ParseError{Layout: time.RFC3339, Value: string(b), Message: ": not a JSON string"}
	}
	v, err := time.Parse(time.RFC3339Nano, string(b[1:len(b)-1]))
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

// GatewayRecord is the retained payload at <prefix>/gateways/<gateway>/status, and the
// MQTT will (with State "offline").
type GatewayRecord struct {
	State   string `json:"state"` // "online" | "offline"
	Gateway string `json:"gateway"`
	Epoch   int64  `json:"epoch"`
	Started Time   `json:"started"`
	Version string `json:"version"`
	// ValidUntil is the gateway's status lease (see Lease), renewed while it is online:
	// after it, readers treat the gateway and every instance it published as unknown,
	// whatever the status says (a will that never fired, a broker restored from old
	// state). Zero (null) on "offline" records and from gateways without leases.
	ValidUntil Time `json:"valid_until,omitzero"`
	// Key is the gateway's public signing key in the text form of FormatPublicKey
	// ("ed25519:<base64>"); every record of a gateway that has one is signed (Sign).
	// Informational: a reader trusts keys it was given (KeyRing), never a key a record
	// names. Empty from gateways that do not sign.
	Key string `json:"key,omitempty"`
}
