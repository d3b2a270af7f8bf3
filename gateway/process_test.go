package gateway_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// buildRollcall builds cmd/rollcall into dir and returns the binary's path.
func buildRollcall(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "rollcall")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/rollcall-edge/rollcall/cmd/rollcall").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestGatewayProcessKillAndStop runs the real `rollcall gateway` binary: SIGKILL makes
// the broker publish the gateway's will (status offline, same epoch); after a restart
// (epoch 2), SIGTERM publishes offline through a clean shutdown, exits 0, and the
// instance records stay retained (nothing lost).
func TestGatewayProcessKillAndStop(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker := mosquitto.Start(t)
	h := rig.New(t)
	h.StartSim(1, 2)
	bin := buildRollcall(t, h.Dir)
	cfgPath := filepath.Join(h.Dir, "gateway.yaml")
	cfg := fmt.Sprintf("gateway: {id: it-gw, state_dir: %s}\nmqtt: {broker: %q}\n%s",
		filepath.Join(h.Dir, "state"), broker.URL(), h.Expand(lifecycleConfig))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "gateway", "--config", cfgPath)
		logf, err := os.Create(filepath.Join(h.Dir, fmt.Sprintf("gateway-%d.log", time.Now().UnixNano())))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
		return cmd
	}
	sub := subscribe(t, broker.URL())
	status := gatewayStatus()

	cmd := start()
	v := view{}
	sub.next(t, 15*time.Second, "online and 2 passing records, epoch 1", func(m message, r map[string]any) bool {
		v.apply(m, r)
		return len(v) == 2 && v["rollcall-firmware-sim-sim-0001"]["epoch"] == float64(1)
	})
	killed := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m, r := sub.next(t, 15*time.Second, "will: offline after SIGKILL", func(m message, r map[string]any) bool {
		return m.topic == status && r["state"] == "offline"
	})
	if r["epoch"] != float64(1) || r["gateway"] != "it-gw" {
		t.Errorf("will payload %v", r)
	}
	t.Logf("SIGKILL → offline (will) at the subscriber: %v", m.at.Sub(killed))
	_ = cmd.Wait()

	cmd = start()
	sub.next(t, 15*time.Second, "online in epoch 2", func(m message, r map[string]any) bool {
		return m.topic == status && r["state"] == "online" && r["epoch"] == float64(2)
	})
	sub.next(t, 15*time.Second, "records of epoch 2", func(m message, r map[string]any) bool {
		v.apply(m, r)
		return len(v) == 2 && v["rollcall-firmware-sim-sim-0001"]["epoch"] == float64(2) &&
			v["rollcall-firmware-sim-sim-0002"]["epoch"] == float64(2)
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sub.next(t, 10*time.Second, "offline after SIGTERM", func(m message, r map[string]any) bool {
		return m.topic == status && r["state"] == "offline" && r["epoch"] == float64(2)
	})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("gateway exit after SIGTERM: %v", err)
	}
	late := subscribe(t, broker.URL())
	lv := view{}
	late.next(t, 10*time.Second, "both records still retained", func(m message, r map[string]any) bool {
		lv.apply(m, r)
		return len(lv) == 2 && lv["rollcall-firmware-sim-sim-0002"]["epoch"] == float64(2)
	})
}
