package gateway_test

import (
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway/httpapi"
	"github.com/rollcall-edge/rollcall/registry"
)

// TestDashboardHostileRecords: every value of a record (id, service, meta, identity,
// endpoint, state, checks' notes, maintenance reason, history reasons), which a rogue
// device or a forged record controls, is shown as text; the address's parameters
// (?sort=, ?group=, #instance=, a malformed escape among them) neither inject markup
// nor stop the page.
func TestDashboardHostileRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	br := startBrowser(t)
	const x = `<img src=x onerror="window.__xss=(window.__xss||0)+1">`
	const q = `"><svg onload="window.__xss=(window.__xss||0)+1">`
	now := time.Now()
	rec := func(id string) contract.Record {
		return contract.Record{
			Schema: "rollcall/v1", ID: id, Service: "svc" + x, Gateway: "gw" + q, Epoch: 1, Revision: 1<<32 + 1,
			Status: contract.Critical, StatusSince: contract.Time{Time: now}, LastSeen: contract.Time{Time: now},
			Endpoint:     contract.Endpoint{Transport: "modbus-rtu" + x, Bus: "bus" + x, Host: "h" + q, URL: "javascript:alert(1)//" + x},
			Identity:     contract.Identity{Vendor: "v" + x, ProductCode: "p" + q, Model: "m" + x, Revision: "r" + x, Serial: "s" + x},
			Profile:      "prof" + x,
			State:        map[string]any{"cia402": "op" + x, "fault": true, "error_code": 1},
			DiscoveredBy: []string{"d" + x},
			Meta:         map[string]string{"k" + x: "v" + q},
			Checks:       []contract.CheckState{{Name: "c" + x, Kind: "k" + q, Status: contract.Critical, Note: "n" + x}},
		}
	}
	ids := []string{x, q, "a" + x, "b%"}
	var recs []contract.Record
	for _, id := range ids {
		recs = append(recs, rec(id))
	}
	hub := httpapi.NewHub(0)
	for _, r := range recs {
		hub.Publish(registry.Event{Kind: registry.Upsert, Record: r, Transition: true})
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Options{
		Catalog: func() []contract.Record { return recs },
		Events:  hub,
		Gateway: func() contract.GatewayRecord { return contract.GatewayRecord{Gateway: "gw" + x} },
		Plant: func() []httpapi.PlantInstance {
			var out []httpapi.PlantInstance
			for _, r := range recs {
				out = append(out, httpapi.PlantInstance{Record: r, SeenBy: []string{"gw" + x}})
			}
			return out
		},
	}))
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })

	check := func(what string) {
		t.Helper()
		time.Sleep(500 * time.Millisecond)
		var got struct {
			XSS   int
			Nodes int
			Rows  int
			Err   string
		}
		if err := br.eval(`({XSS: window.__xss || 0,
			Nodes: document.querySelectorAll("img, body svg:not(.sparkline), svg.sparkline svg").length,
			Rows: document.querySelectorAll("#catalog tbody tr[data-id]").length,
			Err: document.body.dataset.err || ""})`, &got); err != nil {
			t.Fatal(err)
		}
		if got.XSS != 0 || got.Nodes != 0 {
			t.Errorf("%s: markup from a record was parsed: %+v", what, got)
		}
		if got.Rows != len(ids) {
			t.Errorf("%s: %d rows, want %d", what, got.Rows, len(ids))
		}
		if got.Err != "" {
			t.Errorf("%s: uncaught error in the page: %s", what, got.Err)
		}
	}

	base := srv.URL + "/?sort=" + url.QueryEscape(`"]`+x) + "&group=" + url.QueryEscape(x)
	// The page's uncaught errors are kept on the body (installed before app.js runs).
	watchErrors := `window.addEventListener("error", (e) => { document.body.dataset.err = String(e.message); });`
	for _, id := range ids {
		br.navigate("about:blank")
		br.navigate(srv.URL + "/?group=service#instance=" + url.PathEscape(id))
		if err := br.eval(watchErrors, nil); err != nil {
			t.Fatal(err)
		}
		check("detail of " + id)
		// Plant view, grouped by gateway, the detail of each.
		if err := br.eval(`document.getElementById("view-plant").click()`, nil); err != nil {
			t.Fatal(err)
		}
		check("plant view, " + id)
	}
	br.navigate(base)
	check("hostile query")

	// A malformed escape in #instance= is no instance: the page goes on working.
	br.navigate(srv.URL + "/")
	if err := br.eval(watchErrors, nil); err != nil {
		t.Fatal(err)
	}
	if err := br.eval(`location.hash = "#instance=%E0%A4%A"`, nil); err != nil {
		t.Fatal(err)
	}
	check("malformed #instance=")
}
