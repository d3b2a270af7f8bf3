package client_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// TestCacheSurvivesOutageAndRestart: during a broker outage Pick answers from memory
// (Age growing, Stale only with StaleAfter); a controller restarted while the broker
// is down answers from the cache file with AllowStale only (Stale, Age > 0); once the
// broker is back, confirmed entries become fresh and those it no longer has disappear.
func TestCacheSurvivesOutageAndRestart(t *testing.T) {
	m := mosquitto.StartPersistent(t)
	const svc = "servo-drive"
	dir := t.TempDir()
	cache := filepath.Join(dir, "catalog.json")
	a1 := drive("gw1", 1, "drive-a", 1, contract.Passing, 1.5, 1, "axis", "1")
	b1 := drive("gw1", 1, "drive-b", 2, contract.Passing, 1.7, 1, "axis", "2")
	if err := publish(m.URL(), gatewayMsg("gw1", "online", 1), instanceMsg(a1), instanceMsg(b1)); err != nil {
		t.Fatal(err)
	}
	fast := client.Options{Brokers: []string{m.URL()}, CacheFile: cache, CacheInterval: 50 * time.Millisecond,
		KeepAlive: time.Second, MaxReconnectInterval: 200 * time.Millisecond}
	c1, stop1 := runClient(t, fast)
	strict := fast
	strict.CacheFile, strict.StaleAfter = "", 100*time.Millisecond
	c3, _ := runClient(t, strict)
	waitReady(t, c1)
	waitReady(t, c3)
	if in := mustPick(t, c1, svc, client.WithID("drive-a")); in.Stale || in.Age != 0 {
		t.Fatalf("fresh pick: Stale %v Age %v", in.Stale, in.Age)
	}

	// Broker outage: Pick still answers from memory.
	down := time.Now()
	m.Stop()
	testutil.Eventually(t, waitFor, "client noticing the outage", func() bool { return !c1.Status().Connected })
	in := mustPick(t, c1, svc, client.WithID("drive-a"))
	if in.Stale || in.Age <= 0 || in.GatewayState != client.GatewayOnline {
		t.Errorf("pick during outage: Stale %v Age %v gateway %s; want not stale, Age > 0, online", in.Stale, in.Age, in.GatewayState)
	}
	t.Logf("outage noticed %v after the broker stopped; Pick answers from memory, Age %v", time.Since(down), in.Age)
	// With StaleAfter, entries unconfirmed for longer count as stale.
	testutil.Eventually(t, waitFor, "StaleAfter to pass", func() bool {
		_, err := c3.Pick(svc, client.WithID("drive-a"))
		return errors.Is(err, client.ErrNoneLive)
	})
	mustRefuse(t, c3, svc, []string{"1 stale"}, client.WithID("drive-a"))
	if in := mustPick(t, c3, svc, client.WithID("drive-a"), client.AllowStale()); !in.Stale || in.Age <= 100*time.Millisecond {
		t.Errorf("StaleAfter pick: Stale %v Age %v", in.Stale, in.Age)
	}

	// The broker comes back: the catalog is confirmed again.
	m.Restart()
	testutil.Eventually(t, waitFor, "resynchronisation", func() bool { s := c1.Status(); return s.Connected && s.Synced })
	if in := mustPick(t, c1, svc, client.WithID("drive-a")); in.Stale || in.Age != 0 {
		t.Errorf("after reconnection: Stale %v Age %v", in.Stale, in.Age)
	}
	if _, err := c3.Wait(waitCtx(t), svc, client.WithID("drive-a")); err != nil {
		t.Errorf("StaleAfter client after reconnection: %v", err)
	}

	// The controller stops: the cache file is written on the way out.
	if err := stop1(); err != nil {
		t.Fatal(err)
	}
	checkCacheFile(t, cache, []string{"drive-a", "drive-b"})

	// While no controller runs, the gateway deregisters drive-b and updates drive-a;
	// then the broker goes down again.
	a2 := a1
	a2.Revision++
	a2.Check.RTTMS = 1.1
	if err := publish(m.URL(), instanceMsg(a2), clearMsg(svc, "gw1", "drive-b")); err != nil {
		t.Fatal(err)
	}
	m.Stop()

	// Restart of the controller with the broker down: the cached catalog, stale.
	c2, _ := runClient(t, fast)
	if s := c2.Status(); s.Connected || s.Instances != 2 {
		t.Fatalf("restarted client: %+v, want disconnected with 2 cached instances", s)
	}
	mustRefuse(t, c2, svc, []string{"2 known: 2 stale"})
	for _, id := range []string{"drive-a", "drive-b"} {
		in := mustPick(t, c2, svc, client.WithID(id), client.AllowStale())
		if !in.Stale || in.Age <= 0 || in.GatewayState != client.GatewayOnline || in.Check.RTTMS != map[string]float64{"drive-a": 1.5, "drive-b": 1.7}[id] {
			t.Errorf("cached %s: Stale %v Age %v gateway %s rtt %v", id, in.Stale, in.Age, in.GatewayState, in.Check.RTTMS)
		}
		t.Logf("cached %s: Stale %v, Age %v", id, in.Stale, in.Age)
	}
	changes, cancel := c2.Subscribe(64)
	defer cancel()

	// The broker is back: drive-a is confirmed (and updated), drive-b is gone.
	m.Restart()
	in, err := c2.Wait(waitCtx(t), svc, client.WithID("drive-a"))
	if err != nil {
		t.Fatal(err)
	}
	if in.Stale || in.Revision != a2.Revision || in.Check.RTTMS != 1.1 {
		t.Errorf("confirmed drive-a: Stale %v revision %d rtt %v; want fresh, %d, 1.1", in.Stale, in.Revision, in.Check.RTTMS, a2.Revision)
	}
	ch := nextChange(t, changes, func(ch client.Change) bool { return ch.Kind == client.Removed })
	if ch.Instance.ID != "drive-b" {
		t.Errorf("removed %s, want drive-b", ch.Instance.ID)
	}
	if got := ids(c2.Instances("")); !slices.Equal(got, []string{"gw1/drive-a"}) {
		t.Errorf("catalog after resynchronisation %v, want only gw1/drive-a", got)
	}
	mustRefuse(t, c2, svc, []string{"1 known: 1 not matching the filters"}, client.WithID("drive-b"), client.AllowStale())
	// The periodic write catches up with the resynchronised catalog.
	testutil.Eventually(t, waitFor, "cache file rewritten", func() bool {
		f, err := readCache(cache)
		return err == nil && len(f.Instances) == 1
	})
}

type cacheDoc struct {
	Schema    string `json:"schema"`
	Prefix    string `json:"prefix"`
	Instances []struct {
		Topic     string          `json:"topic"`
		Confirmed time.Time       `json:"confirmed"`
		Record    contract.Record `json:"record"`
	} `json:"instances"`
	Gateways []struct {
		Topic string `json:"topic"`
	} `json:"gateways"`
}

func readCache(path string) (cacheDoc, error) {
	var f cacheDoc
	b, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	return f, json.Unmarshal(b, &f)
}

// checkCacheFile checks the cache's content and that no temporary file was left behind.
func checkCacheFile(t *testing.T, path string, wantIDs []string) {
	t.Helper()
	f, err := readCache(path)
	if err != nil {
		t.Fatalf("cache file: %v", err)
	}
	var got []string
	for _, in := range f.Instances {
		got = append(got, in.Record.ID)
		if in.Confirmed.IsZero() {
			t.Errorf("cache entry %s without confirmation time", in.Topic)
		}
	}
	if f.Schema != client.CacheSchema || f.Prefix != "rollcall/v1" || !slices.Equal(got, wantIDs) || len(f.Gateways) != 1 {
		t.Errorf("cache file: schema %q prefix %q instances %v gateways %d", f.Schema, f.Prefix, got, len(f.Gateways))
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if e.Name() != filepath.Base(path) {
			t.Errorf("stray file %s next to the cache", e.Name())
		}
	}
}

// TestCacheFileProblems: a malformed cache is ignored, a missing directory is an error.
func TestCacheFileProblems(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Options{Brokers: []string{"tcp://127.0.0.1:1"}, CacheFile: bad, Logger: testutil.Logger(t, slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	if n := c.Status().Instances; n != 0 {
		t.Errorf("malformed cache gave %d instances", n)
	}
	if _, err := client.New(client.Options{Brokers: []string{"tcp://127.0.0.1:1"}, CacheFile: filepath.Join(dir, "nope", "c.json")}); err == nil {
		t.Error("New accepted a cache file in a missing directory")
	}
	for _, o := range []client.Options{
		{},
		{Brokers: []string{"http://127.0.0.1:1"}},
		{Brokers: []string{"tcp://"}},
		{Brokers: []string{"tcp://127.0.0.1:1"}, KeepAlive: 500 * time.Millisecond},
		{Brokers: []string{"tcp://127.0.0.1:1"}, CacheInterval: -time.Second},
	} {
		if _, err := client.New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

// TestBrokerFailover: with two brokers listed, the client connects to the first; when
// it stops, the client moves to the second and resynchronises from it (entries only
// the first one had disappear), while Pick keeps answering.
func TestBrokerFailover(t *testing.T) {
	m1, m2 := mosquitto.Start(t), mosquitto.Start(t)
	const svc = "servo-drive"
	common := []retained{gatewayMsg("gw", "online", 2), instanceMsg(drive("gw", 2, "shared", 1, contract.Passing, 1, 1))}
	if err := publish(m1.URL(), append(common, instanceMsg(drive("gw", 2, "only-on-m1", 2, contract.Passing, 1, 1)))...); err != nil {
		t.Fatal(err)
	}
	if err := publish(m2.URL(), common...); err != nil {
		t.Fatal(err)
	}
	c, _ := runClient(t, client.Options{Brokers: []string{m1.URL(), m2.URL()}, KeepAlive: time.Second,
		MaxReconnectInterval: 200 * time.Millisecond})
	waitReady(t, c)
	if s := c.Status(); s.Broker != m1.URL() || s.Instances != 2 {
		t.Fatalf("status %+v, want connected to %s with 2 instances", s, m1.URL())
	}
	changes, cancel := c.Subscribe(16)
	defer cancel()
	stopped := time.Now()
	m1.Stop()
	var picks int
	testutil.Eventually(t, waitFor, "failover to the second broker", func() bool {
		if _, err := c.Pick(svc, client.WithID("shared")); err == nil {
			picks++
		} else {
			t.Errorf("Pick during failover: %v", err)
		}
		s := c.Status()
		return s.Connected && s.Synced && s.Broker == m2.URL()
	})
	t.Logf("broker stopped → resynchronised from %s in %v (%d successful picks meanwhile)", m2.URL(), time.Since(stopped), picks)
	ch := nextChange(t, changes, func(ch client.Change) bool { return ch.Kind == client.Removed })
	if ch.Instance.ID != "only-on-m1" {
		t.Errorf("removed %s, want only-on-m1", ch.Instance.ID)
	}
	if in := mustPick(t, c, svc); in.ID != "shared" || in.Age != 0 || in.Stale {
		t.Errorf("after failover: %s Age %v Stale %v", in.ID, in.Age, in.Stale)
	}
}
