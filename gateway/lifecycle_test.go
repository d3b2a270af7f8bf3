package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
	"github.com/rollcall-edge/rollcall/protocols/mqtt"
)

// view is a consumer's picture of the catalog built from messages: id → record fields
// (a nil entry was cleared by an empty record).
type view map[string]map[string]any

func (v view) apply(m message, r map[string]any) {
	_, _, id, ok := contract.Topics{}.ParseInstanceTopic(m.topic)
	if !ok {
		return
	}
	if r == nil {
		delete(v, id)
		return
	}
	v[id] = r
}

// equalsRegistry reports whether the view holds exactly the registry's live instances
// with the same status and revision.
func (v view) equalsRegistry(snap []contract.Record) bool {
	if len(v) != len(snap) {
		return false
	}
	for _, rec := range snap {
		r, ok := v[rec.ID]
		if !ok || r["status"] != string(rec.Status) || r["revision"] != float64(rec.Revision) {
			return false
		}
	}
	return true
}

const lifecycleConfig = `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-4"}]
health: {poll_interval: 50ms, restart_grace: 1s, deregister_critical_after: 1s}
`

// TestRestartClearsRemovedDevice: a drive removed while the gateway is down is taken
// through critical to deregistered by the restarted gateway (epoch + 1), which read back
// its own retained records; the other drives are claimed again, never a stale record.
func TestRestartClearsRemovedDevice(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker := mosquitto.Start(t)
	h := rig.New(t)
	s := h.StartSim(1, 2, 3)
	sub := subscribe(t, broker.URL())
	_, stop := h.RunGateway(broker.URL(), lifecycleConfig)
	v := view{}
	sub.next(t, 15*time.Second, "3 passing records in epoch 1", func(m message, r map[string]any) bool {
		v.apply(m, r)
		return len(v) == 3
	})
	stop()
	sub.next(t, 10*time.Second, "gateway offline", func(m message, r map[string]any) bool {
		return m.topic == gatewayStatus() && r["state"] == "offline"
	})
	if err := s.SetFault("bus1", 3, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	g2, _ := h.RunGateway(broker.URL(), lifecycleConfig)
	if g2.Epoch() != 2 {
		t.Fatalf("epoch %d after restart, want 2", g2.Epoch())
	}
	gone := "rollcall-firmware-sim-sim-0003"
	sawCritical := false
	sub.next(t, 20*time.Second, "removed drive critical then cleared, others passing in epoch 2", func(m message, r map[string]any) bool {
		v.apply(m, r)
		if r != nil && r["id"] == gone && r["status"] == "critical" && r["epoch"] == float64(2) {
			sawCritical = true
		}
		_, stale := v[gone]
		return !stale && len(v) == 2 && v["rollcall-firmware-sim-sim-0001"]["epoch"] == float64(2) &&
			v["rollcall-firmware-sim-sim-0002"]["epoch"] == float64(2)
	})
	if !sawCritical {
		t.Error("the removed drive was cleared without going critical first")
	}
	// A consumer arriving now sees exactly the two live drives.
	late := subscribe(t, broker.URL())
	lv := view{}
	late.next(t, 10*time.Second, "retained view", func(m message, r map[string]any) bool {
		lv.apply(m, r)
		return lv.equalsRegistry(g2.Registry().Snapshot())
	})
}

// TestBrokerOutage: Mosquitto (persistent, like a production broker) is stopped for 10 s
// while a drive dies and another faults; the gateway keeps polling, and after the broker
// is back the subscriber's view equals the gateway's registry: the stale record of the
// dead drive, which the broker kept, is cleared.
func TestBrokerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker := mosquitto.StartPersistent(t)
	h := rig.New(t)
	s := h.StartSim(1, 2, 3)
	sub := subscribe(t, broker.URL())
	g := h.StartGateway(broker.URL(), lifecycleConfig)
	v := view{}
	sub.next(t, 15*time.Second, "3 passing records", func(m message, r map[string]any) bool {
		v.apply(m, r)
		return len(v) == 3
	})
	down := time.Now()
	broker.Stop()
	if err := s.SetFault("bus1", 3, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultDevice}); err != nil {
		t.Fatal(err)
	}
	// The gateway keeps polling: the registry follows the drives while the broker is down.
	rig.WaitCatalog(t, g, 10*time.Second, "drive 3 deregistered and drive 2 warning during the outage", func(r []contract.Record) bool {
		d2, ok := rig.Instance(r, "rollcall-firmware-sim-sim-0002")
		return len(r) == 2 && ok && d2.Status == contract.Warning
	})
	// The outage lasts 10 s (the scenario, not a synchronisation).
	<-time.After(time.Until(down.Add(10 * time.Second)))
	broker.Restart()
	after := subscribe(t, broker.URL())
	av := view{}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for !av.equalsRegistry(g.Registry().Snapshot()) {
		select {
		case m := <-after.msgs:
			r := decode(t, m)
			av.apply(m, r)
		case <-tick.C:
		case <-deadline:
			t.Fatalf("after the outage the subscriber sees %v; the registry has %+v", av, g.Registry().Snapshot())
		}
	}
	if _, stale := av["rollcall-firmware-sim-sim-0003"]; stale {
		t.Fatal("stale record of the dead drive still retained")
	}
	t.Logf("view equals registry %v after the broker restart", time.Since(down)-10*time.Second)
}

// TestFlappingBounded: a drive whose CiA 402 fault bit toggles every 100 ms would change
// status ~10 times a second; the per-instance publication limit (burst 5, then 1/s)
// bounds what reaches the broker, and the last state still gets out.
func TestFlappingBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker := mosquitto.Start(t)
	h := rig.New(t)
	h.StartSimYAML(`
buses:
  - name: bus1
    link: $LINK
    baud: 115200
    turnaround: 1ms
    drives:
      - {unit: 1, serial: SIM-0001, schedule: [{after: 50ms, mode: fault}, {after: 150ms, mode: none}], repeat: 200ms}
`)
	sub := subscribe(t, broker.URL())
	g := h.StartGateway(broker.URL(), `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1"}]
health: {poll_interval: 20ms, successes_before_passing: 1, publish_burst: 5, publish_every: 1s}
`)
	id := "rollcall-firmware-sim-sim-0001"
	var first time.Time
	count := 0
	window := 3 * time.Second
	timeout := time.After(20 * time.Second)
	for first.IsZero() || time.Since(first) < window {
		select {
		case m := <-sub.msgs:
			if r := decode(t, m); r != nil && r["id"] == id {
				if first.IsZero() {
					first = m.at
				}
				if m.at.Sub(first) <= window {
					count++
				}
			}
		case <-timeout:
			t.Fatal("no records")
		}
	}
	limit := 5 + int(window/time.Second) + 1
	t.Logf("%d records published in %v for a drive flapping every 100 ms (limit %d)", count, window, limit)
	if count > limit {
		t.Fatalf("%d records in %v, limit allows %d", count, window, limit)
	}
	if count < 3 {
		t.Fatalf("only %d records: the drive did not flap", count)
	}
	_ = g
}

// TestDeathAfterFlapping: a drive flaps (CiA 402 fault bit on and off every 100 ms) long
// enough for the per-instance publication limit to hold records back, then dies. Its
// death must reach a subscriber within the detect budget its own record publishes: the
// transition to critical bypasses the limit. Measured from the last successful poll
// (the record's last_seen: the drive died after it) to the critical record's arrival at
// a plain MQTT subscriber, an upper bound of silent → critical.
func TestDeathAfterFlapping(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker := mosquitto.Start(t)
	h := rig.New(t)
	s := h.StartSim(1)
	sub := subscribe(t, broker.URL())
	g := h.StartGateway(broker.URL(), `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1"}]
health: {poll_interval: 20ms, successes_before_passing: 1, publish_burst: 5, publish_every: 1s}
`)
	id := "rollcall-firmware-sim-sim-0001"
	rig.WaitCatalog(t, g, 15*time.Second, "the drive passing", rig.Passing(1))
	// Flap: the stimulus, ten fault/clear cycles of 100 ms each.
	records := 0
	toggle := time.NewTicker(100 * time.Millisecond)
	defer toggle.Stop()
	for i := 0; i < 20; {
		select {
		case m := <-sub.msgs:
			if r := decode(t, m); r != nil && r["id"] == id && !m.retained {
				records++
			}
		case <-toggle.C:
			mode := slave.FaultNone
			if i%2 == 0 {
				mode = slave.FaultDevice
			}
			if err := s.SetFault("bus1", 1, slave.Fault{Mode: mode}); err != nil {
				t.Fatal(err)
			}
			i++
		}
	}
	if records <= 5 {
		t.Fatalf("%d records during 2 s of flapping: the publication limit (burst 5) was never reached", records)
	}
	if err := s.SetFault("bus1", 1, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	var crit map[string]any
	var at time.Time
	sub.next(t, 20*time.Second, "the critical record", func(m message, r map[string]any) bool {
		if r != nil && r["id"] == id && r["status"] == "critical" {
			crit, at = r, m.at
			return true
		}
		return false
	})
	lastSeen, err := time.Parse(time.RFC3339Nano, crit["last_seen"].(string))
	if err != nil {
		t.Fatal(err)
	}
	check := crit["check"].(map[string]any)
	budget := time.Duration(check["detect_budget_ms"].(float64)) * time.Millisecond
	took := at.Sub(lastSeen)
	t.Logf("after %d records of flapping (limit engaged), last good poll → critical at the subscriber %v; published detect_budget_ms %v",
		records, took.Round(time.Millisecond), budget)
	if took > rig.DetectFactor*budget {
		t.Fatalf("death took %v to reach the subscriber, more than %d × the published budget %v", took, rig.DetectFactor, budget)
	}
}

func decode(t *testing.T, m message) map[string]any {
	t.Helper()
	if len(m.payload) == 0 {
		return nil
	}
	var r map[string]any
	if err := jsonUnmarshal(m.payload, &r); err != nil {
		t.Fatalf("%s: %v", m.topic, err)
	}
	return r
}

// TestBrokerBackWithOldState: the broker comes back from an old persistence file (a
// restore, or a crash before its last save) that still holds a drive that died and was
// deregistered since, as passing. Nothing is pending in the gateway for that drive; the
// reconciliation after the reconnect must clear the stale record.
func TestBrokerBackWithOldState(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker := mosquitto.StartPersistent(t)
	h := rig.New(t)
	s := h.StartSim(1, 2, 3)
	g := h.StartGateway(broker.URL(), lifecycleConfig)
	rig.WaitCatalog(t, g, 15*time.Second, "3 passing drives", rig.Passing(3))
	// A fresh subscriber sees the three records retained: the broker has them.
	sub := subscribe(t, broker.URL())
	v := view{}
	sub.next(t, 10*time.Second, "3 retained records", func(m message, r map[string]any) bool {
		v.apply(m, r)
		return len(v) == 3
	})
	broker.Stop() // saves: the file now holds the three drives passing
	old, err := os.ReadFile(broker.PersistenceFile())
	if err != nil {
		t.Fatal(err)
	}
	broker.Restart()
	gone := "rollcall-firmware-sim-sim-0003"
	if err := s.SetFault("bus1", 3, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	rig.WaitCatalog(t, g, 15*time.Second, "drive 3 deregistered", func(r []contract.Record) bool {
		_, ok := rig.Instance(r, gone)
		return len(r) == 2 && !ok
	})
	now := subscribe(t, broker.URL())
	nv := view{}
	now.next(t, 10*time.Second, "the broker's view without drive 3", func(m message, r map[string]any) bool {
		nv.apply(m, r)
		return nv.equalsRegistry(g.Registry().Snapshot())
	})
	// The broker comes back with the old state: drive 3 passing, retained.
	broker.Stop()
	if err := os.WriteFile(broker.PersistenceFile(), old, 0o600); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	broker.Restart()
	after := subscribe(t, broker.URL())
	av := view{}
	after.next(t, 20*time.Second, "the stale record cleared after the reconnect", func(m message, r map[string]any) bool {
		av.apply(m, r)
		_, stale := av[gone]
		return !stale && av.equalsRegistry(g.Registry().Snapshot())
	})
	t.Logf("stale record of the dead drive cleared %v after the broker came back with old state", time.Since(back))
}

// TestStateDirLost: the gateway's state directory is lost (a new SD card) while a drive
// is removed: the restarted gateway is at epoch 1 again, below the epoch of the records
// it finds, and has a new signing key, so it cannot vouch for any of them. The removed
// drive's record is cleared without ever being republished live, and the live drives'
// revisions keep increasing (the unverifiable records still count as revision floors).
func TestStateDirLost(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker := mosquitto.Start(t)
	h := rig.New(t)
	s := h.StartSim(1, 2, 3)
	var revs map[string]int64
	for run := 1; run <= 2; run++ { // two runs: the records are at epoch 2
		g, stop := h.RunGateway(broker.URL(), lifecycleConfig)
		snap := rig.WaitCatalog(t, g, 15*time.Second, "3 passing drives", rig.Passing(3))
		revs = map[string]int64{}
		for _, r := range snap {
			revs[r.ID] = r.Revision
		}
		stop()
	}
	if err := os.RemoveAll(filepath.Join(h.Dir, "state-"+h.GatewayID)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFault("bus1", 3, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	sub := subscribe(t, broker.URL())
	g, _ := h.RunGateway(broker.URL(), lifecycleConfig)
	if g.Epoch() != 1 {
		t.Fatalf("epoch %d with a lost state directory, want 1", g.Epoch())
	}
	gone := "rollcall-firmware-sim-sim-0003"
	v := view{}
	sub.next(t, 20*time.Second, "removed drive cleared, the others republished above their revisions", func(m message, r map[string]any) bool {
		v.apply(m, r)
		if !m.retained && r != nil && r["id"] == gone && r["status"] != "critical" {
			t.Fatalf("the new run published the removed drive %s: %v", r["status"], r)
		}
		_, stale := v[gone]
		return !stale && len(v) == 2 && above(v, "rollcall-firmware-sim-sim-0001", revs) && above(v, "rollcall-firmware-sim-sim-0002", revs)
	})
}

// above reports whether the record of id in v is of epoch 1 with a revision above
// revs[id].
func above(v view, id string, revs map[string]int64) bool {
	r, ok := v[id]
	if !ok {
		return false
	}
	rev, _ := r["revision"].(float64)
	return r["epoch"] == float64(1) && int64(rev) > revs[id]
}

// TestMalformedRecordsCleared: what is not a valid record of its topic in the gateway's
// own subtree (not JSON, over the 64 KiB limit, another id's record) is cleared when the
// gateway starts, instead of being skipped and left retained for ever.
func TestMalformedRecordsCleared(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker := mosquitto.Start(t)
	topics := contract.Topics{}
	gw := rig.DefaultGatewayID
	other, err := contract.EncodeRecord(testutil.FullRecord(gw, "someone-else", 1))
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		topics.Instance("servo-drive", gw, "not-json"):  []byte("{not json"),
		topics.Instance("servo-drive", gw, "too-big"):   append([]byte(`{"schema":"rollcall.instance/v1","pad":"`), append(bytes.Repeat([]byte("x"), 70<<10), '"', '}')...),
		topics.Instance("servo-drive", gw, "misplaced"): other,
	}
	var mu sync.Mutex
	latest := map[string][]byte{}
	watch := paho.NewClient(mqtt.Session{Brokers: []string{broker.URL()}, ClientID: "it-watch-malformed", CleanSession: true, OrderMatters: true}.Options())
	if tok := watch.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer watch.Disconnect(100)
	pub := paho.NewClient(mqtt.Session{Brokers: []string{broker.URL()}, ClientID: "it-pub-malformed", CleanSession: true}.Options())
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	for topic, payload := range bad {
		if tok := pub.Publish(topic, 1, true, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
	}
	if tok := watch.Subscribe(topics.GatewayCatalogFilter(gw), 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		latest[m.Topic()] = append([]byte(nil), m.Payload()...)
		mu.Unlock()
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	testutil.Eventually(t, 10*time.Second, "the malformed records retained", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(latest) == len(bad)
	})
	h := rig.New(t)
	h.StartSim(1)
	h.StartGateway(broker.URL(), lifecycleConfig)
	testutil.Eventually(t, 15*time.Second, "every malformed record cleared", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for topic := range bad {
			if len(latest[topic]) != 0 {
				return false
			}
		}
		return true
	})
}

// TestClonedGatewayID: a second gateway started with the same gateway.id (a cloned
// edge-box image) on the same broker refuses to start, naming the id, once it has seen
// the first one's status lease renewed; the first keeps running, and no consumer ever
// sees a false critical or empty record of its drives, nor its status overwritten.
func TestClonedGatewayID(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker := mosquitto.Start(t)
	leased := strings.Replace(lifecycleConfig, "deregister_critical_after: 1s}", "deregister_critical_after: 1s, status_lease: 2s}", 1)
	// A fixed 250 ms reply timeout: the simulated drives run on the test's host, and a
	// host busy with other work can hold a reply up past an adaptive timeout; a drive
	// critical for that is not what this test is about.
	leased = strings.Replace(leased, `units: "1-4"}`, `units: "1-4", timeout: 250ms, adaptive_timeout: false}`, 1)
	a := rig.New(t)
	a.StartSim(1, 2)
	sub := subscribe(t, broker.URL())
	a.RunGateway(broker.URL(), leased)
	v := view{}
	sub.next(t, 15*time.Second, "2 passing records", func(m message, r map[string]any) bool {
		v.apply(m, r)
		return len(v) == 2
	})

	b := rig.New(t) // another box: its own state directory and drives, the same id
	b.StartSim(1)
	cfg, err := config.Parse("clone.yaml", []byte(fmt.Sprintf("gateway: {id: %s, state_dir: %s}\nmqtt: {broker: %q}\n%s",
		rig.DefaultGatewayID, filepath.Join(b.Dir, "state"), broker.URL(), b.Expand(leased))))
	if err != nil {
		t.Fatal(err)
	}
	clone, err := gateway.New(gateway.Options{Config: cfg, Logger: b.Log, Version: "clone"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	runErr := clone.Run(ctx)
	if !errors.Is(runErr, gateway.ErrDuplicateID) || !strings.Contains(runErr.Error(), rig.DefaultGatewayID) {
		t.Fatalf("clone: Run returned %v, want ErrDuplicateID naming %s", runErr, rig.DefaultGatewayID)
	}
	t.Logf("clone refused after %v: %v", time.Since(start).Round(time.Millisecond), runErr)
	// Nothing false came out: every message since is one of the first gateway's, online
	// and passing.
	for {
		select {
		case m := <-sub.msgs:
			var r map[string]any
			if len(m.payload) == 0 {
				t.Fatalf("empty record on %s", m.topic)
			}
			if err := json.Unmarshal(m.payload, &r); err != nil {
				t.Fatalf("%s: %v", m.topic, err)
			}
			if m.topic == gatewayStatus() && (r["state"] != "online" || r["version"] != "test") {
				t.Fatalf("status overwritten: %s", m.payload)
			}
			if isCatalog(m) && r["status"] != "passing" {
				t.Fatalf("false record: %s", m.payload)
			}
		default:
			return
		}
	}
}
