package gateway_test

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// TestPlantView: a gateway with http.plant_view serves, at /v1/plant, every gateway's
// live devices on its broker, each device once with the gateways that see it; records
// of the other gateway are shown because its key is in http.trusted_keys.
func TestPlantView(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	m := mosquitto.Start(t)
	rb := rig.New(t)
	rb.StartSimSerials(map[int]string{1: "SIM-0001", 2: "SIM-0003"})
	rb.GatewayID = "gw-b"
	rb.RunGateway(m.URL(), `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-2"}]
health: {poll_interval: 50ms}
`)
	keys := rb.Dir + "/trusted-keys"
	writeKeys(t, keys, rb)
	ra := rig.New(t)
	ra.StartSimSerials(map[int]string{1: "SIM-0001", 2: "SIM-0002"})
	ra.GatewayID = "gw-a"
	ga, _ := ra.RunGateway(m.URL(), `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-2"}]
health: {poll_interval: 50ms}
http: {listen: "127.0.0.1:0", plant_view: true, trusted_keys: `+keys+`}
`)
	type plantInstance struct {
		ID     string   `json:"id"`
		SeenBy []string `json:"seen_by"`
	}
	url := "http://" + ga.HTTPAddr() + "/v1/plant"
	got := testutil.EventuallyValue(t, 20*time.Second, "the plant view with 3 devices, one seen by both gateways", func() ([]plantInstance, bool) {
		code, body := httpGet(t, url)
		var list []plantInstance
		if code != 200 || json.Unmarshal([]byte(body), &list) != nil {
			return nil, false
		}
		return list, len(list) == 3 && slices.Equal(list[0].SeenBy, []string{"gw-a", "gw-b"})
	})
	want := []string{"rollcall-firmware-sim-sim-0001", "rollcall-firmware-sim-sim-0002", "rollcall-firmware-sim-sim-0003"}
	for i, in := range got {
		if in.ID != want[i] {
			t.Errorf("plant view %+v, want the ids %v", got, want)
		}
	}
}

// writeKeys writes r's gateway key (made by its first start) as a trusted-keys file at
// path, as `rollcall key` prints it.
func writeKeys(t *testing.T, path string, r *rig.Rig) {
	t.Helper()
	key, _, err := gateway.LoadOrCreateKey(filepath.Join(r.Dir, "state-"+r.GatewayID))
	if err != nil {
		t.Fatal(err)
	}
	line := r.GatewayID + " " + contract.FormatPublicKey(key.Public().(ed25519.PublicKey)) + "\n"
	if err := os.WriteFile(path, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
}
