package gateway_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// TestProfilesOnRealBus checks profile matching against firmware-sim on a pty bus with
// only some of the shipped profiles loaded: the generic CiA 402 profile (no serial
// source, so ids fall back to <gateway>-<bus>-u<unit>), and the modbus-device fallback
// (heartbeat = Read Device Identification). Embedded broker: no Mosquitto needed.
func TestProfilesOnRealBus(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	tests := []struct {
		profile, service, firstID string
		state                     bool // CiA 402 state decoded
	}{
		{"cia402-generic", "servo-drive", "it-gw-bus1-u3", true},
		{"modbus-device", "modbus-device", "it-gw-bus1-u3", false},
	}
	for _, tc := range tests {
		t.Run(tc.profile, func(t *testing.T) {
			h := rig.New(t)
			h.StartSim(3, 7)
			pdir := filepath.Join(h.Dir, "profiles")
			if err := os.MkdirAll(pdir, 0o755); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join("..", "configs", "profiles", tc.profile+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(pdir, tc.profile+".yaml"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			g := h.StartGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-8"}]
health: {poll_interval: 50ms}
profiles: {dirs: [`+pdir+`]}
`)
			// Passing, not just registered: on a CPU-starved machine a poll may time out
			// once; the drive must be passing again afterwards.
			snap := rig.WaitCatalog(t, g, 15*time.Second, "2 passing instances", rig.Passing(2))
			r := snap[0]
			if r.ID != tc.firstID || r.Profile != tc.profile || r.Service != tc.service {
				t.Fatalf("instance %+v", r)
			}
			if r.Identity.Vendor != "rollcall firmware-sim" || r.Identity.Serial != "" {
				t.Errorf("identity %+v", r.Identity)
			}
			if got := r.State["cia402"] == "operation_enabled"; got != tc.state {
				t.Errorf("state %v", r.State)
			}
		})
	}
}
