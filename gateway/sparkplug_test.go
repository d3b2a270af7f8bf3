package gateway_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/gateway/edgenode"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
	"github.com/rollcall-edge/rollcall/internal/testutil/tcpproxy"
	"github.com/rollcall-edge/rollcall/protocols/sparkplug"
)

// spMsg is one Sparkplug message as the test host received it.
type spMsg struct {
	topic    string
	typ      sparkplug.MessageType
	device   string
	qos      byte
	retained bool
	raw      []byte
	p        *sparkplug.Payload
	at       time.Time
}

// metric returns the value of the named metric of m (sparkplug.MetricValue) and its
// datatype, or ok false.
func (m spMsg) metric(name string) (any, sparkplug.DataType, bool) {
	for _, mt := range m.p.GetMetrics() {
		if mt.GetName() == name {
			return sparkplug.MetricValue(mt), sparkplug.DataType(mt.GetDatatype()), true
		}
	}
	return nil, 0, false
}

// spHost is a minimal Sparkplug host application: it subscribes to spBv1.0/# and
// decodes what arrives; it can publish NCMD and STATE.
type spHost struct {
	c    paho.Client
	msgs chan spMsg
}

func newSPHost(t *testing.T, url, user, pass string) *spHost {
	t.Helper()
	h := &spHost{msgs: make(chan spMsg, 4096)}
	o := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("sp-host-%d", time.Now().UnixNano())).
		SetCleanSession(true).SetOrderMatters(true).SetAutoReconnect(false)
	if user != "" {
		o.SetUsername(user).SetPassword(pass)
	}
	h.c = paho.NewClient(o)
	if tok := h.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("host connect: %v", tok.Error())
	}
	tok := h.c.Subscribe("spBv1.0/#", 1, func(_ paho.Client, m paho.Message) {
		msg := spMsg{topic: m.Topic(), qos: m.Qos(), retained: m.Retained(), raw: append([]byte(nil), m.Payload()...), at: time.Now()}
		if typ, _, _, dev, ok := sparkplug.ParseTopic(m.Topic()); ok {
			msg.typ, msg.device = typ, dev
			msg.p, _ = sparkplug.Decode(msg.raw)
		}
		h.msgs <- msg
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("host subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { h.c.Disconnect(100) })
	return h
}

// next returns the next message of one of types (STATE and other types are skipped),
// failing at the deadline.
func (h *spHost) next(t *testing.T, deadline time.Duration, what string, types ...sparkplug.MessageType) spMsg {
	t.Helper()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		select {
		case m := <-h.msgs:
			for _, typ := range types {
				if m.typ == typ {
					if m.p == nil {
						t.Fatalf("%s on %s: undecodable payload % X", typ, m.topic, m.raw)
					}
					return m
				}
			}
		case <-timer.C:
			t.Fatalf("timed out after %v waiting for %s", deadline, what)
		}
	}
}

func (h *spHost) publish(t *testing.T, topic string, retained bool, payload []byte) {
	t.Helper()
	if tok := h.c.Publish(topic, 1, retained, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// rebirth sends a Rebirth NCMD ("Node Control/Rebirth" true, Sparkplug 3.0 §5.13).
func (h *spHost) rebirth(t *testing.T, group, node string) {
	b, err := sparkplug.Encode(&sparkplug.Payload{Metrics: []*sparkplug.Payload_Metric{sparkplug.BoolMetric(edgenode.MetricRebirth, true)}})
	if err != nil {
		t.Fatal(err)
	}
	h.publish(t, sparkplug.Topic(sparkplug.NCMD, group, node, ""), false, b)
}

// seqChecker checks that every message but NDEATH carries seq, NBIRTH 0, each next one
// one more, wrapping 255 → 0 (Sparkplug 3.0 §6.4.1, "seq").
type seqChecker struct {
	t    *testing.T
	next uint64
	n    int
}

func (c *seqChecker) see(m spMsg) {
	c.t.Helper()
	switch {
	case m.typ == sparkplug.NDEATH:
		if m.p.Seq != nil {
			c.t.Errorf("NDEATH with seq %d (§6.4.20: none)", m.p.GetSeq())
		}
		return
	case m.p.Seq == nil:
		c.t.Errorf("%s %s without seq", m.typ, m.device)
	case m.typ == sparkplug.NBIRTH:
		if m.p.GetSeq() != 0 {
			c.t.Errorf("NBIRTH seq %d, want 0", m.p.GetSeq())
		}
	case m.p.GetSeq() != c.next:
		c.t.Errorf("%s %s seq %d, want %d", m.typ, m.device, m.p.GetSeq(), c.next)
	}
	if m.p.Timestamp == nil {
		c.t.Errorf("%s %s without a timestamp", m.typ, m.device)
	}
	for _, mt := range m.p.GetMetrics() {
		if mt.Timestamp == nil && m.typ != sparkplug.DDEATH {
			c.t.Errorf("%s %s: metric %s without a timestamp (§6.4.18–21)", m.typ, m.device, mt.GetName())
		}
	}
	if m.qos != 0 && m.typ != sparkplug.NDEATH || m.retained {
		c.t.Errorf("%s %s: QoS %d retained %v, want QoS 0 and not retained", m.typ, m.device, m.qos, m.retained)
	}
	c.next = (m.p.GetSeq() + 1) % 256
	c.n++
}

// births reads an NBIRTH and n DBIRTHs (any order of devices), checking seq, and returns
// the NBIRTH and the DBIRTHs by device.
func births(t *testing.T, h *spHost, sc *seqChecker, n int, deadline time.Duration) (spMsg, map[string]spMsg) {
	t.Helper()
	nb := h.next(t, deadline, "NBIRTH", sparkplug.NBIRTH)
	sc.see(nb)
	out := map[string]spMsg{}
	for len(out) < n {
		m := h.next(t, deadline, fmt.Sprintf("DBIRTH %d of %d", len(out)+1, n), sparkplug.DBIRTH, sparkplug.DDATA, sparkplug.NDATA)
		sc.see(m)
		if m.typ == sparkplug.DBIRTH {
			out[m.device] = m
		}
	}
	return nb, out
}

func protoFile(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "protocols", "sparkplug", "sparkplug_b.proto")
}

// TestSparkplugEdgeNode runs the Sparkplug B export of a gateway with two drives on
// Mosquitto, watched by a minimal host application subscribed before the gateway
// starts:
//   - NBIRTH (QoS 0, not retained, seq 0, timestamp) with bdSeq (Int64), Node
//     Control/Rebirth false (Boolean) and the node metrics; a DBIRTH per drive with its
//     metrics and its identity, endpoint and meta as properties; every later message's
//     seq one more;
//   - a silenced drive: DDEATH within its detect budget, and a DBIRTH when it is back;
//   - a Rebirth NCMD: NBIRTH (same bdSeq) and every DBIRTH within 1 s;
//   - the connection lost: the broker publishes the will, an NDEATH with the NBIRTH's
//     bdSeq and no seq; the next session's NBIRTH has bdSeq + 1;
//   - the NBIRTH decoded by protoc (a decoder that is not ours) from the .proto.
func TestSparkplugEdgeNode(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	protoc := testutil.NeedTool(t, "protoc", "protobuf-compiler")
	broker := mosquitto.Start(t)
	proxy := tcpproxy.Start(t, broker.Addr())
	host := newSPHost(t, broker.URL(), "", "")
	h := rig.New(t)
	s := h.StartSim(1, 2)
	const group, node = "plant1", "cell2-gw"
	g := h.StartGateway(proxy.URL(), `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-2", meta: {cell: "2"}}]
health: {poll_interval: 50ms, deregister_critical_after: 1m}
sparkplug: {group_id: plant1, edge_node_id: cell2-gw}
`)
	sc := &seqChecker{t: t}
	rig.WaitCatalog(t, g, 30*time.Second, "2 passing", rig.Passing(2))
	// The first births came before the drives were registered (each then got its own
	// DBIRTH): ask for a rebirth, and check the birth sequence that answers it.
	asked := time.Now()
	host.rebirth(t, group, node)
	var nb spMsg
	for {
		nb = host.next(t, 30*time.Second, "the NBIRTH answering the rebirth request", sparkplug.NBIRTH)
		if !nb.at.Before(asked) {
			sc.see(nb)
			break
		}
	}
	t.Logf("rebirth answered in %v", time.Since(asked).Round(time.Millisecond))
	db := map[string]spMsg{}
	for len(db) < 2 {
		m := host.next(t, 10*time.Second, "2 DBIRTHs after the rebirth", sparkplug.DBIRTH, sparkplug.DDATA, sparkplug.NDATA)
		sc.see(m)
		if m.typ == sparkplug.DBIRTH {
			db[m.device] = m
		}
	}
	bd, dt, ok := nb.metric(edgenode.MetricBdSeq)
	if !ok || dt != sparkplug.Int64 {
		t.Fatalf("NBIRTH bdSeq %v (%v), want an Int64 metric", bd, dt)
	}
	if v, dt, ok := nb.metric(edgenode.MetricRebirth); !ok || v != false || dt != sparkplug.Boolean {
		t.Errorf("NBIRTH %s = %v (%v), want Boolean false", edgenode.MetricRebirth, v, dt)
	}
	if v, _, ok := nb.metric(edgenode.MetricEpoch); !ok || v != g.Epoch() {
		t.Errorf("NBIRTH %s = %v, want %d", edgenode.MetricEpoch, v, g.Epoch())
	}
	if v, _, ok := nb.metric(edgenode.MetricCountPrefix + "passing"); !ok || v != int64(2) {
		t.Errorf("NBIRTH passing count %v, want 2", v)
	}
	victim := "rollcall-firmware-sim-sim-0002"
	d := db[victim]
	if v, _, _ := d.metric(edgenode.MetricStatus); v != "passing" {
		t.Errorf("DBIRTH %s status %v", victim, v)
	}
	if v, _, _ := d.metric(edgenode.MetricCiA402); v != "operation_enabled" {
		t.Errorf("DBIRTH %s CiA 402 state %v", victim, v)
	}
	for _, mt := range d.p.GetMetrics() {
		if mt.GetName() == edgenode.MetricIdentity {
			keys := strings.Join(mt.GetProperties().GetKeys(), ",")
			if !strings.Contains(keys, "serial") || !strings.Contains(keys, "vendor") {
				t.Errorf("DBIRTH identity properties %q", keys)
			}
		}
	}
	// An independent decoder of the NBIRTH.
	txt := testutil.ProtocDecode(t, protoc, protoFile(t), "org.eclipse.tahu.protobuf.Payload", nb.raw)
	if !strings.Contains(txt, `name: "bdSeq"`) || !strings.Contains(txt, `name: "Node Control/Rebirth"`) || !strings.Contains(txt, "seq: 0") {
		t.Errorf("protoc --decode of the NBIRTH:\n%s", txt)
	}

	// A silenced drive: DDEATH within its detect budget.
	rec, _ := g.Registry().Get(victim)
	silent := time.Now()
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	for {
		m := host.next(t, 30*time.Second, "DDEATH of the silenced drive", sparkplug.DDEATH, sparkplug.DDATA, sparkplug.NDATA, sparkplug.DBIRTH)
		sc.see(m)
		if m.typ == sparkplug.DDEATH && m.device == victim {
			took, budget := m.at.Sub(silent), rig.DetectBudget(rec)
			t.Logf("silence → DDEATH at the host: %v (detect budget %v)", took.Round(time.Millisecond), budget)
			if took > rig.DetectFactor*budget {
				t.Errorf("DDEATH %v after the silence, more than %d × the detect budget %v", took, rig.DetectFactor, budget)
			}
			break
		}
	}
	// Rebirth: NBIRTH (same bdSeq) and the live drive's DBIRTH only, within 1 s.
	asked = time.Now()
	host.rebirth(t, group, node)
	nb2, db2 := births(t, host, sc, 1, 10*time.Second)
	if bd2, _, _ := nb2.metric(edgenode.MetricBdSeq); bd2 != bd {
		t.Errorf("rebirth NBIRTH bdSeq %v, want the session's %v", bd2, bd)
	}
	if _, dead := db2[victim]; dead || len(db2) != 1 {
		t.Errorf("rebirth DBIRTHs %v: want only the live drive", keysOf(db2))
	}
	if took := time.Since(asked); took > time.Second {
		t.Logf("rebirth answered in %v (over 1 s on this machine)", took)
	} else {
		t.Logf("rebirth answered in %v", took.Round(time.Millisecond))
	}
	// The drive back: DBIRTH.
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultNone}); err != nil {
		t.Fatal(err)
	}
	for {
		m := host.next(t, 30*time.Second, "DBIRTH of the drive back", sparkplug.DBIRTH, sparkplug.DDATA, sparkplug.NDATA)
		sc.see(m)
		if m.typ == sparkplug.DBIRTH && m.device == victim {
			break
		}
	}
	// The connection lost: the will.
	proxy.Cut()
	death := host.next(t, 30*time.Second, "NDEATH (the will)", sparkplug.NDEATH)
	sc.see(death)
	if v, _, _ := death.metric(edgenode.MetricBdSeq); v != bd {
		t.Errorf("NDEATH bdSeq %v, want the NBIRTH's %v", v, bd)
	}
	nb3 := host.next(t, 30*time.Second, "the next session's NBIRTH", sparkplug.NBIRTH)
	if v, _, _ := nb3.metric(edgenode.MetricBdSeq); v != (bd.(int64)+1)%256 {
		t.Errorf("next session's bdSeq %v, want %v", v, (bd.(int64)+1)%256)
	}
	t.Logf("%d messages in seq order checked", sc.n)
}

func keysOf(m map[string]spMsg) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestSparkplugPrimaryHost: with a primary host id, no birth comes before that host's
// STATE says online; an offline STATE at least as new ends the session (the edge node
// publishes NDEATH) and the next session waits for online again, then births afresh
// with bdSeq + 1. On the embedded broker, with a configured user as the host.
func TestSparkplugPrimaryHost(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	h.EmbeddedUser("scada", "sc4da")
	h.StartSim(1)
	g := h.StartGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1"}]
sparkplug: {group_id: plant1, primary_host_id: scada1}
`)
	node := rig.DefaultGatewayID
	host := newSPHost(t, g.BrokerURL(), "scada", "sc4da")
	rig.WaitCatalog(t, g, 30*time.Second, "the drive passing", rig.StatusIs("rollcall-firmware-sim-sim-0001", contract.Passing))
	// No birth without the primary host's STATE, even when asked.
	host.rebirth(t, "plant1", node)
	state := func(online bool, ts int64) {
		b, _ := json.Marshal(sparkplug.State{Online: online, Timestamp: ts})
		host.publish(t, sparkplug.StateTopic("scada1"), true, b)
	}
	// Another host's STATE does not count.
	b, _ := json.Marshal(sparkplug.State{Online: true, Timestamp: time.Now().UnixMilli()})
	host.publish(t, sparkplug.StateTopic("other-host"), true, b)
	select {
	case m := <-host.msgs:
		if m.typ == sparkplug.NBIRTH || m.typ == sparkplug.DBIRTH {
			t.Fatalf("%s before the primary host's STATE said online", m.typ)
		}
	case <-time.After(500 * time.Millisecond): // an absence: bounded wait, nothing may come
	}
	ts := time.Now().UnixMilli()
	state(true, ts)
	sc := &seqChecker{t: t}
	nb, db := births(t, host, sc, 1, 10*time.Second)
	bd, _, _ := nb.metric(edgenode.MetricBdSeq)
	if len(db) != 1 {
		t.Errorf("DBIRTHs %v", keysOf(db))
	}
	// Offline but older than the online STATE (a stale death of an earlier host
	// session): ignored (§5.12, termination-host-offline-timestamp).
	state(false, ts-1)
	select {
	case m := <-host.msgs:
		if m.typ == sparkplug.NDEATH {
			t.Fatal("NDEATH after an offline STATE older than the online one")
		}
	case <-time.After(500 * time.Millisecond): // an absence: bounded wait, nothing may come
	}
	// Offline, as new: NDEATH from the edge node, a new session that waits.
	state(false, ts+1)
	death := host.next(t, 10*time.Second, "NDEATH after the primary host went offline", sparkplug.NDEATH)
	if v, _, _ := death.metric(edgenode.MetricBdSeq); v != bd {
		t.Errorf("NDEATH bdSeq %v, want %v", v, bd)
	}
	// Online again: fresh births, bdSeq + 1.
	state(true, ts+2)
	nb2 := host.next(t, 10*time.Second, "NBIRTH after the primary host is back", sparkplug.NBIRTH)
	if v, _, _ := nb2.metric(edgenode.MetricBdSeq); v != (bd.(int64)+1)%256 || nb2.p.GetSeq() != 0 {
		t.Errorf("NBIRTH after the host came back: bdSeq %v seq %d, want %v and 0", v, nb2.p.GetSeq(), (bd.(int64)+1)%256)
	}
}
