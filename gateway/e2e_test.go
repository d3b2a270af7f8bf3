package gateway_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

// message is one MQTT message seen by the test's subscriber, with its arrival time.
type message struct {
	topic    string
	payload  []byte
	retained bool
	at       time.Time
}

// subscriber is a plain paho client (not rollcall's code) subscribed to the whole
// contract tree of a broker (<prefix>/#), so the test checks the contract as a consumer
// sees it.
type subscriber struct {
	client paho.Client
	msgs   chan message
}

func subscribe(t *testing.T, url string, tune ...func(*paho.ClientOptions)) *subscriber {
	t.Helper()
	s := &subscriber{msgs: make(chan message, 1024)}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("it-sub-%d", time.Now().UnixNano())).
		SetCleanSession(true).SetOrderMatters(true)
	for _, f := range tune {
		f(opts)
	}
	s.client = paho.NewClient(opts)
	if tok := s.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	tok := s.client.Subscribe(contract.Topics{}.ReadAllFilter(), 1, func(_ paho.Client, m paho.Message) {
		s.msgs <- message{topic: m.Topic(), payload: append([]byte(nil), m.Payload()...), retained: m.Retained(), at: time.Now()}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { s.client.Disconnect(100) })
	return s
}

// next returns the next message whose topic has the given prefix and for which match
// returns true, failing the test at the deadline.
func (s *subscriber) next(t *testing.T, deadline time.Duration, what string, match func(message, map[string]any) bool) (message, map[string]any) {
	t.Helper()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		select {
		case m := <-s.msgs:
			var rec map[string]any
			if len(m.payload) > 0 {
				if err := json.Unmarshal(m.payload, &rec); err != nil {
					t.Fatalf("%s: payload is not JSON: %v: %q", m.topic, err, m.payload)
				}
			}
			if match(m, rec) {
				return m, rec
			}
		case <-timer.C:
			t.Fatalf("timed out after %v waiting for %s", deadline, what)
			return message{}, nil
		}
	}
}

// isCatalog reports whether m is on an instance topic of the contract.
func isCatalog(m message) bool {
	_, _, _, ok := contract.Topics{}.ParseInstanceTopic(m.topic)
	return ok
}

// gatewayStatus is the topic of the test gateway's status record.
func gatewayStatus() string { return contract.Topics{}.GatewayStatus(rig.DefaultGatewayID) }

// contractFields are every field of the v1 instance record (contract.Record).
var contractFields = []string{"schema", "id", "service", "gateway", "epoch", "revision", "status",
	"status_since", "last_seen", "endpoint", "identity", "profile", "state", "check", "discovered_by", "meta"}

func checkRecord(t *testing.T, m message, rec map[string]any, gw string, epoch int64) {
	t.Helper()
	for _, f := range contractFields {
		if _, ok := rec[f]; !ok {
			t.Errorf("%s: field %q missing", m.topic, f)
		}
	}
	if rec["schema"] != "rollcall.instance/v1" || rec["service"] != "servo-drive" || rec["gateway"] != gw ||
		rec["epoch"] != float64(epoch) || rec["profile"] != "firmware-sim-drive" {
		t.Errorf("%s: header fields %v", m.topic, rec)
	}
	if want := (contract.Topics{}).Instance("servo-drive", gw, fmt.Sprint(rec["id"])); m.topic != want {
		t.Errorf("topic %s, want %s", m.topic, want)
	}
	for _, f := range []string{"status_since", "last_seen"} {
		s, _ := rec[f].(string)
		if _, err := time.Parse("2006-01-02T15:04:05.000Z07:00", s); err != nil {
			t.Errorf("%s: %s %q is not RFC 3339 with milliseconds", m.topic, f, s)
		}
	}
	ep, _ := rec["endpoint"].(map[string]any)
	if ep["transport"] != "modbus-rtu" || ep["bus"] != "bus1" || ep["baud"] != float64(115200) || ep["unit"] == nil || ep["device"] == "" {
		t.Errorf("%s: endpoint %v", m.topic, ep)
	}
	id, _ := rec["identity"].(map[string]any)
	if id["vendor"] != "rollcall firmware-sim" || id["product_code"] != "RC-SIM-402" || id["revision"] == nil ||
		id["model"] == nil || !strings.HasPrefix(fmt.Sprint(id["serial"]), "SIM-") {
		t.Errorf("%s: identity %v", m.topic, id)
	}
	st, _ := rec["state"].(map[string]any)
	if st["cia402"] != "operation_enabled" || st["fault"] != false || st["error_code"] != float64(0) {
		t.Errorf("%s: state %v", m.topic, st)
	}
	chk, _ := rec["check"].(map[string]any)
	for _, f := range []string{"interval_ms", "timeout_ms", "failures", "rtt_ms", "detect_budget_ms"} {
		if _, ok := chk[f]; !ok {
			t.Errorf("%s: check.%s missing", m.topic, f)
		}
	}
	if db, _ := rec["discovered_by"].([]any); len(db) != 1 || db[0] != "rtu-sweep" {
		t.Errorf("%s: discovered_by %v", m.topic, rec["discovered_by"])
	}
	if meta, ok := rec["meta"].(map[string]any); !ok || meta["cell"] != "2" {
		t.Errorf("%s: meta %v", m.topic, rec["meta"])
	}
}

// TestEndToEndRTU is issue 2's acceptance test: firmware-sim with 4 drives on a real
// pseudo-terminal bus, the gateway sweeping units 1–16, and a subscriber on a real
// Mosquitto broker.
func TestEndToEndRTU(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker := mosquitto.Start(t)
	h := rig.New(t)
	// The simulator: 4 drives, 115200 baud with line timing, 1 ms turnaround.
	s := h.StartSim(1, 2, 5, 9)
	sub := subscribe(t, broker.URL())
	g := h.StartGateway(broker.URL(), `
discovery:
  serial:
    - name: bus1
      device: $LINK
      baud: 115200
      units: "1-16"
      meta: {cell: "2"}
health:
  poll_interval: 50ms
  failures_before_critical: 3
  successes_before_passing: 2
  deregister_critical_after: 1s
`)
	epoch := g.Epoch()

	// Gateway status: online, retained, with the epoch.
	_, st := sub.next(t, 10*time.Second, "gateway status online", func(m message, r map[string]any) bool {
		return m.topic == gatewayStatus() && r["state"] == "online"
	})
	if st["epoch"] != float64(epoch) || st["gateway"] != "it-gw" || st["version"] != "test" || st["started"] == nil {
		t.Fatalf("gateway record %v", st)
	}

	// Four passing records carrying every contract field.
	passing := map[string]map[string]any{}
	var lastMsg message
	for len(passing) < 4 {
		m, r := sub.next(t, 15*time.Second, "4 passing records", func(m message, r map[string]any) bool {
			return isCatalog(m) && r != nil && r["status"] == "passing"
		})
		checkRecord(t, m, r, "it-gw", epoch)
		passing[r["id"].(string)] = r
		lastMsg = m
	}
	ids := make([]string, 0, 4)
	for id := range passing {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	want := []string{"rollcall-firmware-sim-sim-0001", "rollcall-firmware-sim-sim-0002", "rollcall-firmware-sim-sim-0005", "rollcall-firmware-sim-sim-0009"}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("instances %v, want %v", ids, want)
	}
	_ = lastMsg

	// A late subscriber sees the same four records, retained. (On a machine starved of
	// CPU a drive may miss three polls, go critical and, 1 s later, be deregistered and
	// found again: its record then reaches the late subscriber live, not retained.)
	late := subscribe(t, broker.URL())
	seen := map[string]bool{}
	retainedSeen := 0
	lateDeadline := time.Now().Add(20 * time.Second)
	for len(seen) < 4 {
		m, r := late.next(t, time.Until(lateDeadline), fmt.Sprintf("the 4 records at a late subscriber (seen %v)", seen), func(m message, r map[string]any) bool {
			return isCatalog(m) && r != nil
		})
		seen[r["id"].(string)] = true
		if m.retained {
			retainedSeen++
		}
	}
	if retainedSeen == 0 {
		t.Fatal("a late subscriber got no retained record")
	}

	// Drive 2 goes silent: critical, then deregistered (empty retained record).
	victim := "rollcall-firmware-sim-sim-0002"
	oldRev := passing[victim]["revision"].(float64)
	silentAt := time.Now()
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	// Records of the bystanders that are not passing, seen from here on: on a machine
	// starved of CPU the simulator may leave a healthy drive unanswered three polls in a
	// row, and the product then rightly says critical until it answers again. Such
	// moments are logged; what must hold is that the silent drive does not keep the
	// others from answering (checked below on the registry while it is silent) and that
	// they are all passing at the end.
	var disturbed []string
	bystander := func(m message, r map[string]any) {
		if isCatalog(m) && r != nil && r["id"] != victim && r["status"] != "passing" {
			disturbed = append(disturbed, fmt.Sprintf("%v %v at +%v", r["id"], r["status"], m.at.Sub(silentAt).Round(time.Millisecond)))
		}
	}
	m, r := sub.next(t, 10*time.Second, "critical", func(m message, r map[string]any) bool {
		bystander(m, r)
		return r != nil && r["id"] == victim && r["status"] == "critical"
	})
	criticalAt := time.Now()
	detect := m.at.Sub(silentAt)
	budget := time.Duration(r["check"].(map[string]any)["detect_budget_ms"].(float64)) * time.Millisecond
	t.Logf("silent → critical at the Mosquitto subscriber: %v (poll 50ms, default timeout, failures 3; detect_budget_ms %v)", detect, budget.Milliseconds())
	if detect > rig.DetectFactor*budget {
		t.Errorf("silent → critical took %v, more than %d × the published detect budget %v", detect, rig.DetectFactor, budget)
	}
	if r["revision"].(float64) <= oldRev {
		t.Errorf("critical record revision %v not above %v", r["revision"], oldRev)
	}
	critRev := r["revision"].(float64)
	// While drive 2 is silent (each of its polls and probes runs into the timeout), the
	// other drives on the bus still answer theirs.
	rig.WaitAnswering(t, g, 10*time.Second, criticalAt, want[0], want[2], want[3])
	m, _ = sub.next(t, 10*time.Second, "empty record (deregistration)", func(m message, r map[string]any) bool {
		bystander(m, r)
		return strings.HasSuffix(m.topic, "/"+victim) && len(m.payload) == 0
	})
	t.Logf("critical → deregistered: %v after silence", m.at.Sub(silentAt))

	// It answers again: back with the same id and a higher revision.
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultNone}); err != nil {
		t.Fatal(err)
	}
	_, r = sub.next(t, 10*time.Second, "drive 2 back passing", func(m message, r map[string]any) bool {
		bystander(m, r)
		return r != nil && r["id"] == victim && r["status"] == "passing"
	})
	if r["revision"].(float64) <= critRev {
		t.Errorf("revision after return %v, not above %v", r["revision"], critRev)
	}
	rig.WaitCatalog(t, g, 10*time.Second, "all four drives passing", rig.Passing(4))
	if len(disturbed) > 0 {
		t.Logf("bystander records while drive 2 was silent (CPU starvation; each recovered): %v", disturbed)
	}

	// A CiA 402 fault on drive 5: warning with the fault in its state; fault reset
	// (mode none): passing again.
	faulty := "rollcall-firmware-sim-sim-0005"
	if err := s.SetFault("bus1", 5, slave.Fault{Mode: slave.FaultDevice}); err != nil {
		t.Fatal(err)
	}
	_, r = sub.next(t, 10*time.Second, "drive 5 warning", func(m message, r map[string]any) bool {
		return r != nil && r["id"] == faulty && r["status"] == "warning"
	})
	if st := r["state"].(map[string]any); st["fault"] != true || st["cia402"] != "fault" || st["error_code"] != float64(0x2310) {
		t.Errorf("faulted drive state %v", st)
	}
	if err := s.SetFault("bus1", 5, slave.Fault{Mode: slave.FaultNone}); err != nil {
		t.Fatal(err)
	}
	sub.next(t, 10*time.Second, "drive 5 passing after fault reset", func(m message, r map[string]any) bool {
		return r != nil && r["id"] == faulty && r["status"] == "passing"
	})

	// Poll round trip against the simulator's wire-time floor at 115200 baud:
	// request (8 bytes) + t3.5 + turnaround (1 ms) + reply (9 bytes).
	floor := modbus.WireTime(8, 115200) + modbus.T35(115200) + time.Millisecond + modbus.WireTime(9, 115200)
	var rtts []float64
	for _, id := range want {
		if rec, ok := g.Registry().Get(id); ok {
			rtts = append(rtts, rec.Check.RTTMS)
		}
	}
	t.Logf("poll rtt_ms %v against the sim's floor %.3f ms", rtts, float64(floor)/float64(time.Millisecond))
	for _, v := range rtts {
		if time.Duration(v*float64(time.Millisecond)) < floor-100*time.Microsecond {
			t.Errorf("rtt %v ms below the physical floor %v: line timing not emulated", v, floor)
		}
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
