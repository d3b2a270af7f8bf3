package gateway_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp/kb"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/gateway/httpapi"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// screensDir is where TestDashboardViews saves its screenshots: the test's own temporary
// directory, or ROLLCALL_SCREENS when set (docs/screenshots was made with
// ROLLCALL_SCREENS=$PWD/docs/screenshots from the module root).
func screensDir(t *testing.T) string {
	if d := os.Getenv("ROLLCALL_SCREENS"); d != "" {
		return d
	}
	return t.TempDir()
}

// tableView is what the dashboard's catalog table shows: its row groups (one, without
// a heading, when not grouped), the column it is sorted by, and the page's query.
type tableView struct {
	Groups []struct {
		Group  string   `json:"group"`
		Head   string   `json:"head"`
		IDs    []string `json:"ids"`
		SeenBy []string `json:"seenBy"`
	} `json:"groups"`
	Sort    []string `json:"sort"` // "<column key>:<aria-sort>" of each header that has aria-sort
	Search  string   `json:"search"`
	Summary string   `json:"summary"`
}

const tableViewJS = `(() => ({
  groups: [...document.querySelectorAll("#catalog tbody")].map(tb => ({
    group: tb.dataset.group || "",
    head: (tb.querySelector("th[scope=rowgroup]") || {}).textContent || "",
    ids: [...tb.querySelectorAll("tr[data-id]")].map(tr => tr.dataset.id),
    seenBy: [...tb.querySelectorAll("tr[data-id]")].map(tr => (tr.querySelector(".seen-by") || {}).textContent || "")})),
  sort: [...document.querySelectorAll("#catalog thead th[aria-sort]")].map(th => th.dataset.key + ":" + th.getAttribute("aria-sort")),
  search: location.search,
  summary: document.getElementById("summary").textContent}))()`

// detailView is what the dashboard's instance detail panel shows.
type detailView struct {
	Hidden   bool              `json:"hidden"`
	ID       string            `json:"id"`
	Loaded   string            `json:"loaded"` // "local": from /v1/instances/{id}; "plant": another gateway's
	Identity map[string]string `json:"identity"`
	Endpoint map[string]string `json:"endpoint"`
	Checks   []string          `json:"checks"` // "<check>|<status>"
	History  []struct {
		Status string `json:"status"`
		At     string `json:"at"`
		Reason string `json:"reason"`
	} `json:"history"`
	Points int    `json:"points"` // points of the sparkline's lines
	Label  string `json:"label"`  // the sparkline's aria-label
	Note   string `json:"note"`   // shown for another gateway's instance
	Focus  string `json:"focus"`  // id, or else href, of the focused element
}

const detailViewJS = `(() => { const d = document.getElementById("detail");
  const dl = (id) => Object.fromEntries([...document.querySelectorAll("#" + id + " dt")].map(dt => [dt.textContent, dt.nextElementSibling.textContent]));
  const svg = d.querySelector("#detail-sparkline svg");
  const note = document.getElementById("detail-note");
  const f = document.activeElement;
  return {hidden: d.hidden, id: d.dataset.id || "", loaded: d.dataset.loaded || "",
    identity: dl("detail-identity"), endpoint: dl("detail-endpoint"),
    checks: [...d.querySelectorAll("#detail-checks tbody tr")].map(tr => tr.cells[0].textContent + "|" + tr.cells[1].textContent),
    history: [...d.querySelectorAll("#detail-history tbody tr")].map(tr => ({status: tr.dataset.status,
      at: tr.querySelector("time").dateTime, reason: tr.cells[3].textContent})),
    points: [...d.querySelectorAll("#detail-sparkline svg polyline")].reduce((n, p) => n + p.points.numberOfItems, 0),
    label: svg ? svg.getAttribute("aria-label") : "",
    note: note.hidden ? "" : note.textContent,
    focus: f ? (f.id || f.getAttribute("href") || f.tagName) : ""}; })()`

// TestDashboardViews: the dashboard of a gateway with two RS-485 buses and the plant
// view on, with a second gateway on the same Mosquitto broker, in headless Chromium. A
// column header sorts the table (aria-sort says how), "Group by bus" splits it into one
// row group per bus, an instance's link opens its detail panel (identity, endpoint,
// unit ID, checks, its status history with the critical spell it went through, a
// sparkline of its round trips) which Escape closes, and the "Plant" switch shows every
// gateway's devices with the gateways that see them. Screenshots of the four views go
// to screensDir.
func TestDashboardViews(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	br := startBrowser(t)
	m := mosquitto.Start(t)

	rb := rig.New(t)
	rb.StartSimSerials(map[int]string{1: "SIM-0001", 3: "SIM-0003"})
	rb.GatewayID = "gw-b"
	// The views, not detection timing, are under test: the buses have rig.HostTiming.
	rb.RunGateway(m.URL(), fmt.Sprintf(`
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-3", %s}]
health: {poll_interval: 50ms}
`, rig.HostTiming))
	keys := filepath.Join(rb.Dir, "trusted-keys")
	writeKeys(t, keys, rb)

	ra := rig.New(t)
	bus2 := filepath.Join(ra.Dir, "bus2")
	ra.StartSimYAML(fmt.Sprintf(`
buses:
  - name: bus1
    link: $LINK
    baud: 115200
    turnaround: 1ms
    drives: [{unit: 1, serial: SIM-0001}, {unit: 2, serial: SIM-0002}]
  - name: bus2
    link: %s
    baud: 115200
    turnaround: 1ms
    drives: [{unit: 5, serial: SIM-0005}]
`, bus2))
	ra.GatewayID = "gw-a"
	ga, _ := ra.RunGateway(m.URL(), fmt.Sprintf(`
discovery:
  serial:
    - {name: bus1, device: $LINK, baud: 115200, units: "1-2", meta: {cell: "2"}, %[3]s}
    - {name: bus2, device: %[1]s, baud: 115200, units: "5", meta: {cell: "3"}, %[3]s}
health: {poll_interval: 50ms}
http: {listen: "127.0.0.1:0", plant_view: true, trusted_keys: %[2]s}
`, bus2, keys, rig.HostTiming))
	id := func(n int) string { return fmt.Sprintf("rollcall-firmware-sim-sim-%04d", n) }
	rig.WaitCatalog(t, ga, 20*time.Second, "3 passing drives on two buses", rig.Passing(3))

	// Drive 2 goes silent, critical, and comes back: its status history has the spell.
	victim := id(2)
	if err := ra.Sim.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	rig.WaitCatalog(t, ga, 10*time.Second, victim+" critical", rig.StatusIs(victim, contract.Critical))
	if err := ra.Sim.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultNone}); err != nil {
		t.Fatal(err)
	}
	rig.WaitCatalog(t, ga, 10*time.Second, "3 passing drives again", rig.Passing(3))

	// The endpoint first: the history and the round trips the panel will show.
	var detail httpapi.InstanceDetail
	testutil.EventuallyValue(t, 10*time.Second, victim+"'s detail with its critical spell and round trips", func() (string, bool) {
		code, body := httpGet(t, "http://"+ga.HTTPAddr()+"/v1/instances/"+victim)
		detail = httpapi.InstanceDetail{}
		if code != 200 || json.Unmarshal([]byte(body), &detail) != nil {
			return body, false
		}
		return body, len(detail.History) >= 3 && len(detail.RoundTrips) >= 20
	})
	var statuses []contract.Status
	for _, h := range detail.History {
		statuses = append(statuses, h.Status)
	}
	// (A drive that a CPU-starved simulator leaves unanswered may flap afterwards: the
	// history then goes on.)
	if statuses[0] != contract.Passing || detail.History[0].Reason != "registered" || !slices.Contains(statuses, contract.Critical) {
		t.Errorf("history %+v: want registered passing, then critical", detail.History)
	}
	for _, h := range detail.History {
		if h.Status == contract.Critical && !strings.Contains(h.Reason, "failed polls") {
			t.Errorf("critical transition %+v: want the failed polls as its reason", h)
		}
	}
	if code, _ := httpGet(t, "http://"+ga.HTTPAddr()+"/v1/instances/"+id(3)); code != 404 {
		t.Errorf("/v1/instances of gw-b's own drive: %d, want 404", code)
	}

	dir := screensDir(t)
	br.navigate("http://" + ga.HTTPAddr() + "/")
	waitTable(t, br, 10*time.Second, "the three drives, by id", func(v tableView) bool {
		return len(v.Groups) == 1 && slices.Equal(v.Groups[0].IDs, []string{id(1), id(2), id(5)}) &&
			slices.Equal(v.Sort, []string{"id:ascending"})
	})
	br.screenshot(filepath.Join(dir, "main.png"))

	// Sort: Endpoint, then Endpoint again (descending): bus2 first.
	br.click(`#catalog th[data-key="endpoint"] button`)
	waitTable(t, br, 5*time.Second, "sorted by endpoint", func(v tableView) bool {
		return slices.Equal(v.Sort, []string{"endpoint:ascending"}) && len(v.Groups) == 1 &&
			slices.Equal(v.Groups[0].IDs, []string{id(1), id(2), id(5)})
	})
	br.click(`#catalog th[data-key="endpoint"] button`)
	sorted := waitTable(t, br, 5*time.Second, "sorted by endpoint, descending", func(v tableView) bool {
		return slices.Equal(v.Sort, []string{"endpoint:descending"}) && len(v.Groups) == 1 &&
			slices.Equal(v.Groups[0].IDs, []string{id(5), id(2), id(1)})
	})
	if sorted.Search != "?sort=-endpoint" {
		t.Errorf("sort not kept in the address: %q", sorted.Search)
	}

	// Group by bus: two row groups, each still sorted.
	if err := br.eval(`(() => { const s = document.getElementById("group-by"); s.value = "bus";
		s.dispatchEvent(new Event("change")); })()`, nil); err != nil {
		t.Fatal(err)
	}
	grouped := waitTable(t, br, 5*time.Second, "grouped by bus", func(v tableView) bool {
		return len(v.Groups) == 2 && v.Groups[0].Group == "bus1" && v.Groups[1].Group == "bus2" &&
			slices.Equal(v.Groups[0].IDs, []string{id(2), id(1)}) && slices.Equal(v.Groups[1].IDs, []string{id(5)})
	})
	if !strings.HasPrefix(grouped.Groups[0].Head, "Bus bus1") || !strings.Contains(grouped.Groups[0].Head, "2 instances") {
		t.Errorf("group heading %q", grouped.Groups[0].Head)
	}
	if grouped.Search != "?group=bus&sort=-endpoint" {
		t.Errorf("grouping not kept in the address: %q", grouped.Search)
	}
	br.screenshot(filepath.Join(dir, "grouped.png"))

	// The victim's detail panel, opened with its link.
	br.click(`#catalog a[href="#instance=` + victim + `"]`)
	d := waitDetail(t, br, 10*time.Second, victim+"'s details with history and a sparkline", func(d detailView) bool {
		return !d.Hidden && d.ID == victim && d.Loaded == "local" && len(d.History) >= 3 && d.Points >= 20
	})
	if d.Identity["Serial"] != "SIM-0002" || d.Identity["Vendor"] == "" || d.Endpoint["Bus"] != "bus1" || d.Endpoint["Unit ID"] != "2" {
		t.Errorf("identity %v, endpoint %v", d.Identity, d.Endpoint)
	}
	if len(d.Checks) == 0 || !strings.HasPrefix(d.Checks[0], "poll|") || !strings.Contains(d.Checks[0], "passing") {
		t.Errorf("checks %v", d.Checks)
	}
	// Newest first: the registration last, the critical spell before it, as the
	// endpoint says.
	if oldest := d.History[len(d.History)-1]; oldest.Status != "passing" || !strings.HasPrefix(oldest.Reason, "registered") {
		t.Errorf("history rows %+v", d.History)
	}
	if d.History[0].At < detail.History[len(detail.History)-1].At.UTC().Format(contract.TimeLayout) {
		t.Errorf("newest history row %+v is older than the endpoint's newest %+v", d.History[0], detail.History[len(detail.History)-1])
	}
	critical := false
	for i, h := range d.History {
		critical = critical || (h.Status == "critical" && strings.Contains(h.Reason, "failed polls"))
		if i > 0 && h.At > d.History[i-1].At {
			t.Errorf("history rows not newest first: %+v", d.History)
		}
	}
	if !critical {
		t.Errorf("history rows %+v: no critical spell with its reason", d.History)
	}
	if !strings.HasPrefix(d.Label, "Round trip of the last ") || !strings.Contains(d.Label, " ms") {
		t.Errorf("sparkline label %q", d.Label)
	}
	if d.Focus != "detail-title" {
		t.Errorf("focus on %q after opening the panel, want its heading", d.Focus)
	}
	br.viewport(1400, 1000) // the whole panel in the picture
	br.screenshot(filepath.Join(dir, "detail.png"))
	br.viewport(1400, 800)

	// Escape closes it and gives the focus back to the link.
	br.press(kb.Escape)
	waitDetail(t, br, 5*time.Second, "the panel closed, focus back on the link", func(d detailView) bool {
		return d.Hidden && d.Focus == "#instance="+victim
	})

	// The plant view: every gateway's devices, each once, with the gateways that see it.
	if err := br.eval(`(() => { const s = document.getElementById("group-by"); s.value = "gateway";
		s.dispatchEvent(new Event("change")); })()`, nil); err != nil {
		t.Fatal(err)
	}
	waitVisible(t, br, 20*time.Second, "#view-switch")
	br.click("#view-plant")
	plant := waitTable(t, br, 20*time.Second, "the plant view grouped by gateway", func(v tableView) bool {
		return len(v.Groups) == 3 && v.Groups[0].Group == "gw-a" && v.Groups[1].Group == "gw-a, gw-b" && v.Groups[2].Group == "gw-b" &&
			slices.Equal(v.Groups[0].IDs, []string{id(5), id(2)}) && slices.Equal(v.Groups[1].IDs, []string{id(1)}) &&
			slices.Equal(v.Groups[2].IDs, []string{id(3)})
	})
	if !slices.Equal(plant.Groups[1].SeenBy, []string{"gw-a, gw-b"}) || !strings.HasPrefix(plant.Summary, "Plant: 4 of 4 live devices, seen by 2 gateways") {
		t.Errorf("plant view %+v", plant)
	}
	if plant.Search != "?view=plant&group=gateway&sort=-endpoint" {
		t.Errorf("view not kept in the address: %q", plant.Search)
	}
	br.screenshot(filepath.Join(dir, "plant.png"))

	// gw-b's own drive: its record, and where its history is kept.
	br.click(`#catalog a[href="#instance=` + id(3) + `"]`)
	d = waitDetail(t, br, 10*time.Second, id(3)+"'s details from the plant view", func(d detailView) bool {
		return !d.Hidden && d.ID == id(3) && d.Loaded == "plant"
	})
	if !strings.Contains(d.Note, "gw-b") || len(d.History) != 0 || d.Identity["Serial"] != "SIM-0003" {
		t.Errorf("another gateway's instance: %+v", d)
	}
	t.Logf("screenshots in %s: main.png, grouped.png, detail.png, plant.png", dir)
}

// waitTable polls the dashboard's table until cond holds; at the deadline it fails,
// showing the last view.
func waitTable(t *testing.T, br *browser, deadline time.Duration, what string, cond func(tableView) bool) tableView {
	t.Helper()
	return testutil.EventuallyValue(t, deadline, what, func() (tableView, bool) {
		var v tableView
		err := br.eval(tableViewJS, &v)
		return v, err == nil && cond(v)
	})
}

// waitDetail polls the dashboard's detail panel until cond holds.
func waitDetail(t *testing.T, br *browser, deadline time.Duration, what string, cond func(detailView) bool) detailView {
	t.Helper()
	return testutil.EventuallyValue(t, deadline, what, func() (detailView, bool) {
		var v detailView
		err := br.eval(detailViewJS, &v)
		return v, err == nil && cond(v)
	})
}

// waitVisible polls until the element of the CSS selector sel is shown (not hidden).
func waitVisible(t *testing.T, br *browser, deadline time.Duration, sel string) {
	t.Helper()
	testutil.Eventually(t, deadline, sel+" shown", func() bool {
		var shown bool
		err := br.eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && !e.hidden; })()`, sel), &shown)
		return err == nil && shown
	})
}
