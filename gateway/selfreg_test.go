package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// mqttPublisher connects to url as username/password with client id id.
func mqttPublisher(t *testing.T, url, id, username, password string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(username).SetPassword(password).
		SetCleanSession(true).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publishJSON(t *testing.T, c paho.Client, topic string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Publish(topic, 1, false, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// TestSelfRegistrationMQTT: a module registers itself over MQTT on its own register
// topic (the embedded broker lets each user write only its client id's), renews with
// pass and warn and a note, and is published with discovered_by ["self"]; another
// client cannot touch it; when the renewals stop, it is critical once its TTL has run
// out (status_since − last_seen within the TTL + one registry tick + 100 ms), then
// deregistered after deregister_critical_after.
func TestSelfRegistrationMQTT(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	h.EmbeddedUser("cam", "c4mera")
	g := h.StartGateway("embedded", `
self_registration: {mqtt: true}
health: {deregister_critical_after: 2s}
`)
	topics := contract.Topics{}
	cam := mqttPublisher(t, g.BrokerURL(), "cam-1", "cam", "c4mera")
	reg := contract.SelfRegistration{Op: contract.OpRegister, Name: "vision", Service: "vision-module",
		Endpoint: contract.Endpoint{Transport: "http", Host: "127.0.0.1", Port: 8080, URL: "http://127.0.0.1:8080/"},
		Meta:     map[string]string{"line": "2"}, TTLMS: 1000, Status: contract.TTLPass, Note: "ready"}
	id := contract.SelfInstanceID(contract.Identity{}, rig.DefaultGatewayID, "cam-1", "vision")
	// Sent until taken, as a module does with its renewals: the gateway subscribes to
	// its register topics once connected, and an MQTT message sent before is lost.
	got := testutil.EventuallyValue(t, 10*time.Second, "the self-registered instance passing", func() (contract.Record, bool) {
		publishJSON(t, cam, topics.Register(rig.DefaultGatewayID, "cam-1"), reg)
		r, ok := g.Registry().Get(id)
		return r, ok && r.Status == contract.Passing
	})
	if !slices.Equal(got.DiscoveredBy, []string{"self"}) || got.Meta["line"] != "2" || len(got.Checks) != 1 ||
		got.Checks[0].Name != "ttl" || got.Checks[0].Note != "ready" || got.Check.DetectBudgetMS < 1000 {
		t.Fatalf("self-registered record %+v", got)
	}
	// Renew with warn and a note.
	publishJSON(t, cam, topics.Register(rig.DefaultGatewayID, "cam-1"),
		contract.SelfRegistration{Op: contract.OpRenew, Name: "vision", Status: contract.TTLWarn, Note: "lens dirty"})
	testutil.EventuallyValue(t, 10*time.Second, "warning with the renewal's note", func() (contract.Record, bool) {
		r, _ := g.Registry().Get(id)
		return r, r.Status == contract.Warning && len(r.Checks) == 1 && r.Checks[0].Note == "lens dirty"
	})
	// Another client: the broker refuses its publication on cam-1's topic, and on its own
	// topic the same name is another instance, unknown: cam-1's stays.
	other := mqttPublisher(t, g.BrokerURL(), "intruder", "cam", "c4mera")
	deregister := contract.SelfRegistration{Op: contract.OpDeregister, Name: "vision"}
	publishJSON(t, other, topics.Register(rig.DefaultGatewayID, "intruder"), deregister)
	// On cam-1's topic: refused by the broker, which closes the intruder's connection.
	b, _ := json.Marshal(deregister)
	if tok := other.Publish(topics.Register(rig.DefaultGatewayID, "cam-1"), 1, false, b); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		t.Log("the broker acknowledged the publication on another client's register topic (and dropped it)")
	}
	publishJSON(t, cam, topics.Register(rig.DefaultGatewayID, "cam-1"),
		contract.SelfRegistration{Op: contract.OpRenew, Name: "vision", Status: contract.TTLPass, Note: "after the intruder"})
	last := testutil.EventuallyValue(t, 10*time.Second, "the renewal after the intruder's messages", func() (contract.Record, bool) {
		r, ok := g.Registry().Get(id)
		if !ok {
			t.Fatal("the instance was deregistered by another client")
		}
		return r, r.Status == contract.Passing && r.Checks[0].Note == "after the intruder"
	})
	// No more renewals: critical at the first registry tick past the TTL.
	crit := rig.WaitCatalog(t, g, 10*time.Second, "critical after the TTL", rig.StatusIs(id, contract.Critical))
	c, _ := rig.Instance(crit, id)
	expiry := c.StatusSince.Sub(last.LastSeen.Time)
	t.Logf("TTL 1s: critical %v after the last renewal (registry tick 100ms); note %q", expiry.Round(time.Millisecond), c.Checks[0].Note)
	if expiry < time.Second || expiry > time.Second+200*time.Millisecond {
		t.Errorf("TTL expiry %v after the last renewal, want within [1s, 1.2s]", expiry)
	}
	if !strings.Contains(c.Checks[0].Note, "TTL expired") {
		t.Errorf("critical record's ttl note %q", c.Checks[0].Note)
	}
	testutil.Eventually(t, 10*time.Second, "deregistered after deregister_critical_after", func() bool {
		_, ok := g.Registry().Get(id)
		return !ok
	})
}

// adminToken writes an admin token file and returns its path and the token.
func adminToken(t *testing.T, dir string) (string, string) {
	t.Helper()
	tok := "t0ken-" + strings.Repeat("x", 20)
	p := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, tok
}

// apiCall sends an HTTP request with an optional bearer token and JSON body and returns
// the status and body.
func apiCall(t *testing.T, method, url, token string, body any) (int, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSelfRegistrationHTTP: registration, renewal and deregistration over the HTTP API
// behind the admin token (401 without it), as the README's curl example does.
func TestSelfRegistrationHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	tokFile, tok := adminToken(t, h.Dir)
	g := h.StartGateway("embedded", fmt.Sprintf(`
self_registration: {http: true}
http: {listen: "127.0.0.1:0", admin_token_file: %s}
`, tokFile))
	base := "http://" + g.HTTPAddr()
	body := map[string]any{"name": "planner", "service": "motion-planner", "ttl_ms": 5000,
		"endpoint": map[string]any{"transport": "tcp", "host": "10.0.0.9", "port": 7000}, "meta": map[string]string{"cell": "2"}}
	if code, _ := apiCall(t, "POST", base+"/v1/instances", "", body); code != http.StatusUnauthorized {
		t.Errorf("POST without a token: %d, want 401", code)
	}
	if code, _ := apiCall(t, "POST", base+"/v1/instances", "wrong-token-xxxxxxxx", body); code != http.StatusUnauthorized {
		t.Errorf("POST with a wrong token: %d, want 401", code)
	}
	code, resp := apiCall(t, "POST", base+"/v1/instances", tok, body)
	var rec contract.Record
	if code != http.StatusCreated || json.Unmarshal([]byte(resp), &rec) != nil || rec.Status != contract.Passing ||
		!slices.Equal(rec.DiscoveredBy, []string{"self"}) {
		t.Fatalf("POST /v1/instances: %d %s", code, resp)
	}
	if code, resp := apiCall(t, "PUT", base+"/v1/instances/"+rec.ID+"/ttl", tok, map[string]string{"status": "warn", "note": "queue 80 %"}); code != 200 ||
		!strings.Contains(resp, `"status":"warning"`) || !strings.Contains(resp, "queue 80 %") {
		t.Errorf("renew warn: %d %s", code, resp)
	}
	if code, _ := apiCall(t, "PUT", base+"/v1/instances/"+rec.ID+"/ttl", tok, map[string]string{"status": "maybe"}); code != http.StatusBadRequest {
		t.Errorf("renew with an unknown status: %d, want 400", code)
	}
	if code, _ := apiCall(t, "PUT", base+"/v1/instances/nope/ttl", tok, map[string]string{"status": "pass"}); code != http.StatusNotFound {
		t.Errorf("renew of an unknown id: %d, want 404", code)
	}
	if code, _ := apiCall(t, "POST", base+"/v1/instances", tok, map[string]any{"name": "x", "service": "s", "ttl_ms": 10}); code != http.StatusBadRequest {
		t.Errorf("register with a 10 ms TTL: %d, want 400", code)
	}
	if code, _ := apiCall(t, "DELETE", base+"/v1/instances/"+rec.ID, tok, nil); code != http.StatusNoContent {
		t.Errorf("DELETE: %d, want 204", code)
	}
	if _, ok := g.Registry().Get(rec.ID); ok {
		t.Error("deregistered over HTTP, still live")
	}
}

// TestScriptChecks: a Modbus TCP drive with four script checks besides its poll: exit 0
// (passing, its output the note), 1 (warning), 2 (critical), and a hung script killed at
// its timeout (critical, "timed out"); the instance's status is the worst, critical, and
// its record names each check's status.
func TestScriptChecks(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	h.StartSimYAML(`
tcp:
  - {name: tcp1, listen: 127.0.0.1:0, drives: [{unit: 1, serial: SIM-0101}]}
`)
	script := func(name, body string) string {
		p := filepath.Join(h.Dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok, warn, crit, hung := script("ok.sh", "echo web ok; exit 0"), script("warn.sh", "echo disk 85%; exit 1"),
		script("crit.sh", "echo fan stopped >&2; exit 2"), script("hung.sh", "sleep 60")
	g := h.StartGateway("embedded", fmt.Sprintf(`
discovery:
  tcp:
    - name: tcp1
      address: "$ADDR(tcp1)"
      checks:
        - {name: web, type: script, command: [%s], interval: 1s, timeout: 1s}
        - {name: disk, type: script, command: [%s], interval: 1s, timeout: 1s}
        - {name: fan, type: script, command: [%s], interval: 1s, timeout: 1s}
        - {name: hung, type: script, command: [%s], interval: 1s, timeout: 300ms}
`, ok, warn, crit, hung))
	id := "rollcall-firmware-sim-sim-0101"
	rec := testutil.EventuallyValue(t, 20*time.Second, "the drive with its 4 checks reported", func() (contract.Record, bool) {
		r, live := g.Registry().Get(id)
		return r, live && len(r.Checks) == 5 && strings.Contains(checkNote(r, "hung"), "timed out")
	})
	want := map[string]contract.Status{"poll": contract.Passing, "web": contract.Passing, "disk": contract.Warning,
		"fan": contract.Critical, "hung": contract.Critical}
	for _, c := range rec.Checks {
		if c.Status != want[c.Name] {
			t.Errorf("check %s: %s, want %s (note %q)", c.Name, c.Status, want[c.Name], c.Note)
		}
	}
	if rec.Status != contract.Critical {
		t.Errorf("instance status %s, want critical (the worst of its checks)", rec.Status)
	}
	if n := checkNote(rec, "web"); n != "web ok" {
		t.Errorf("web check note %q, want the script's output", n)
	}
	if n := checkNote(rec, "fan"); n != "fan stopped" {
		t.Errorf("fan check note %q, want its stderr", n)
	}
}

func checkNote(r contract.Record, name string) string {
	for _, c := range r.Checks {
		if c.Name == name {
			return c.Note
		}
	}
	return ""
}

// TestMaintenance: an instance put into maintenance over the HTTP API stays listed with
// its reason while its device is silent far past deregister_critical_after, is never
// picked by a consumer, keeps its maintenance across a gateway restart, and is back to
// its health's status when maintenance ends.
func TestMaintenance(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	s := h.StartSim(1, 2)
	h.MQTTExtra = ", embedded_auth: {allow_anonymous: true}"
	tokFile, tok := adminToken(t, h.Dir)
	cfg := fmt.Sprintf(`
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-2"}]
health: {poll_interval: 50ms, deregister_critical_after: 1s}
http: {listen: "127.0.0.1:0", admin_token_file: %s}
`, tokFile)
	g, stop := h.RunGateway("embedded", cfg)
	rig.WaitCatalog(t, g, 30*time.Second, "2 passing", rig.Passing(2))
	victim := "rollcall-firmware-sim-sim-0002"
	url := "http://" + g.HTTPAddr() + "/v1/instances/" + victim + "/maintenance"
	if code, resp := apiCall(t, "PUT", url, tok, map[string]string{"reason": "encoder replaced"}); code != 200 ||
		!strings.Contains(resp, `"status":"maintenance"`) || !strings.Contains(resp, "encoder replaced") {
		t.Fatalf("PUT maintenance: %d %s", code, resp)
	}
	if code, _ := apiCall(t, "PUT", "http://"+g.HTTPAddr()+"/v1/instances/nope/maintenance", tok, map[string]string{"reason": "x"}); code != 404 {
		t.Errorf("maintenance of an unknown id: %d, want 404", code)
	}
	// The device is switched off for the repair: it stays listed, in maintenance.
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	silent := time.Now()
	testutil.Eventually(t, 20*time.Second, "3 s of silence", func() bool { return time.Since(silent) > 3*time.Second })
	r, live := g.Registry().Get(victim)
	if !live || r.Status != contract.Maintenance || r.Maintenance == nil || r.Maintenance.Reason != "encoder replaced" {
		t.Fatalf("silent drive in maintenance after 3 s (deregister_critical_after 1s): live %v, %+v", live, r)
	}
	// A consumer never picks it.
	cc := newConsumer(t, g.BrokerURL())
	testutil.EventuallyNil(t, 10*time.Second, "the consumer sees the maintenance record", func() error {
		for _, in := range cc.Instances("servo-drive") {
			if in.ID == victim && in.Status == contract.Maintenance {
				return nil
			}
		}
		return fmt.Errorf("not yet: %+v", cc.Instances("servo-drive"))
	})
	if in, err := cc.Pick("servo-drive", pickByID(victim)...); err == nil {
		t.Errorf("picked the instance in maintenance: %+v", in)
	}
	// A restart keeps it.
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultNone}); err != nil {
		t.Fatal(err)
	}
	stop()
	g, _ = h.RunGateway("embedded", cfg)
	rig.WaitCatalog(t, g, 30*time.Second, "the drive registered again, in maintenance", rig.StatusIs(victim, contract.Maintenance))
	cc = newConsumer(t, g.BrokerURL())
	testutil.EventuallyNil(t, 10*time.Second, "a consumer of the restarted gateway sees it in maintenance", func() error {
		if _, err := cc.Pick("servo-drive", client.WithID("rollcall-firmware-sim-sim-0001")); err != nil {
			return err // the catalog is not complete yet
		}
		for _, in := range cc.Instances("servo-drive") {
			if in.ID == victim && in.Status == contract.Maintenance {
				return nil
			}
		}
		return fmt.Errorf("not yet: %+v", cc.Instances("servo-drive"))
	})
	if in, err := cc.Pick("servo-drive", pickByID(victim)...); err == nil {
		t.Errorf("picked the instance in maintenance after the restart: %+v", in)
	}
	if code, _ := apiCall(t, "DELETE", "http://"+g.HTTPAddr()+"/v1/instances/"+victim+"/maintenance", tok, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE maintenance: %d", code)
	}
	rig.WaitCatalog(t, g, 10*time.Second, "passing after maintenance", rig.StatusIs(victim, contract.Passing))
}

// newConsumer runs a registry/client consumer on url until the test ends.
func newConsumer(t *testing.T, url string) *client.Client {
	t.Helper()
	c, err := client.New(client.Options{Brokers: []string{url}, ClientID: fmt.Sprintf("it-consumer-%d", time.Now().UnixNano()),
		Logger: testutil.Logger(t, 0)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

// pickByID is every relaxation Pick has, for one id: an instance it still refuses is
// refused for its status alone.
func pickByID(id string) []client.PickOption {
	return []client.PickOption{client.WithID(id), client.AllowWarning(), client.AllowStale()}
}

// TestSelfRegistrationClient: registry/client's Register against a gateway: the module's
// instance becomes pickable by a consumer, and is deregistered when the module stops.
func TestSelfRegistrationClient(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	h.EmbeddedUser("planner", "pl4nner")
	g := h.StartGateway("embedded", "self_registration: {mqtt: true}\n")
	c, err := client.New(client.Options{Brokers: []string{g.BrokerURL()}, ClientID: "planner-1", Username: "planner",
		Password: "pl4nner", Logger: testutil.Logger(t, 0)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = c.Run(runCtx) }()
	defer func() { stopRun(); <-runDone }()
	regCtx, stopReg := context.WithCancel(context.Background())
	regDone := make(chan error, 1)
	go func() {
		regDone <- c.Register(regCtx, client.Registration{Gateway: rig.DefaultGatewayID, Name: "planner", Service: "motion-planner",
			Endpoint: contract.Endpoint{Transport: "tcp", Host: "127.0.0.1", Port: 7000}, TTL: time.Second,
			Renew: func() (string, string) { return contract.TTLPass, "planning" }})
	}()
	wctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	in, err := c.Wait(wctx, "motion-planner")
	cancel()
	if err != nil || !slices.Equal(in.DiscoveredBy, []string{"self"}) || in.Endpoint.Port != 7000 {
		t.Fatalf("Wait for the self-registered planner: %+v, %v", in, err)
	}
	// Renewals keep it passing past several TTLs.
	renewedPast := in.LastSeen.Add(3 * time.Second)
	testutil.EventuallyValue(t, 20*time.Second, "renewals 3 s after the registration, still passing", func() (contract.Record, bool) {
		r, _ := g.Registry().Get(in.ID)
		return r, r.Status == contract.Passing && r.LastSeen.After(renewedPast)
	})
	stopReg()
	if err := <-regDone; err != nil {
		t.Errorf("Register: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "deregistered when the module stops", func() bool {
		_, ok := g.Registry().Get(in.ID)
		return !ok
	})
}
