package gateway_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// reloadRig is a Rig whose logs are kept (and shown with -v), with an embedded broker
// account "line1" for the test's subscriber.
func reloadRig(t *testing.T) (*rig.Rig, *testutil.SyncBuffer) {
	h := rig.New(t)
	logs := &testutil.SyncBuffer{}
	var w io.Writer = logs
	if testing.Verbose() {
		w = io.MultiWriter(logs, os.Stderr)
	}
	h.Log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h.EmbeddedUser("line1", "l1ne")
	return h, logs
}

func asLine1(o *paho.ClientOptions) { o.SetUsername("line1").SetPassword("l1ne") }

// writeConfig writes the gateway config RunGateway would build from extra to a file in
// the rig's directory and returns its path.
func writeConfig(t *testing.T, h *rig.Rig, name, extra string) string {
	t.Helper()
	path := filepath.Join(h.Dir, name)
	if err := os.WriteFile(path, []byte(h.GatewayConfig("embedded", extra)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// countLines returns how many log lines contain every one of subs.
func countLines(logs string, subs ...string) int {
	n := 0
	for _, l := range strings.Split(logs, "\n") {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(l, s)
		}
		if all {
			n++
		}
	}
	return n
}

// drain applies the messages already received to watch, without waiting.
func drain(t *testing.T, sub *subscriber, watch func(message, map[string]any)) {
	t.Helper()
	for {
		select {
		case m := <-sub.msgs:
			watch(m, decode(t, m))
		default:
			return
		}
	}
}

const reloadSim = `
buses:
  - name: bus1
    link: $LINK
    baud: 115200
    turnaround: 1ms
    drives: [{unit: 1, serial: SIM-0001}]
tcp:
  - {name: tcp1, listen: 127.0.0.1:0, drives: [{unit: 1, serial: SIM-0101}]}
  - {name: tcp2, listen: 127.0.0.1:0, drives: [{unit: 1, serial: SIM-0201}]}
  - {name: tcp3, listen: 127.0.0.1:0, drives: [{unit: 1, serial: SIM-0301}]}
`

// TestReloadKeepsLiveInstances: a reload that adds a Modbus TCP target and removes
// another registers the added device and clears the removed one's record, while the
// drive on the unchanged bus and the device of the unchanged target stay passing
// throughout (every record a consumer sees of them, from before the reload to after
// it), with the same status_since (no status change, no restart of their master), and
// keep answering polls.
func TestReloadKeepsLiveInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h, logs := reloadRig(t)
	h.StartSimYAML(reloadSim)
	const health = "health: {poll_interval: 50ms, refresh_interval: 1s}\n"
	g := h.StartGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1"}]
  tcp:
    - {name: tcp1, address: "$ADDR(tcp1)"}
    - {name: tcp2, address: "$ADDR(tcp2)"}
`+health)
	const (
		busDrive = "rollcall-firmware-sim-sim-0001"
		kept     = "rollcall-firmware-sim-sim-0101"
		removed  = "rollcall-firmware-sim-sim-0201"
		added    = "rollcall-firmware-sim-sim-0301"
	)
	sub := subscribe(t, g.BrokerURL(), asLine1)
	v := view{}
	seen := 0 // records of the unchanged instances
	watch := func(m message, r map[string]any) {
		v.apply(m, r)
		_, _, id, ok := contract.Topics{}.ParseInstanceTopic(m.topic)
		if !ok || (id != busDrive && id != kept) {
			return
		}
		seen++
		if r == nil || r["status"] != string(contract.Passing) {
			t.Errorf("%s: a record of an unchanged instance that is not passing: %v", id, r)
		}
	}
	sub.next(t, 15*time.Second, "3 passing instances", func(m message, r map[string]any) bool {
		watch(m, r)
		return len(v) == 3 && v[busDrive]["status"] == "passing" && v[kept]["status"] == "passing" &&
			v[removed]["status"] == "passing"
	})
	before := map[string]contract.Record{}
	for _, id := range []string{busDrive, kept} {
		before[id], _ = g.Registry().Get(id)
	}

	path := writeConfig(t, h, "reload.yaml", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1"}]
  tcp:
    - {name: tcp1, address: "$ADDR(tcp1)"}
    - {name: tcp3, address: "$ADDR(tcp3)"}
`+health)
	reloaded := time.Now()
	if err := g.ReloadFile(path); err != nil {
		t.Fatal(err)
	}
	sub.next(t, 15*time.Second, "the added device registered and the removed one cleared", func(m message, r map[string]any) bool {
		watch(m, r)
		_, stale := v[removed]
		return !stale && v[added]["status"] == "passing"
	})
	rig.WaitAnswering(t, g, 10*time.Second, reloaded, busDrive, kept)
	drain(t, sub, watch)
	if seen < 2 {
		t.Errorf("saw %d records of the unchanged instances, want at least their retained ones", seen)
	}
	for id, b := range before {
		a, ok := g.Registry().Get(id)
		if !ok || a.Status != contract.Passing || !a.StatusSince.Equal(b.StatusSince.Time) || a.Revision < b.Revision {
			t.Errorf("%s across the reload: before %v since %v rev %d, after %v since %v rev %d (live %v)", id,
				b.Status, b.StatusSince, b.Revision, a.Status, a.StatusSince, a.Revision, ok)
		}
	}
	if _, ok := g.Registry().Get(removed); ok {
		t.Errorf("%s still in the registry", removed)
	}
	out := logs.String()
	if countLines(out, `msg="reload applied"`, "added=1 removed=1 restarted=0") != 1 {
		t.Errorf("no summary line with added=1 removed=1 restarted=0 in the log:\n%s", out)
	}
	if strings.Contains(out, "restart to apply") {
		t.Errorf("a key needing a restart was reported, none changed:\n%s", out)
	}
	if g.Endpoints() != 2 {
		t.Errorf("endpoints %d after the reload, want 2", g.Endpoints())
	}
}

// TestReloadInvalidFileKeepsEverything: a reload from a file with errors changes
// nothing (the same instances keep passing, with the same status_since) and logs every
// error with its file:line; the gateway then takes a valid reload.
func TestReloadInvalidFileKeepsEverything(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h, logs := reloadRig(t)
	h.StartSimYAML(reloadSim)
	g := h.StartGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1"}]
  tcp: [{name: tcp1, address: "$ADDR(tcp1)"}]
health: {poll_interval: 50ms}
`)
	snap := rig.WaitCatalog(t, g, 15*time.Second, "2 passing instances", rig.Passing(2))
	// Lines 1–2 are the header (gateway, mqtt); the errors are on lines 5 and 6.
	path := writeConfig(t, h, "bad.yaml", `discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1"}]
  tcp: [{name: tcp3, address: "$ADDR(tcp3)", bogus: 1}]
health: {poll_interval: 0s}
`)
	err := g.ReloadFile(path)
	if err == nil {
		t.Fatal("a config with errors was accepted")
	}
	out := logs.String()
	for _, line := range []string{path + ":5:", path + ":6:"} {
		if countLines(out, "reload: config error") == 0 || !strings.Contains(out, line) {
			t.Errorf("the log does not name %s:\n%s", line, out)
		}
	}
	if !strings.Contains(out, "reload: config rejected; nothing changed") {
		t.Errorf("no rejection line in the log:\n%s", out)
	}
	if strings.Contains(out, "reload applied") {
		t.Errorf("the bad config was applied:\n%s", out)
	}
	rig.WaitAnswering(t, g, 10*time.Second, time.Now(), snap[0].ID, snap[1].ID)
	after := g.Registry().Snapshot()
	if len(after) != 2 {
		t.Fatalf("catalog after the rejected reload: %+v", after)
	}
	for i := range after {
		if after[i].ID != snap[i].ID || !after[i].StatusSince.Equal(snap[i].StatusSince.Time) {
			t.Errorf("instance %s changed: %+v, was %+v", after[i].ID, after[i], snap[i])
		}
	}
	// Still reloadable: the same file, fixed.
	good := writeConfig(t, h, "good.yaml", `discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1"}]
  tcp: [{name: tcp1, address: "$ADDR(tcp1)"}, {name: tcp3, address: "$ADDR(tcp3)"}]
health: {poll_interval: 50ms}
`)
	if err := g.ReloadFile(good); err != nil {
		t.Fatal(err)
	}
	rig.WaitCatalog(t, g, 15*time.Second, "3 passing instances after the valid reload", rig.Passing(3))
}

// TestReloadFixedKeyNamed: a reload that changes keys a running gateway cannot apply
// (the health policy, the MQTT client id) names each in one warning and applies the
// rest (a target added); the policy in force is unchanged.
func TestReloadFixedKeyNamed(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h, logs := reloadRig(t)
	h.StartSimYAML(reloadSim)
	g := h.StartGateway("embedded", `
discovery:
  tcp: [{name: tcp1, address: "$ADDR(tcp1)"}]
health: {poll_interval: 50ms}
`)
	rig.WaitCatalog(t, g, 15*time.Second, "1 passing instance", rig.Passing(1))
	h.MQTTExtra += ", client_id: another-id"
	path := writeConfig(t, h, "reload.yaml", `
discovery:
  tcp: [{name: tcp1, address: "$ADDR(tcp1)"}, {name: tcp2, address: "$ADDR(tcp2)"}]
health: {poll_interval: 50ms, failures_before_critical: 5}
`)
	if err := g.ReloadFile(path); err != nil {
		t.Fatal(err)
	}
	rig.WaitCatalog(t, g, 15*time.Second, "the added target's device passing", rig.Passing(2))
	out := logs.String()
	for _, key := range []string{"mqtt.client_id", "health.failures_before_critical"} {
		if n := countLines(out, `msg="reload: `+key+` changed; restart to apply"`); n != 1 {
			t.Errorf("%d warnings naming %s, want 1:\n%s", n, key, out)
		}
	}
	if n := countLines(out, "restart to apply"); n != 2 {
		t.Errorf("%d keys named as needing a restart, want 2:\n%s", n, out)
	}
	if countLines(out, `msg="reload applied"`, "added=1 removed=0 restarted=0 updated=0 restart_needed=2") != 1 {
		t.Errorf("no summary line with added=1 restart_needed=2:\n%s", out)
	}
	if f := g.Registry().Policy().FailuresBeforeCritical; f != 3 {
		t.Errorf("failures_before_critical in force %d, want 3 (not reloadable)", f)
	}
}

// TestReloadBuses: a reload that changes a bus (its units) and removes another restarts
// the changed bus's master, which claims the drive it finds again (passing), while the
// drive it no longer polls goes critical after the restart grace and is then cleared, as
// after a gateway restart; the removed bus's drive is cleared at once, never reported
// critical.
func TestReloadBuses(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h, logs := reloadRig(t)
	bus2 := filepath.Join(h.Dir, "bus2")
	h.StartSimYAML(`
buses:
  - name: bus1
    link: $LINK
    baud: 115200
    turnaround: 1ms
    drives: [{unit: 1, serial: SIM-0001}, {unit: 2, serial: SIM-0002}]
  - name: bus2
    link: ` + bus2 + `
    baud: 115200
    turnaround: 1ms
    drives: [{unit: 1, serial: SIM-0011}]
`)
	const health = "health: {poll_interval: 50ms, restart_grace: 1s, deregister_critical_after: 1s}\n"
	g := h.StartGateway("embedded", `
discovery:
  serial:
    - {name: bus1, device: $LINK, baud: 115200, units: "1-2"}
    - {name: bus2, device: `+bus2+`, baud: 115200, units: "1"}
`+health)
	const (
		claimed = "rollcall-firmware-sim-sim-0001"
		dropped = "rollcall-firmware-sim-sim-0002"
		removed = "rollcall-firmware-sim-sim-0011"
	)
	sub := subscribe(t, g.BrokerURL(), asLine1)
	v := view{}
	sub.next(t, 15*time.Second, "3 passing drives", func(m message, r map[string]any) bool {
		v.apply(m, r)
		return len(v) == 3 && v[claimed]["status"] == "passing" && v[dropped]["status"] == "passing" && v[removed]["status"] == "passing"
	})
	path := writeConfig(t, h, "reload.yaml", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1"}]
`+health)
	reloaded := time.Now()
	if err := g.ReloadFile(path); err != nil {
		t.Fatal(err)
	}
	droppedCritical := false
	sub.next(t, 20*time.Second, "the removed bus's drive and the dropped unit cleared", func(m message, r map[string]any) bool {
		v.apply(m, r)
		_, _, id, _ := contract.Topics{}.ParseInstanceTopic(m.topic)
		switch {
		case id == removed && r != nil:
			t.Errorf("the removed bus's drive published %v; want its record cleared at once", r)
		case id == dropped && r != nil && r["status"] == "critical":
			droppedCritical = true
		}
		_, a := v[removed]
		_, b := v[dropped]
		return !a && !b
	})
	if !droppedCritical {
		t.Error("the unit no longer polled was cleared without going critical first")
	}
	rig.WaitAnswering(t, g, 10*time.Second, reloaded, claimed)
	if rec, _ := g.Registry().Get(claimed); rec.Status != contract.Passing {
		t.Errorf("the drive of the restarted bus: %+v", rec)
	}
	if countLines(logs.String(), `msg="reload applied"`, "added=0 removed=1 restarted=1") != 1 {
		t.Errorf("no summary line with removed=1 restarted=1:\n%s", logs.String())
	}
}

// TestReloadProcessSIGHUP runs the real `rollcall gateway --config FILE` under a fake
// service manager (a $NOTIFY_SOCKET the test reads): after READY=1, the config file is
// changed (a bus sweeps one more unit) and the process gets SIGHUP, as `systemctl reload`
// sends it (ExecReload=/bin/kill -HUP $MAINPID): it reports RELOADING=1 then READY=1,
// the drive the new config finds is published, the one it already had stays, and the
// process still stops cleanly on SIGTERM.
func TestReloadProcessSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker := mosquitto.Start(t)
	h := rig.New(t)
	h.StartSim(1, 2)
	bin := buildRollcall(t, h.Dir)

	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(h.Dir, "notify"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	notes := make(chan string, 16)
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				return
			}
			select {
			case notes <- string(buf[:n]):
			default: // the test stopped reading
			}
		}
	}()
	t.Cleanup(func() { sock.Close(); readers.Wait() })
	note := func(prefix string) string {
		t.Helper()
		timeout := time.After(15 * time.Second)
		for {
			select {
			case s := <-notes:
				if strings.HasPrefix(s, prefix) {
					return s
				}
			case <-timeout:
				t.Fatalf("no %s notification", prefix)
				return ""
			}
		}
	}

	cfgPath := filepath.Join(h.Dir, "gateway.yaml")
	write := func(units string) {
		t.Helper()
		cfg := fmt.Sprintf("gateway: {id: it-gw, state_dir: %s}\nmqtt: {broker: %q}\n"+
			"discovery:\n  serial: [{name: bus1, device: %s, baud: 115200, units: %q}]\nhealth: {poll_interval: 50ms}\n",
			filepath.Join(h.Dir, "state"), broker.URL(), h.Link, units)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("1")
	sub := subscribe(t, broker.URL())
	cmd := exec.Command(bin, "gateway", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+filepath.Join(h.Dir, "notify"))
	logf, err := os.Create(filepath.Join(h.Dir, "gateway.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	note("READY=1")
	v := view{}
	sub.next(t, 15*time.Second, "drive 1 passing", func(m message, r map[string]any) bool {
		v.apply(m, r)
		return len(v) == 1 && v["rollcall-firmware-sim-sim-0001"]["status"] == "passing"
	})

	write("1-2")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if s := note("RELOADING=1"); !strings.Contains(s, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", s)
	}
	note("READY=1")
	sub.next(t, 15*time.Second, "drive 2 found after the reload, drive 1 still there", func(m message, r map[string]any) bool {
		v.apply(m, r)
		return len(v) == 2 && v["rollcall-firmware-sim-sim-0002"]["status"] == "passing" &&
			v["rollcall-firmware-sim-sim-0001"]["status"] == "passing"
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		log, _ := os.ReadFile(logf.Name())
		t.Fatalf("gateway exit after SIGTERM: %v\n%s", err, log)
	}
}

// TestReloadRemovesReleasedInstances: a bus changed by one reload releases the drive
// its new master no longer sweeps (it waits out health.restart_grace, unclaimed); a
// second reload that removes the bus clears that drive's record at once too, with the
// drive it claimed again — a removed bus leaves nothing behind, passing or critical.
func TestReloadRemovesReleasedInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h, _ := reloadRig(t)
	h.StartSim(1, 2)
	// A long grace: the released drive would stay passing for an hour.
	const health = "health: {poll_interval: 50ms, restart_grace: 1h}\n"
	g := h.StartGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-2"}]
`+health)
	const (
		claimed  = "rollcall-firmware-sim-sim-0001"
		released = "rollcall-firmware-sim-sim-0002"
	)
	sub := subscribe(t, g.BrokerURL(), asLine1)
	v := view{}
	sub.next(t, 15*time.Second, "2 passing drives", func(m message, r map[string]any) bool {
		v.apply(m, r)
		return len(v) == 2 && v[claimed]["status"] == "passing" && v[released]["status"] == "passing"
	})
	changed := time.Now()
	if err := g.ReloadFile(writeConfig(t, h, "one.yaml", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1"}]
`+health)); err != nil {
		t.Fatal(err)
	}
	rig.WaitAnswering(t, g, 10*time.Second, changed, claimed)
	if err := g.ReloadFile(writeConfig(t, h, "none.yaml", health)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{claimed, released} {
		if rec, ok := g.Registry().Get(id); ok {
			t.Errorf("%s still live after its bus was removed: %+v", id, rec)
		}
	}
	sub.next(t, 10*time.Second, "both records cleared", func(m message, r map[string]any) bool {
		v.apply(m, r)
		return len(v) == 0
	})
}

// TestReloadRepeated: ten reloads in a row, each restarting bus1's master on the same
// device (its timeout changes) and removing or adding bus2 again: every restart opens
// the device the previous master closed (never "in use"), one master runs per bus after
// each reload (no leak), the drives end up passing, and once bus2 is removed for good
// /metrics has no series of it left (rollcall_bus_up included).
func TestReloadRepeated(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h, logs := reloadRig(t)
	bus2 := filepath.Join(h.Dir, "bus2")
	h.StartSimYAML(`
buses:
  - {name: bus1, link: $LINK, baud: 115200, turnaround: 1ms, drives: [{unit: 1, serial: SIM-0001}]}
  - {name: bus2, link: ` + bus2 + `, baud: 115200, turnaround: 1ms, drives: [{unit: 1, serial: SIM-0011}]}
`)
	conf := func(timeout string, withBus2 bool) string {
		s := "http: {listen: \"127.0.0.1:0\"}\nhealth: {poll_interval: 50ms}\ndiscovery:\n  serial:\n" +
			"    - {name: bus1, device: $LINK, baud: 115200, units: \"1\", timeout: " + timeout + "}\n"
		if withBus2 {
			s += "    - {name: bus2, device: " + bus2 + ", baud: 115200, units: \"1\"}\n"
		}
		return s
	}
	g := h.StartGateway("embedded", conf("50ms", true))
	rig.WaitCatalog(t, g, 15*time.Second, "2 passing drives", rig.Passing(2))
	masters := func() int {
		buf := make([]byte, 8<<20)
		return strings.Count(string(buf[:runtime.Stack(buf, true)]), "gateway.(*Gateway).startBus.func1(")
	}
	for i := range 10 {
		withBus2 := i%2 == 0
		if err := g.ReloadFile(writeConfig(t, h, fmt.Sprintf("r%d.yaml", i), conf(fmt.Sprintf("%dms", 40+i), withBus2))); err != nil {
			t.Fatal(err)
		}
		want := 1
		if withBus2 {
			want = 2
		}
		// A stopped master's goroutine ends just after its port is closed.
		testutil.EventuallyValue(t, 5*time.Second, fmt.Sprintf("%d masters running after reload %d", want, i), func() (int, bool) {
			n := masters()
			return n, n == want
		})
	}
	// Last reload: bus2 absent.
	rig.WaitCatalog(t, g, 15*time.Second, "bus1's drive passing, bus2's gone", func(recs []contract.Record) bool {
		return len(recs) == 1 && recs[0].Endpoint.Bus == "bus1" && recs[0].Status == contract.Passing
	})
	rig.WaitAnswering(t, g, 10*time.Second, time.Now(), "rollcall-firmware-sim-sim-0001")
	out := logs.String()
	if strings.Contains(out, "in use") || strings.Contains(out, "cannot open") {
		t.Errorf("a restarted master could not open its device:\n%s", out)
	}
	if n := countLines(out, `msg="reload applied"`); n != 10 {
		t.Errorf("%d reloads applied, want 10", n)
	}
	for series := range scrape(t, "http://"+g.HTTPAddr()+"/metrics") {
		if strings.Contains(series, `"bus2"`) {
			t.Errorf("series of the removed bus2 left in /metrics: %s", series)
		}
	}
}

// TestReloadOutsideRun: Reload refuses with ErrNotRunning, without blocking, before Run
// and after it returned; reloads racing the shutdown each either apply or refuse, and
// none is left waiting.
func TestReloadOutsideRun(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h, _ := reloadRig(t)
	h.StartSimYAML(reloadSim)
	extra := "discovery:\n  serial: [{name: bus1, device: $LINK, baud: 115200, units: \"1\"}]\nhealth: {poll_interval: 50ms}\n"
	cfg, err := config.Parse("gateway.yaml", []byte(h.GatewayConfig("embedded", extra)))
	if err != nil {
		t.Fatal(err)
	}
	idle, err := gateway.New(gateway.Options{Config: cfg, Logger: h.Log})
	if err != nil {
		t.Fatal(err)
	}
	if err := idle.Reload(cfg); !errors.Is(err, gateway.ErrNotRunning) {
		t.Errorf("Reload before Run: %v, want ErrNotRunning", err)
	}

	g, stop := h.RunGateway("embedded", extra)
	rig.WaitCatalog(t, g, 15*time.Second, "drive passing", rig.Passing(1))
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := *cfg
			next.Discovery.Serial = slices.Clone(cfg.Discovery.Serial)
			next.Discovery.Serial[0].Timeout = time.Duration(40+i%2) * time.Millisecond // a restart
			errs <- g.Reload(&next)
		}()
	}
	stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && !errors.Is(err, gateway.ErrNotRunning) {
			t.Errorf("Reload racing the shutdown: %v", err)
		}
	}
	if err := g.Reload(cfg); !errors.Is(err, gateway.ErrNotRunning) {
		t.Errorf("Reload after Run returned: %v, want ErrNotRunning", err)
	}
}
