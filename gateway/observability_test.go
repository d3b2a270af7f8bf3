package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// httpClient has no keep-alive, so no idle connection outlives a test (goleak).
func httpClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := httpClient().Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// scrape returns the samples of a Prometheus text exposition: `name{labels}` → value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	code, body := httpGet(t, url)
	if code != 200 {
		t.Fatalf("GET %s: %d", url, code)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// twoDrivesConfig polls bus1 (units 1–4, the product's default reply timeout) every
// 50 ms.
const twoDrivesConfig = `
discovery:
  serial:
    - {name: bus1, device: $LINK, baud: 115200, units: "1-4", meta: {cell: "2"}}
health:
  poll_interval: 50ms
  failures_before_critical: 3
  successes_before_passing: 2
  deregister_critical_after: 1m
http: {listen: "127.0.0.1:0"}
`

// TestHTTPAPI checks the gateway's HTTP listener against a real run (firmware-sim, the
// embedded broker): health and readiness, the catalog in the contract's shape, the
// event stream, and the metrics of a drive going silent and coming back.
func TestHTTPAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	store := &logStore{}
	h.Log = slog.New(logRecorder{store: store})
	s := h.StartSim(1, 2)
	g := h.StartGateway("embedded", twoDrivesConfig)
	base := "http://" + g.HTTPAddr()
	rig.WaitCatalog(t, g, 15*time.Second, "2 passing drives", rig.Passing(2))

	if code, body := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz %d %q", code, body)
	}
	testutil.Eventually(t, 10*time.Second, "/readyz 200", func() bool { code, _ := httpGet(t, base+"/readyz"); return code == 200 })

	// /v1/catalog: the registry's records, every contract field, sorted by id.
	code, body := httpGet(t, base+"/v1/catalog")
	var raw []map[string]any
	if err := json.Unmarshal([]byte(body), &raw); code != 200 || err != nil || len(raw) != 2 {
		t.Fatalf("/v1/catalog: %d %v %s", code, err, body)
	}
	for _, r := range raw {
		for _, f := range contractFields {
			if _, ok := r[f]; !ok {
				t.Errorf("/v1/catalog record %v: field %q missing", r["id"], f)
			}
		}
	}
	var recs []contract.Record
	if err := json.Unmarshal([]byte(body), &recs); err != nil {
		t.Fatal(err)
	}
	snap := g.Registry().Snapshot()
	if recs[0].ID != "rollcall-firmware-sim-sim-0001" || recs[1].ID != "rollcall-firmware-sim-sim-0002" || len(snap) != 2 {
		t.Fatalf("catalog ids %s, %s", recs[0].ID, recs[1].ID)
	}
	for i := range recs { // all but the live counters equal the registry's record
		a, b := recs[i], snap[i]
		if !reflect.DeepEqual(a.Endpoint, b.Endpoint) || a.ID != b.ID || a.Status != b.Status || a.Revision > b.Revision ||
			!reflect.DeepEqual(a.Identity, b.Identity) || !reflect.DeepEqual(a.Meta, b.Meta) || a.Epoch != g.Epoch() {
			t.Errorf("catalog record %+v\nregistry %+v", a, b)
		}
	}
	if _, body := httpGet(t, base+"/v1/catalog/servo-drive"); strings.Count(body, `"schema"`) != 2 {
		t.Errorf("/v1/catalog/servo-drive: %s", body)
	}
	if _, body := httpGet(t, base+"/v1/catalog/io-module"); body != "[]\n" {
		t.Errorf("/v1/catalog/io-module: %q", body)
	}

	// The event stream: a snapshot, then the change.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/events", nil)
	resp, err := httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := readEvents(resp.Body)
	if ev := <-events; ev.name != "snapshot" || strings.Count(ev.data, `"schema"`) != 2 {
		t.Fatalf("first event %+v", ev)
	}

	m0 := scrape(t, base+"/metrics")
	victim := "rollcall-firmware-sim-sim-0002"
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for critical := false; !critical; {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("event stream ended")
			}
			var r contract.Record
			if ev.name == "upsert" && json.Unmarshal([]byte(ev.data), &r) == nil && r.ID == victim && r.Status == contract.Critical {
				critical = true
			}
		case <-deadline:
			t.Fatal("no critical upsert on /v1/events")
		}
	}
	m1 := scrape(t, base+"/metrics")
	checkMetric := func(m map[string]float64, series string, ok func(float64) bool, want string) {
		t.Helper()
		v, found := m[series]
		if !found {
			t.Errorf("metric %s missing", series)
		} else if !ok(v) {
			t.Errorf("metric %s = %v, want %s", series, v, want)
		}
	}
	eq := func(x float64) func(float64) bool { return func(v float64) bool { return v == x } }
	// On a machine starved of CPU the simulator may also leave the bystander unanswered
	// for three polls in a row: the product rightly takes it critical for a moment, and
	// logs and counts that transition like any other. So the transition counters are
	// checked against the gateway's own log of transitions (one "instance status" line
	// each), and the instance gauges against its registry, not against fixed numbers.
	transitionsCounted := func(from, to string) func() bool {
		return func() bool {
			logged := store.transitions(to)
			v := scrape(t, base+"/metrics")[fmt.Sprintf(`rollcall_status_transitions_total{from=%q,to=%q}`, from, to)]
			return logged >= 1 && v == float64(logged)
		}
	}
	testutil.Eventually(t, 5*time.Second, "passing→critical counted once per logged transition", transitionsCounted("passing", "critical"))
	testutil.Eventually(t, 5*time.Second, "rollcall_instances equal to the registry's statuses", func() bool {
		m, snap := scrape(t, base+"/metrics"), g.Registry().Snapshot()
		n := map[contract.Status]float64{}
		for _, r := range snap {
			n[r.Status]++
		}
		return n[contract.Critical] >= 1 && m[`rollcall_instances{status="critical"}`] == n[contract.Critical] &&
			m[`rollcall_instances{status="passing"}`] == n[contract.Passing] && m[`rollcall_instances{status="warning"}`] == n[contract.Warning]
	})
	checkMetric(m1, `rollcall_registrations_total`, eq(2), "2")
	checkMetric(m1, `rollcall_polls_total{master="bus1",outcome="timeout",unit="2"}`, func(v float64) bool { return v >= 3 }, "≥ 3")
	// The bystander's good polls are counted (on a starved machine its polls right
	// around the fault may all have timed out: wait for one that answered).
	testutil.Eventually(t, 10*time.Second, `rollcall_polls_total{master="bus1",outcome="ok",unit="1"} > 0`, func() bool {
		return scrape(t, base+"/metrics")[`rollcall_polls_total{master="bus1",outcome="ok",unit="1"}`] > 0
	})
	checkMetric(m1, `rollcall_poll_round_trip_seconds_count{master="bus1"}`, func(v float64) bool { return v > 0 }, "> 0")
	checkMetric(m1, `rollcall_modbus_timeouts_total{master="bus1"}`,
		func(v float64) bool { return v >= m0[`rollcall_modbus_timeouts_total{master="bus1"}`]+3 }, "3 more than before")
	checkMetric(m1, `rollcall_modbus_crc_errors_total{master="bus1"}`, eq(0), "0")
	checkMetric(m1, `rollcall_master_utilisation_ratio{master="bus1"}`, func(v float64) bool { return v > 0 && v <= 1 }, "in (0, 1]")
	checkMetric(m1, `rollcall_master_busy_seconds_total{master="bus1"}`, func(v float64) bool { return v > 0 }, "> 0")
	checkMetric(m1, `rollcall_sweep_absent_units{master="bus1"}`, eq(2), "2 (units 3, 4)")
	checkMetric(m1, `rollcall_mqtt_connected`, eq(1), "1")
	checkMetric(m1, `rollcall_mqtt_publications_total`, func(v float64) bool { return v >= 4 }, "≥ 4")
	checkMetric(m1, `rollcall_mqtt_publication_failures_total`, eq(0), "0")
	checkMetric(m1, `rollcall_mqtt_publish_latency_seconds_count`, func(v float64) bool { return v >= 3 }, "≥ 3 (registrations and the critical record)")
	checkMetric(m1, `rollcall_http_event_clients`, eq(1), "1")
	checkMetric(m1, `rollcall_gateway_epoch`, eq(float64(g.Epoch())), "the epoch")
	if _, ok := m1[`rollcall_modbus_crc_errors_total{master="bus1"}`]; !ok {
		t.Error("no CRC counter for the bus")
	}

	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultNone}); err != nil {
		t.Fatal(err)
	}
	rig.WaitCatalog(t, g, 10*time.Second, "drive 2 passing again", rig.Passing(2))
	// Both passing: every critical spell logged has ended with one counted return.
	testutil.Eventually(t, 5*time.Second, "critical→passing counted once per logged critical spell", func() bool {
		return scrape(t, base+"/metrics")[`rollcall_status_transitions_total{from="critical",to="passing"}`] == float64(store.transitions("critical"))
	})
}

type sse struct{ name, data string }

// readEvents parses a server-sent event stream into a channel, closed at its end.
func readEvents(r io.Reader) <-chan sse {
	ch := make(chan sse, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					ch <- ev
				}
				ev = sse{}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data += line[6:]
			}
		}
	}()
	return ch
}

// TestReadyzBrokerDown: /readyz says 503, with the reason, while the publisher cannot
// reach its broker; /healthz stays 200.
func TestReadyzBrokerDown(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	g := h.StartGateway("tcp://127.0.0.1:1", `
discovery: {mdns: {enabled: false}}
http: {listen: "127.0.0.1:0"}
`)
	base := "http://" + g.HTTPAddr()
	if code, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	code, body := httpGet(t, base+"/readyz")
	if code != 503 || !strings.Contains(body, "not connected") {
		t.Errorf("/readyz with the broker down: %d %q", code, body)
	}
	if m := scrape(t, base+"/metrics"); m["rollcall_mqtt_connected"] != 0 {
		t.Errorf("rollcall_mqtt_connected %v", m["rollcall_mqtt_connected"])
	}
}

// logRecorder is a slog.Handler keeping every record at Info and above (the default
// level of `rollcall gateway`), with its attributes flattened.
type logRecorder struct {
	store *logStore
	attrs []slog.Attr
}

type logStore struct {
	mu   sync.Mutex
	recs []logLine
}

type logLine struct {
	msg   string
	level slog.Level
	attrs map[string]string
}

func (l logRecorder) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelInfo }
func (l logRecorder) WithGroup(string) slog.Handler                 { return l }
func (l logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return logRecorder{store: l.store, attrs: append(append([]slog.Attr(nil), l.attrs...), as...)}
}
func (l logRecorder) Handle(_ context.Context, r slog.Record) error {
	line := logLine{msg: r.Message, level: r.Level, attrs: map[string]string{}}
	for _, a := range l.attrs {
		line.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { line.attrs[a.Key] = a.Value.String(); return true })
	l.store.mu.Lock()
	l.store.recs = append(l.store.recs, line)
	l.store.mu.Unlock()
	return nil
}

// gatewayLines returns the gateway's log lines from index from on.
func (s *logStore) gatewayLines(from int) []logLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logLine
	for _, l := range s.recs[min(from, len(s.recs)):] {
		if l.attrs["component"] == "gateway" {
			out = append(out, l)
		}
	}
	return out
}

// transitions returns how many "instance status" lines of the gateway announced the
// status to.
func (s *logStore) transitions(to string) int {
	n := 0
	for _, l := range s.gatewayLines(0) {
		if l.msg == "instance status" && l.attrs["status"] == to {
			n++
		}
	}
	return n
}

func (s *logStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs)
}

// TestLogsAtDefaultLevel is issue 7 item 4: at the default level (info) polling logs
// nothing, and each status transition logs exactly one line, "instance status", with
// stable keys.
func TestLogsAtDefaultLevel(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	store := &logStore{}
	h.Log = slog.New(logRecorder{store: store})
	s := h.StartSim(1, 2)
	g := h.StartGateway("embedded", twoDrivesConfig)
	metricsURL := "http://" + g.HTTPAddr() + "/metrics"
	rig.WaitCatalog(t, g, 15*time.Second, "2 passing drives", rig.Passing(2))
	polls := func() float64 {
		m := scrape(t, metricsURL)
		return m[`rollcall_polls_total{master="bus1",outcome="ok",unit="1"}`] + m[`rollcall_polls_total{master="bus1",outcome="ok",unit="2"}`]
	}
	// The start-up lines (MQTT connection, reconciliation of the retained subtree, each
	// drive's registration, logged just after its first record) may come after the drives
	// are passing: wait for all, then measure.
	testutil.Eventually(t, 10*time.Second, "the start-up lines (MQTT connected, read-back done, 2 drives registered)", func() bool {
		connected, readBack, registered := false, false, 0
		for _, l := range store.gatewayLines(0) {
			connected = connected || strings.HasPrefix(l.msg, "mqtt: connected")
			readBack = readBack || strings.HasPrefix(l.msg, "reconciled the retained records")
			if l.msg == "device registered" {
				registered++
			}
		}
		return connected && readBack && registered >= 2
	})
	// Polling logs nothing at info level. The only lines allowed while the drives are
	// polled are status transitions: on a machine starved of CPU the simulator may leave
	// a drive unanswered three times in a row, and the product rightly logs that drive's
	// critical status (and its return) — one line per transition, never poll chatter.
	mark, p0 := store.len(), polls()
	testutil.Eventually(t, 10*time.Second, "100 more polls", func() bool { return polls() >= p0+100 })
	for _, l := range store.gatewayLines(mark) {
		if l.msg != "instance status" {
			t.Errorf("%v polls logged a line other than a status transition at info level: %+v", polls()-p0, l)
		}
	}

	// Silent, then back: one line per transition of the victim, critical then passing.
	mark = store.len()
	victim := "rollcall-firmware-sim-sim-0002"
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	rig.WaitCatalog(t, g, 10*time.Second, "critical", rig.StatusIs(victim, contract.Critical))
	p1 := polls()
	testutil.Eventually(t, 10*time.Second, "50 more polls while critical", func() bool { return polls() >= p1+50 })
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultNone}); err != nil {
		t.Fatal(err)
	}
	rig.WaitCatalog(t, g, 10*time.Second, "passing again", rig.Passing(2))
	victimLines := func() []logLine {
		var out []logLine
		for _, l := range store.gatewayLines(mark) {
			if l.attrs["instance"] == victim {
				out = append(out, l)
			}
		}
		return out
	}
	testutil.Eventually(t, 5*time.Second, "the passing line", func() bool {
		v := victimLines()
		return len(v) >= 2 && v[len(v)-1].attrs["status"] == "passing"
	})
	// Nothing more may follow: 20 more polls, then look again.
	p2 := polls()
	testutil.Eventually(t, 10*time.Second, "20 more polls", func() bool { return polls() >= p2+20 })
	// One line per transition: critical first, passing last, each a change from the line
	// before. On a starved machine the drive may pass through warning on its way back
	// (replies cut short by the stalled simulator count against its link quality), or
	// go critical and back again: more transitions, still one line each.
	lines := victimLines()
	if len(lines) < 2 || lines[0].attrs["status"] != "critical" || lines[len(lines)-1].attrs["status"] != "passing" {
		t.Fatalf("victim's lines for critical-and-back: %d, want one per transition, critical first and passing last: %+v", len(lines), lines)
	}
	if len(lines) > 2 {
		t.Logf("the victim made %d transitions on its way (CPU starvation): %+v", len(lines), lines)
	}
	for i, l := range lines {
		if l.msg != "instance status" || l.level != slog.LevelInfo || l.attrs["service"] != "servo-drive" ||
			l.attrs["gateway"] != "it-gw" || l.attrs["revision"] == "" || (i > 0 && l.attrs["status"] == lines[i-1].attrs["status"]) {
			t.Errorf("line %d: %+v; want instance status, a change from the line before, with keys gateway, instance, service, status, revision", i, l)
		}
	}
	for _, l := range store.gatewayLines(mark) {
		if l.msg != "instance status" {
			t.Errorf("a line other than a status transition at info level: %+v", l)
		}
	}
}

// TestBusDown: a configured serial bus whose device is missing makes /readyz answer 503
// naming the bus, and rollcall_bus_up 0; once the device appears the bus opens (the
// master retries), /readyz is 200 and rollcall_bus_up 1.
func TestBusDown(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	g := h.StartGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1"}]
http: {listen: "127.0.0.1:0"}
`)
	base := "http://" + g.HTTPAddr()
	testutil.EventuallyValue(t, 10*time.Second, "/readyz 503 naming bus1", func() (string, bool) {
		code, body := httpGet(t, base+"/readyz")
		return body, code == 503 && strings.Contains(body, "bus bus1")
	})
	if v, ok := scrape(t, base+"/metrics")[`rollcall_bus_up{master="bus1"}`]; !ok || v != 0 {
		t.Errorf("rollcall_bus_up of the missing bus = %v (present %v), want 0", v, ok)
	}
	h.StartSim(1) // the device appears at $LINK
	testutil.EventuallyValue(t, 30*time.Second, "/readyz 200 once the bus opened", func() (string, bool) {
		code, body := httpGet(t, base+"/readyz")
		return body, code == 200
	})
	if v := scrape(t, base+"/metrics")[`rollcall_bus_up{master="bus1"}`]; v != 1 {
		t.Errorf("rollcall_bus_up of the open bus = %v, want 1", v)
	}
}
