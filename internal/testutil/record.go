// Package testutil is the shared test kit: waiting for a condition (Eventually,
// EventuallyValue), a synchronised buffer (SyncBuffer), hex helpers (Unhex, Hex), names
// unique to a test run (Unique) and record fixtures (FullRecord). Sub-packages start real
// peers: mosquitto (a Mosquitto broker, for tests and for cmd/rollcall-bench), netns
// (network namespaces), tcpproxy (a TCP proxy that can cut connections) and rig (a
// gateway with firmware-sim drives, in-process).
package testutil

import (
	"time"

	"github.com/rollcall-edge/rollcall/contract"
)

// FullRecord returns an instance record with every field set, of service
// "servo-drive", epoch 7, status warning. Its times have millisecond precision and its
// State holds JSON-native types, so a decoded copy is reflect.DeepEqual to it.
func FullRecord(gateway, id string, revision int64) contract.Record {
	return contract.Record{
		Schema:      contract.Schema,
		ID:          id,
		Service:     "servo-drive",
		Gateway:     gateway,
		Epoch:       7,
		Revision:    revision,
		Status:      contract.Warning,
		StatusSince: contract.Time{Time: time.Date(2025, 3, 4, 5, 6, 7, 123_000_000, time.UTC)},
		LastSeen:    contract.Time{Time: time.Date(2025, 3, 4, 5, 6, 8, 456_000_000, time.UTC)},
		Endpoint: contract.Endpoint{
			Transport: "modbus-rtu", Bus: "bus1", Device: "/dev/ttyUSB0", Baud: 115200, Unit: 3,
		},
		Identity: contract.Identity{
			Vendor: "ACME", ProductCode: "SD-200", Revision: "1.4", Model: "SD200-A", Serial: "SN/0001",
		},
		Profile: "acme-sd200",
		State:   map[string]any{"cia402": "fault", "fault": true, "error_code": float64(0x2310)},
		Check: contract.Check{
			IntervalMS: 250, TimeoutMS: 50, Failures: 1, RTTMS: 4.37, DetectBudgetMS: 900,
		},
		DiscoveredBy: []string{"rtu-sweep", "mdns"},
		Meta:         map[string]string{"cell": "2", "axis": "7"},
	}
}
