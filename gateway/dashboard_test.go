package gateway_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// row is what the dashboard shows of one instance.
type row struct {
	ID     string `json:"id"`
	Status string `json:"status"` // the status text as displayed
	Attr   string `json:"attr"`   // data-status of the row
	State  string `json:"state"`
	RTT    string `json:"rtt"`
	Seen   string `json:"seen"`
}

// rowsJS reads the dashboard's table.
const rowsJS = `[...document.querySelectorAll("#rows tr[data-id]")].map(tr => ({
  id: tr.dataset.id, attr: tr.dataset.status,
  status: tr.querySelector(".status").textContent,
  state: tr.cells[3].textContent, seen: tr.cells[5].textContent, rtt: tr.cells[6].textContent}))`

// TestDashboard is issue 7's dashboard acceptance test: firmware-sim with four drives,
// the gateway with its HTTP listener, and the dashboard in headless Chromium. The page
// shows the drives; a drive made silent turns critical on screen, within a second of
// the registry, without a reload; the meta filter works; a screenshot is saved as
// testoutput/dashboard.png.
func TestDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	br := startBrowser(t)
	h := rig.New(t)
	s := h.StartSim(1, 2, 5, 9)
	g := h.StartGateway("embedded", `
discovery:
  serial:
    - name: bus1
      device: $LINK
      baud: 115200
      units: "1-16"
      meta: {cell: "2"}
      devices:
        - {unit: 1, meta: {axis: "1"}}
        - {unit: 2, meta: {axis: "2"}}
        - {unit: 5, meta: {axis: "5"}}
        - {unit: 9, meta: {axis: "9"}}
health:
  poll_interval: 50ms
  failures_before_critical: 3
  successes_before_passing: 2
  deregister_critical_after: 1m
http: {listen: "127.0.0.1:0"}
`)
	if g.HTTPAddr() == "" || strings.HasSuffix(g.HTTPAddr(), ":0") {
		t.Fatalf("HTTPAddr %q", g.HTTPAddr())
	}
	want := []string{"rollcall-firmware-sim-sim-0001", "rollcall-firmware-sim-sim-0002",
		"rollcall-firmware-sim-sim-0005", "rollcall-firmware-sim-sim-0009"}
	rig.WaitCatalog(t, g, 15*time.Second, "4 passing drives", rig.Passing(4))

	br.navigate("http://" + g.HTTPAddr() + "/")
	rows := waitRows(t, br, 10*time.Second, "the four drives, passing", func(rows []row) bool {
		if len(rows) != 4 {
			return false
		}
		for i, r := range rows {
			if r.ID != want[i] || r.Attr != "passing" || !strings.Contains(r.Status, "passing") {
				return false
			}
		}
		return true
	})
	for _, r := range rows {
		if r.State != "operation enabled" || !strings.HasSuffix(r.RTT, " ms") || !strings.HasSuffix(r.Seen, "ago") {
			t.Errorf("row %+v: want state, round trip and last seen", r)
		}
	}
	var conn string
	if err := br.eval(`document.getElementById("connection").textContent`, &conn); err != nil || conn != "Live" {
		t.Errorf("connection indicator %q (%v)", conn, err)
	}
	// "Live" came only with the catalog on screen, never over an empty table.
	var firstLive string
	if err := br.eval(`document.body.dataset.firstLiveRows`, &firstLive); err != nil || firstLive != "4" {
		t.Errorf("rows on screen when the page first said Live: %q (%v), want 4", firstLive, err)
	}

	// Drive 2 goes silent: its row turns critical by itself, and the others show
	// passing while it is. (A bystander that a CPU-starved simulator left unanswered for
	// three polls goes critical on screen too, as it does in the registry, and back; the
	// screen must follow the registry, so the page is checked to show the victim
	// critical and the bystanders passing together.)
	victim := want[1]
	silentAt := time.Now()
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	var registryAt time.Time // when the registry had it critical (polled alongside the page)
	waitRows(t, br, 10*time.Second, victim+" critical on screen", func(rows []row) bool {
		if rec, ok := g.Registry().Get(victim); ok && rec.Status == contract.Critical && registryAt.IsZero() {
			registryAt = time.Now()
		}
		for _, r := range rows {
			if r.ID == victim && r.Attr == "critical" && strings.Contains(r.Status, "critical") {
				return true
			}
		}
		return false
	})
	onScreen := time.Now()
	if registryAt.IsZero() {
		registryAt = onScreen
	}
	t.Logf("silent → critical on screen: %v (registry → screen ≤ %v)", onScreen.Sub(silentAt), onScreen.Sub(registryAt))
	if lag := onScreen.Sub(registryAt); lag > time.Second {
		t.Errorf("the page showed critical %v after the registry; want within a second", lag)
	}
	if rec, ok := g.Registry().Get(victim); ok {
		if budget := rig.DetectBudget(rec); registryAt.Sub(silentAt) > rig.DetectFactor*budget {
			t.Errorf("silent → critical in the registry took %v, more than %d × the published detect budget %v",
				registryAt.Sub(silentAt), rig.DetectFactor, budget)
		}
	}
	waitRows(t, br, 10*time.Second, "the bystanders passing on screen while "+victim+" is critical", func(rows []row) bool {
		if len(rows) != 4 {
			return false
		}
		for _, r := range rows {
			if (r.ID == victim) != (r.Attr == "critical") || (r.ID != victim && r.Attr != "passing") {
				return false
			}
		}
		return true
	})
	var announced string
	_ = br.eval(`document.getElementById("announcer").textContent`, &announced)
	if announced != victim+" is now critical" {
		t.Errorf("screen reader announcement %q", announced)
	}

	shot, err := filepath.Abs(filepath.Join("..", "testoutput", "dashboard.png"))
	if err != nil {
		t.Fatal(err)
	}
	br.screenshot(shot)
	t.Logf("screenshot: %s", shot)

	// Filters: meta axis=2 shows the victim only; service filter keeps the drives.
	if err := br.eval(`(() => { const i = document.getElementById("filter-meta"); i.value = "axis=2";
		i.dispatchEvent(new Event("input")); })()`, nil); err != nil {
		t.Fatal(err)
	}
	waitRows(t, br, 5*time.Second, "meta filter axis=2", func(rows []row) bool {
		return len(rows) == 1 && rows[0].ID == victim
	})
	if err := br.eval(`(() => { const i = document.getElementById("filter-meta"); i.value = "cell=2 axis=9";
		i.dispatchEvent(new Event("input")); const s = document.getElementById("filter-service");
		s.value = "servo-drive"; s.dispatchEvent(new Event("change")); })()`, nil); err != nil {
		t.Fatal(err)
	}
	waitRows(t, br, 5*time.Second, "filters service=servo-drive, cell=2 axis=9", func(rows []row) bool {
		return len(rows) == 1 && rows[0].ID == want[3]
	})
	var search string
	_ = br.eval(`location.search`, &search)
	if search != "?service=servo-drive&meta=cell%3D2+axis%3D9" {
		t.Errorf("filters not kept in the address: %q", search)
	}

	// Back: passing again, on screen, with the filters kept.
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultNone}); err != nil {
		t.Fatal(err)
	}
	br.navigate("http://" + g.HTTPAddr() + "/?meta=axis%3D2")
	waitRows(t, br, 10*time.Second, victim+" passing again (filtered view)", func(rows []row) bool {
		return len(rows) == 1 && rows[0].ID == victim && rows[0].Attr == "passing"
	})
}

// waitRows polls the dashboard's table until cond holds, failing at the deadline with
// the rows seen last (or the evaluation's error).
func waitRows(t *testing.T, br *browser, deadline time.Duration, what string, cond func([]row) bool) []row {
	t.Helper()
	type seen struct {
		Rows []row
		Err  error
	}
	return testutil.EventuallyValue(t, deadline, what, func() (seen, bool) {
		var rows []row
		err := br.eval(rowsJS, &rows)
		return seen{rows, err}, err == nil && cond(rows)
	}).Rows
}
