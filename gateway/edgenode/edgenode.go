// Package edgenode exports the gateway's live catalog as a Sparkplug B 3.0 edge node
// (Eclipse Sparkplug Specification 3.0.0), beside the v1 contract and from the same
// registry, so that SCADA hosts that read MQTT as Sparkplug (Ignition's MQTT Engine,
// Sparkplug-aware brokers) see rollcall's live modules without glue.
//
// The gateway is one edge node (group id, edge node id from the config); each instance
// is a device whose device id is the instance id. Messages (topics spBv1.0/<group>/<type>/
// <node>[/<device>], §4.1):
//
//   - NDEATH is the MQTT will of every session: QoS 1, not retained, with the bdSeq
//     metric (Int64) of that session (§6.4.20). bdSeq is kept in the state directory
//     and goes up by one (wrapping 255 → 0) on every new MQTT session (§5.1.2). On a
//     clean shutdown the edge node publishes its NDEATH before disconnecting (§6.4.20,
//     MQTT 3.1.1).
//   - NBIRTH (QoS 0, not retained, §6.4.18): seq 0, a timestamp, bdSeq equal to the
//     will's, "Node Control/Rebirth" false (§5.13), and node metrics: the gateway's epoch
//     and version and its instances by status.
//   - DBIRTH per instance that is not critical (§6.4.19): status, round trip, last seen,
//     detect budget, the decoded CiA 402 state, fault, error code; its identity, endpoint
//     and meta as metrics whose property sets hold the fields.
//   - DDATA by exception: only the metrics that changed (§6.4.21); NDATA likewise for the
//     node's counts.
//   - DDEATH when an instance goes critical or is deregistered (§6.4.22); a DBIRTH again
//     when it is back.
//   - seq counts every message of the node but NDEATH, 0–255 wrapping (§6.4.1 "seq").
//   - A Rebirth NCMD ("Node Control/Rebirth" true, §5.13) is answered with NBIRTH and
//     every DBIRTH, with the same bdSeq.
//   - With a primary host id, no birth is published before that host's STATE (JSON,
//     retained, spBv1.0/STATE/<host id>, §5.3) says online; an offline STATE at least as
//     new as the last online one ends the session: NDEATH, disconnect, a new session
//     (bdSeq + 1) that waits for online again (§5.12).
//
// Sparkplug births are not retained, so a late-joining host must ask for a rebirth;
// rollcall's retained catalog (docs/contract.md) is there beside it for any consumer
// that wants the live modules without one.
package edgenode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/protocols/mqtt"
	"github.com/rollcall-edge/rollcall/protocols/sparkplug"
	"github.com/rollcall-edge/rollcall/registry"
)

// BdSeqFile is the file in the state directory that keeps the last bdSeq used.
const BdSeqFile = "sparkplug.bdseq"

// Metric names of the node (NBIRTH, NDATA) and of each device (DBIRTH, DDATA).
const (
	MetricBdSeq          = "bdSeq"
	MetricRebirth        = "Node Control/Rebirth"
	MetricEpoch          = "Gateway/Epoch"
	MetricVersion        = "Gateway/Version"
	MetricCountPrefix    = "Instances/" // + passing, warning, critical, maintenance
	MetricStatus         = "Status"
	MetricRTT            = "RTT ms"
	MetricLastSeen       = "Last Seen"
	MetricDetectBudget   = "Detect Budget ms"
	MetricCiA402         = "CiA402 State"
	MetricFault          = "Fault"
	MetricErrorCode      = "Error Code"
	MetricIdentity       = "Identity"
	MetricEndpoint       = "Endpoint"
	MetricMeta           = "Meta"
	maxEventQueue        = 4096
	stateWaitLogInterval = time.Minute
)

// Options configures an EdgeNode.
type Options struct {
	// Group and Node are the Sparkplug group id and edge node id (sparkplug.ValidID).
	Group, Node string
	// PrimaryHost, if not empty, is the primary host application's id: births wait for
	// its STATE to say online.
	PrimaryHost string
	// Brokers are the MQTT brokers, tried in order (a cluster's nodes); required.
	Brokers []string
	// ClientID of the edge node's own MQTT connection; Username, Password, TLSConfig as
	// the gateway's.
	ClientID           string
	Username, Password string
	TLSConfig          *tls.Config
	// StateDir keeps BdSeqFile.
	StateDir string
	// Snapshot returns the live catalog (registry.Registry.Snapshot), for births.
	Snapshot func() []contract.Record
	// Epoch and Version are the gateway's, published in the NBIRTH.
	Epoch   int64
	Version string
	// Logger; nil: slog.Default().
	Logger *slog.Logger
	// Timing of the MQTT sessions (zero: defaults).
	Timing mqtt.Timing
}

// EdgeNode is the Sparkplug B edge node of one gateway. Create it with New, feed it the
// registry's events (Event) and run it (Run).
type EdgeNode struct {
	o   Options
	log *slog.Logger

	events chan registry.Event
	lost   chan struct{} // 1-buffered: resync needed (event queue overflowed)

	mu    sync.Mutex
	bdSeq int64 // of the current (or last) session
	stats Stats
}

// Stats are counters of an EdgeNode.
type Stats struct {
	Sessions, Births, Rebirths uint64
}

// New checks o and loads the last bdSeq from the state directory. Errors name the
// option, or the bdSeq file when it is unreadable.
func New(o Options) (*EdgeNode, error) {
	for name, id := range map[string]string{"group_id": o.Group, "edge_node_id": o.Node} {
		if err := sparkplug.ValidID(id); err != nil {
			return nil, fmt.Errorf("sparkplug.%s: %w", name, err)
		}
	}
	if o.PrimaryHost != "" {
		if err := sparkplug.ValidID(o.PrimaryHost); err != nil {
			return nil, fmt.Errorf("sparkplug.primary_host_id: %w", err)
		}
	}
	if len(o.Brokers) == 0 || o.Snapshot == nil {
		return nil, errors.New("edgenode: no brokers or no snapshot")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	n := &EdgeNode{o: o, log: o.Logger, events: make(chan registry.Event, maxEventQueue), lost: make(chan struct{}, 1), bdSeq: -1}
	b, err := os.ReadFile(n.bdSeqPath())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("sparkplug: %w", err)
	default:
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || v < 0 || v > 255 {
			return nil, fmt.Errorf("sparkplug: %s: expected a bdSeq 0–255, got %q (remove the file to start again from 0)", n.bdSeqPath(), b)
		}
		n.bdSeq = v
	}
	return n, nil
}

func (n *EdgeNode) bdSeqPath() string { return filepath.Join(n.o.StateDir, BdSeqFile) }

// Event takes one registry event (registry.Options.Sink); it never blocks: when the
// queue is full, the next session state is rebuilt from a snapshot (a rebirth).
func (n *EdgeNode) Event(ev registry.Event) {
	select {
	case n.events <- ev:
	default:
		select {
		case n.lost <- struct{}{}:
		default:
		}
	}
}

// BdSeq returns the bdSeq of the current session (−1 before the first).
func (n *EdgeNode) BdSeq() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.bdSeq
}

// Stats returns the counters.
func (n *EdgeNode) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// nextBdSeq takes the next bdSeq (0 first, +1 wrapping 255 → 0) and persists it before
// the session's CONNECT carries it.
func (n *EdgeNode) nextBdSeq() (int64, error) {
	n.mu.Lock()
	v := (n.bdSeq + 1) % 256
	n.bdSeq = v
	n.stats.Sessions++
	n.mu.Unlock()
	tmp := n.bdSeqPath() + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(v, 10)+"\n"), 0o600); err != nil {
		return v, err
	}
	return v, os.Rename(tmp, n.bdSeqPath())
}

// Run runs MQTT sessions until ctx ends: each session connects with a new bdSeq and its
// NDEATH as will, subscribes NCMD (and STATE), births when it may, follows the catalog
// by exception, and ends on a lost connection, an offline primary host, or ctx (then
// with an NDEATH before DISCONNECT). Between failed sessions it waits with back-off.
func (n *EdgeNode) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		ok := n.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if ok {
			backoff = 100 * time.Millisecond
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

// inbound is a message the session goroutine must handle.
type inbound struct {
	topic   string
	payload []byte
}

// session runs one MQTT session; it reports whether it got connected.
func (n *EdgeNode) session(ctx context.Context) bool {
	bd, err := n.nextBdSeq()
	if err != nil {
		n.log.Error("sparkplug: bdSeq not saved; a restart may reuse it", "file", n.bdSeqPath(), "err", err)
	}
	now := ms(time.Now())
	death, err := sparkplug.Encode(&sparkplug.Payload{Timestamp: &now, Metrics: []*sparkplug.Payload_Metric{sparkplug.Int64Metric(MetricBdSeq, bd)}})
	if err != nil {
		n.log.Error("sparkplug: cannot encode NDEATH", "err", err)
		return false
	}
	nodeDeath := sparkplug.Topic(sparkplug.NDEATH, n.o.Group, n.o.Node, "")
	in := make(chan inbound, 64)
	lost := make(chan error, 1)
	co := mqtt.Session{Brokers: n.o.Brokers, ClientID: n.o.ClientID, CleanSession: true, OrderMatters: true,
		Username: n.o.Username, Password: n.o.Password, TLSConfig: n.o.TLSConfig, Timing: n.o.Timing}.Options().
		SetBinaryWill(nodeDeath, death, 1, false).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	c := paho.NewClient(co)
	tok := c.Connect()
	if !waitToken(ctx, tok) || tok.Error() != nil {
		n.log.Debug("sparkplug: connect failed", "err", tok.Error())
		c.Disconnect(0)
		return false
	}
	n.log.Info("sparkplug: session", "group", n.o.Group, "node", n.o.Node, "bdSeq", bd)
	deliver := func(_ paho.Client, m paho.Message) {
		select {
		case in <- inbound{m.Topic(), append([]byte(nil), m.Payload()...)}:
		default: // the session goroutine is far behind: a rebirth request may be lost
		}
	}
	subs := map[string]byte{sparkplug.Topic(sparkplug.NCMD, n.o.Group, n.o.Node, ""): 1}
	if n.o.PrimaryHost != "" {
		subs[sparkplug.StateTopic(n.o.PrimaryHost)] = 1
	}
	st := c.SubscribeMultiple(subs, deliver)
	if !waitToken(ctx, st) || st.Error() != nil {
		n.log.Warn("sparkplug: cannot subscribe to NCMD/STATE; a new session follows", "err", st.Error())
		c.Disconnect(0)
		return false
	}
	if refused, _ := mqtt.Refused(st); len(refused) > 0 {
		// Without NCMD no rebirth request is heard; without STATE the primary host is
		// never seen online (MQTT 3.1.1 §3.9.3: SUBACK 0x80, e.g. an ACL).
		n.log.Error("sparkplug: the broker refused subscriptions; a new session follows", "filters", refused)
		c.Disconnect(0)
		return false
	}
	s := &sessionState{n: n, c: c, bdSeq: bd, devices: map[string]*device{}}
	s.run(ctx, in, lost)
	if ctx.Err() != nil || s.offline {
		// An intentional disconnect: NDEATH first (§6.4.20, MQTT 3.1.1 DISCONNECT
		// suppresses the will).
		t := c.Publish(nodeDeath, 1, false, death)
		t.WaitTimeout(2 * time.Second)
		c.Disconnect(250)
	} else {
		c.Disconnect(0)
	}
	return true
}

func waitToken(ctx context.Context, tok paho.Token) bool {
	select {
	case <-tok.Done():
		return true
	case <-ctx.Done():
		return false
	case <-time.After(30 * time.Second):
		return false
	}
}

func ms(t time.Time) uint64 { return uint64(t.UnixMilli()) }

// device is what a session published of one instance.
type device struct {
	born    bool
	rev     int64          // revision of the record last taken
	metrics map[string]any // last value sent of each data metric
}

// sessionState is one session's Sparkplug state, owned by its goroutine.
type sessionState struct {
	n       *EdgeNode
	c       paho.Client
	bdSeq   int64
	seq     uint64 // seq of the next message
	born    bool   // NBIRTH published in this session
	offline bool   // ended by an offline primary host
	devices map[string]*device
	status  map[string]contract.Status // every live instance's status, for the node's counts
	counts  map[string]int64           // live instances by status, as last sent
	// Primary host: the timestamp of its last online STATE; online says births may go.
	hostTS int64
	online bool
}

func (s *sessionState) run(ctx context.Context, in <-chan inbound, lost <-chan error) {
	if s.n.o.PrimaryHost == "" {
		s.birth()
	} else {
		s.n.log.Info("sparkplug: waiting for the primary host's STATE online before births", "host", s.n.o.PrimaryHost)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-lost:
			s.n.log.Warn("sparkplug: connection lost; a new session follows", "err", err)
			return
		case m := <-in:
			if !s.inbound(m) {
				return
			}
		case <-s.n.lost:
			if s.born {
				s.birth() // events were dropped: start over from the catalog
			}
		case ev := <-s.n.events:
			if s.born {
				s.event(ev)
			}
		}
	}
}

// inbound handles an NCMD or STATE message; false ends the session.
func (s *sessionState) inbound(m inbound) bool {
	typ, _, _, _, ok := sparkplug.ParseTopic(m.topic)
	if ok && typ == sparkplug.NCMD {
		p, err := sparkplug.Decode(m.payload)
		if err != nil {
			s.n.log.Warn("sparkplug: undecodable NCMD ignored", "err", err)
			return true
		}
		for _, mt := range p.GetMetrics() {
			if mt.GetName() == MetricRebirth && mt.GetBooleanValue() {
				if !s.born {
					return true // births come when the primary host is online
				}
				s.n.log.Info("sparkplug: rebirth requested")
				s.n.mu.Lock()
				s.n.stats.Rebirths++
				s.n.mu.Unlock()
				s.birth()
				return true
			}
		}
		return true
	}
	if m.topic != sparkplug.StateTopic(s.n.o.PrimaryHost) {
		return true
	}
	state, err := sparkplug.ParseState(m.payload)
	if err != nil {
		s.n.log.Warn("sparkplug: malformed STATE ignored", "host", s.n.o.PrimaryHost, "err", err)
		return true
	}
	switch {
	case state.Online && state.Timestamp >= s.hostTS:
		s.hostTS = state.Timestamp
		if !s.online {
			s.online = true
			s.n.log.Info("sparkplug: primary host online; births", "host", s.n.o.PrimaryHost)
			s.birth()
		}
	case !state.Online && state.Timestamp >= s.hostTS && s.online:
		s.n.log.Info("sparkplug: primary host offline; NDEATH and a new session", "host", s.n.o.PrimaryHost)
		s.offline = true
		return false
	}
	return true
}

// publish sends one message with the next seq (every message but NDEATH, §6.4.1).
func (s *sessionState) publish(topic string, p *sparkplug.Payload) {
	seq := s.seq
	p.Seq = &seq
	s.seq = (s.seq + 1) % 256
	if p.Timestamp == nil {
		ts := ms(time.Now())
		p.Timestamp = &ts
	}
	// Every metric of a birth or data message carries a timestamp (§6.4.18–21).
	for _, m := range p.Metrics {
		if m.Timestamp == nil {
			m.Timestamp = p.Timestamp
		}
	}
	b, err := sparkplug.Encode(p)
	if err != nil {
		s.n.log.Error("sparkplug: cannot encode", "topic", topic, "err", err)
		return
	}
	s.c.Publish(topic, 0, false, b) // QoS 0, not retained (§6.4.18–22)
}

// birth publishes NBIRTH (seq 0) and a DBIRTH of every instance that is not critical.
func (s *sessionState) birth() {
	s.seq = 0
	s.born = true
	s.n.mu.Lock()
	s.n.stats.Births++
	s.n.mu.Unlock()
	recs := s.n.o.Snapshot()
	s.status = map[string]contract.Status{}
	for _, r := range recs {
		s.status[r.ID] = r.Status
	}
	s.counts = s.countByStatus()
	metrics := []*sparkplug.Payload_Metric{
		sparkplug.Int64Metric(MetricBdSeq, s.bdSeq),
		sparkplug.BoolMetric(MetricRebirth, false),
		sparkplug.Int64Metric(MetricEpoch, s.n.o.Epoch),
		sparkplug.StringMetric(MetricVersion, s.n.o.Version),
	}
	metrics = append(metrics, countMetrics(s.counts)...)
	s.publish(sparkplug.Topic(sparkplug.NBIRTH, s.n.o.Group, s.n.o.Node, ""), &sparkplug.Payload{Metrics: metrics})
	s.devices = map[string]*device{}
	for i := range recs {
		if recs[i].Status != contract.Critical {
			s.dbirth(&recs[i])
		}
	}
}

// dbirth publishes the DBIRTH of rec.
func (s *sessionState) dbirth(rec *contract.Record) {
	vals := deviceValues(rec)
	metrics := make([]*sparkplug.Payload_Metric, 0, len(vals)+3)
	for _, name := range slices.Sorted(maps.Keys(vals)) {
		metrics = append(metrics, metricOf(name, vals[name]))
	}
	metrics = append(metrics, infoMetrics(rec)...)
	s.publish(sparkplug.Topic(sparkplug.DBIRTH, s.n.o.Group, s.n.o.Node, rec.ID), &sparkplug.Payload{Metrics: metrics})
	s.devices[rec.ID] = &device{born: true, rev: rec.Revision, metrics: vals}
}

// event follows one registry event by exception.
func (s *sessionState) event(ev registry.Event) {
	rec := &ev.Record
	d := s.devices[rec.ID]
	if d != nil && ev.Kind == registry.Upsert && rec.Revision < d.rev {
		return // older than what the last birth took from the catalog
	}
	prev, had := s.status[rec.ID]
	if ev.Kind == registry.Upsert {
		s.status[rec.ID] = rec.Status
	} else {
		delete(s.status, rec.ID)
	}
	cur, has := s.status[rec.ID]
	if d != nil {
		d.rev = rec.Revision
	}
	alive := ev.Kind == registry.Upsert && rec.Status != contract.Critical
	switch {
	case alive && (d == nil || !d.born):
		s.dbirth(rec)
	case !alive && d != nil && d.born:
		s.publish(sparkplug.Topic(sparkplug.DDEATH, s.n.o.Group, s.n.o.Node, rec.ID), &sparkplug.Payload{})
		d.born = false
	case alive:
		vals := deviceValues(rec)
		var changed []*sparkplug.Payload_Metric
		for _, name := range slices.Sorted(maps.Keys(vals)) {
			if old, ok := d.metrics[name]; !ok || old != vals[name] {
				changed = append(changed, metricOf(name, vals[name]))
			}
		}
		d.metrics = vals
		if len(changed) > 0 {
			s.publish(sparkplug.Topic(sparkplug.DDATA, s.n.o.Group, s.n.o.Node, rec.ID), &sparkplug.Payload{Metrics: changed})
		}
	}
	if ev.Kind == registry.Deregister {
		delete(s.devices, rec.ID)
	}
	// The node's counts, by exception (NDATA): only the status the instance left and
	// the one it entered change.
	if had == has && prev == cur {
		return
	}
	var changed []*sparkplug.Payload_Metric
	for _, st := range []struct {
		status contract.Status
		in     bool
		delta  int64
	}{{prev, had, -1}, {cur, has, +1}} {
		if _, counted := s.counts[string(st.status)]; st.in && counted {
			s.counts[string(st.status)] += st.delta
			changed = append(changed, sparkplug.Int64Metric(MetricCountPrefix+string(st.status), s.counts[string(st.status)]))
		}
	}
	if len(changed) > 0 {
		s.publish(sparkplug.Topic(sparkplug.NDATA, s.n.o.Group, s.n.o.Node, ""), &sparkplug.Payload{Metrics: changed})
	}
}

// countedStatuses are the statuses counted in the node's metrics (Instances/<status>).
func countedStatuses() []contract.Status {
	return []contract.Status{contract.Passing, contract.Warning, contract.Critical, contract.Maintenance}
}

// countByStatus counts the live instances by status (at a birth; events then move the
// counts one instance at a time).
func (s *sessionState) countByStatus() map[string]int64 {
	out := map[string]int64{}
	for _, st := range countedStatuses() {
		out[string(st)] = 0
	}
	for _, st := range s.status {
		if _, counted := out[string(st)]; counted {
			out[string(st)]++
		}
	}
	return out
}

func countMetrics(counts map[string]int64) []*sparkplug.Payload_Metric {
	var out []*sparkplug.Payload_Metric
	for _, s := range countedStatuses() {
		out = append(out, sparkplug.Int64Metric(MetricCountPrefix+string(s), counts[string(s)]))
	}
	return out
}

// deviceValues are the data metrics of an instance: those DDATA sends when they change.
func deviceValues(rec *contract.Record) map[string]any {
	v := map[string]any{
		MetricStatus:       string(rec.Status),
		MetricRTT:          rec.Check.RTTMS,
		MetricDetectBudget: rec.Check.DetectBudgetMS,
	}
	if !rec.LastSeen.IsZero() {
		v[MetricLastSeen] = rec.LastSeen.UnixMilli()
	}
	if s, ok := rec.State["cia402"].(string); ok {
		v[MetricCiA402] = s
	}
	if f, ok := rec.State["fault"].(bool); ok {
		v[MetricFault] = f
	}
	switch c := rec.State["error_code"].(type) {
	case float64:
		v[MetricErrorCode] = int64(c)
	case int:
		v[MetricErrorCode] = int64(c)
	case int64:
		v[MetricErrorCode] = c
	case uint16:
		v[MetricErrorCode] = int64(c)
	}
	return v
}

// metricOf is the Sparkplug metric of one device value (its datatype by name).
func metricOf(name string, v any) *sparkplug.Payload_Metric {
	switch x := v.(type) {
	case string:
		return sparkplug.StringMetric(name, x)
	case bool:
		return sparkplug.BoolMetric(name, x)
	case float64:
		return sparkplug.DoubleMetric(name, x)
	case int64:
		if name == MetricLastSeen {
			return sparkplug.DateTimeMetric(name, time.UnixMilli(x))
		}
		return sparkplug.Int64Metric(name, x)
	}
	return sparkplug.StringMetric(name, fmt.Sprint(v))
}

// infoMetrics are the DBIRTH's descriptive metrics: the identity, endpoint and meta of
// the instance, each a String metric (a one-line summary) whose property set holds the
// fields.
func infoMetrics(rec *contract.Record) []*sparkplug.Payload_Metric {
	id := rec.Identity
	idProps := map[string]string{"id": rec.ID, "service": rec.Service, "profile": rec.Profile, "vendor": id.Vendor,
		"product_code": id.ProductCode, "revision": id.Revision, "model": id.Model, "serial": id.Serial}
	ep := rec.Endpoint
	epProps := map[string]string{"transport": ep.Transport, "bus": ep.Bus, "device": ep.Device, "host": ep.Host, "url": ep.URL}
	if ep.Baud > 0 {
		epProps["baud"] = strconv.Itoa(ep.Baud)
	}
	if ep.Port > 0 {
		epProps["port"] = strconv.Itoa(ep.Port)
	}
	if strings.HasPrefix(ep.Transport, "modbus-") {
		epProps["unit"] = strconv.Itoa(ep.Unit)
	}
	for _, m := range []map[string]string{idProps, epProps} {
		maps.DeleteFunc(m, func(_, v string) bool { return v == "" })
	}
	var metaText []string
	for _, k := range slices.Sorted(maps.Keys(rec.Meta)) {
		metaText = append(metaText, k+"="+rec.Meta[k])
	}
	return []*sparkplug.Payload_Metric{
		sparkplug.WithProperties(sparkplug.StringMetric(MetricIdentity, strings.TrimSpace(id.Vendor+" "+id.Model+" "+id.Serial)), idProps),
		sparkplug.WithProperties(sparkplug.StringMetric(MetricEndpoint, endpointText(ep)), epProps),
		sparkplug.WithProperties(sparkplug.StringMetric(MetricMeta, strings.Join(metaText, ",")), rec.Meta),
	}
}

func endpointText(ep contract.Endpoint) string {
	switch ep.Transport {
	case "modbus-rtu":
		return fmt.Sprintf("modbus-rtu %s unit %d", ep.Bus, ep.Unit)
	case "modbus-tcp":
		return fmt.Sprintf("modbus-tcp %s:%d unit %d", ep.Host, ep.Port, ep.Unit)
	case "http":
		return "http " + ep.URL
	}
	return fmt.Sprintf("%s %s:%d", ep.Transport, ep.Host, ep.Port)
}
