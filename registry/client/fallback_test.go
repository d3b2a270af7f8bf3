package client_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// unreachableBroker is a broker URL that refuses connections at once (nothing listens
// on port 1 of the loopback interface).
const unreachableBroker = "tcp://127.0.0.1:1"

// plcFallbacks are two fallback endpoints of service "plc" and one of "hmi".
func plcFallbacks() []client.Fallback {
	return []client.Fallback{
		{Service: "plc", Endpoint: contract.Endpoint{Transport: "modbus-tcp", Host: "10.0.2.10", Port: 502, Unit: 1},
			Meta: map[string]string{"line": "2"}},
		{Service: "hmi", Endpoint: contract.Endpoint{Transport: "tcp", Host: "10.0.2.30", Port: 8080}},
		{Service: "plc", Endpoint: contract.Endpoint{Transport: "modbus-tcp", Host: "10.0.2.11", Port: 502, Unit: 1},
			Meta: map[string]string{"line": "3"}},
	}
}

// plcRecord is a live record of service "plc" published by gateway gw.
func plcRecord(gw, id string, status contract.Status) contract.Record {
	rec := drive(gw, 1, id, 1, status, 1, 1, "line", "2")
	rec.Service = "plc"
	rec.Endpoint = contract.Endpoint{Transport: "modbus-tcp", Host: "10.0.9.9", Port: 502, Unit: 1}
	return rec
}

// TestFallbackWhenUnreachableAndUnknown (a): no broker reachable and no cache: Pick and
// Wait return the configured fallbacks (Fallback true, round-robin, filtered by meta),
// never before the first connection attempts failed; Live never returns them.
func TestFallbackWhenUnreachableAndUnknown(t *testing.T) {
	o := client.Options{Brokers: []string{unreachableBroker}, Fallback: plcFallbacks(),
		MaxReconnectInterval: 100 * time.Millisecond, Logger: testutil.Logger(t, 0)}
	before, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	// Not run: nothing says the catalog is unreachable yet.
	mustRefuse(t, before, "plc", []string{`"plc"`, "0 known"})

	c, _ := runClient(t, o)
	in, err := c.Wait(waitCtx(t), "plc")
	if err != nil {
		t.Fatal(err)
	}
	if !in.Fallback || in.ID != "fallback-plc-1" || in.Status != "" || in.Gateway != "" ||
		in.Endpoint.Host != "10.0.2.10" || in.Service != "plc" || in.GatewayState != client.GatewayUnknown {
		t.Fatalf("fallback: %+v", in)
	}
	if c.Status().Connected {
		t.Fatal("connected to an unreachable broker")
	}
	// Round-robin over the two fallbacks of plc, in configuration order.
	seen := map[string]int{}
	for range 10 {
		in := mustPick(t, c, "plc")
		if !in.Fallback {
			t.Fatalf("not a fallback: %+v", in)
		}
		seen[in.ID+" "+in.Endpoint.Host]++
	}
	if seen["fallback-plc-1 10.0.2.10"] != 5 || seen["fallback-plc-2 10.0.2.11"] != 5 {
		t.Errorf("round-robin over fallbacks: %v", seen)
	}
	// Filters apply to the fallback's meta (and id); a gateway filter never matches.
	if in := mustPick(t, c, "plc", client.WithMeta("line", "3")); in.ID != "fallback-plc-2" {
		t.Errorf("WithMeta line=3 picked %s", in.ID)
	}
	if in := mustPick(t, c, "plc", client.WithID("fallback-plc-1")); in.Endpoint.Host != "10.0.2.10" {
		t.Errorf("WithID picked %+v", in.Endpoint)
	}
	mustRefuse(t, c, "plc", []string{"0 known", "2 configured fallback(s) refused"}, client.WithMeta("line", "9"))
	mustRefuse(t, c, "plc", []string{"2 configured fallback(s) refused"}, client.WithGateway("gw"))
	mustRefuse(t, c, "plc", []string{"2 configured fallback(s) refused"}, client.RequireGatewayOnline())
	if in := mustPick(t, c, "hmi"); !in.Fallback || in.ID != "fallback-hmi-1" {
		t.Errorf("hmi: %+v", in)
	}
	// A service without fallback: ErrNoneLive.
	mustRefuse(t, c, "servo-drive", []string{"0 known"})
	// The caller's copy is its own.
	in = mustPick(t, c, "plc", client.WithMeta("line", "2"))
	in.Meta["line"] = "changed"
	if in := mustPick(t, c, "plc", client.WithMeta("line", "2")); in.Meta["line"] != "2" {
		t.Errorf("fallback meta changed by a caller: %v", in.Meta)
	}
	if got := c.Live("plc"); got != nil {
		t.Errorf("Live returned fallbacks: %v", ids(got))
	}
}

// TestFallbackNeverWhileConnected (b, c): with the broker reachable, Pick returns the
// live instance of a service that has one, and ErrNoneLive for a service the broker has
// nothing of, never a fallback; during an outage the known instance still wins, and
// only the service of which nothing is known falls back.
func TestFallbackNeverWhileConnected(t *testing.T) {
	m := mosquitto.Start(t)
	if err := publish(m.URL(), gatewayMsg("gw", "online", 1), instanceMsg(plcRecord("gw", "plc-live", contract.Passing))); err != nil {
		t.Fatal(err)
	}
	c, _ := runClient(t, client.Options{Brokers: []string{m.URL()}, Fallback: plcFallbacks(),
		KeepAlive: time.Second, MaxReconnectInterval: 100 * time.Millisecond})
	waitReady(t, c)
	for range 100 {
		if in := mustPick(t, c, "plc"); in.Fallback || in.ID != "plc-live" {
			t.Fatalf("connected, service live: picked %s (fallback %v)", in.ID, in.Fallback)
		}
	}
	// (c) Connected, nothing of hmi on the broker: ErrNoneLive, not the fallback.
	mustRefuse(t, c, "hmi", []string{`"hmi"`, "0 known"})
	mustRefuse(t, c, "plc", []string{"1 known: 1 not matching the filters"}, client.WithMeta("line", "3"))

	// The broker goes away: plc is known (from memory), so still no fallback; of hmi
	// nothing is known, so its fallback is used.
	m.Stop()
	in, err := c.Wait(waitCtx(t), "hmi")
	if err != nil || !in.Fallback {
		t.Fatalf("hmi during the outage: %+v %v", in, err)
	}
	if c.Status().Connected {
		t.Fatal("fallback returned while connected")
	}
	if in := mustPick(t, c, "plc"); in.Fallback || in.ID != "plc-live" {
		t.Errorf("outage, plc known: picked %s (fallback %v)", in.ID, in.Fallback)
	}
	mustRefuse(t, c, "plc", []string{"1 known: 1 not matching the filters"}, client.WithMeta("line", "3"))

	// Back: the fallback is no longer used.
	m.Restart()
	testutil.Eventually(t, waitFor, "reconnection", func() bool { return c.Status().Connected })
	mustRefuse(t, c, "hmi", []string{"0 known"})
}

// TestFallbackNotWhenCached (d): the broker is unreachable but the cache file holds a
// (stale) record of the service: no fallback; AllowStale picks the cached record.
func TestFallbackNotWhenCached(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "catalog.json")
	at := time.Now().Add(-time.Hour)
	rec := plcRecord("gw", "plc-cached", contract.Passing)
	gwRec := contract.GatewayRecord{State: "online", Gateway: "gw", Epoch: 1, Version: "test", Started: contract.Time{Time: at}}
	doc := map[string]any{
		"schema": client.CacheSchema, "prefix": "rollcall/v1", "saved": at,
		"gateways":  []any{map[string]any{"topic": contract.Topics{}.GatewayStatus("gw"), "confirmed": at, "record": gwRec}},
		"instances": []any{map[string]any{"topic": contract.Topics{}.Instance("plc", "gw", rec.ID), "confirmed": at, "record": rec}},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cache, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := runClient(t, client.Options{Brokers: []string{unreachableBroker}, CacheFile: cache, Fallback: plcFallbacks(),
		MaxReconnectInterval: 100 * time.Millisecond})
	if s := c.Status(); s.Instances != 1 {
		t.Fatalf("cache not read: %+v", s)
	}
	// The catalog is known to be unreachable once hmi (nothing known) falls back.
	if in, err := c.Wait(waitCtx(t), "hmi"); err != nil || !in.Fallback {
		t.Fatalf("hmi: %+v %v", in, err)
	}
	mustRefuse(t, c, "plc", []string{"1 known: 1 stale"})
	in := mustPick(t, c, "plc", client.AllowStale())
	if in.Fallback || in.ID != "plc-cached" || !in.Stale {
		t.Errorf("AllowStale: %s fallback %v stale %v, want the cached record", in.ID, in.Fallback, in.Stale)
	}
	// A filter that refuses the cached record still does not bring the fallback.
	_, err = c.Pick("plc", client.WithMeta("line", "3"), client.AllowStale())
	if !errors.Is(err, client.ErrNoneLive) || strings.Contains(err.Error(), "fallback") {
		t.Errorf("filtered: %v, want ErrNoneLive without fallback", err)
	}
}

// TestFallbackOptionsChecked: New refuses fallbacks without a service or transport,
// or of a service the client does not subscribe to.
func TestFallbackOptionsChecked(t *testing.T) {
	ep := contract.Endpoint{Transport: "tcp", Host: "10.0.0.1", Port: 1}
	for _, tc := range []struct {
		fb       client.Fallback
		services []string
		want     string
	}{
		{client.Fallback{Endpoint: ep}, nil, "no service"},
		{client.Fallback{Service: "plc"}, nil, "transport"},
		{client.Fallback{Service: "plc", Endpoint: ep}, []string{"servo-drive"}, "not in Options.Services"},
	} {
		_, err := client.New(client.Options{Brokers: []string{unreachableBroker}, Services: tc.services, Fallback: []client.Fallback{tc.fb}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New with fallback %+v (services %v): %v, want an error mentioning %q", tc.fb, tc.services, err, tc.want)
		}
	}
	if _, err := client.New(client.Options{Brokers: []string{unreachableBroker}, Services: []string{"PLC"},
		Fallback: []client.Fallback{{Service: "plc", Endpoint: ep}}}); err != nil {
		t.Errorf("fallback of a subscribed service (slugged): %v", err)
	}
}
