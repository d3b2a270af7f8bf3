package client_test

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
	"github.com/rollcall-edge/rollcall/internal/testutil/tcpproxy"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// gatewayYAML polls units 1–2 of bus1 every 50 ms (the product's default reply timeout,
// critical after 3 failures); both drives are in axis group A of cell 2.
const gatewayYAML = `
discovery:
  serial:
    - name: bus1
      device: $LINK
      baud: 115200
      units: "1-2"
      meta: {cell: "2"}
      devices:
        - {unit: 1, meta: {axis_group: A}}
        - {unit: 2, meta: {axis_group: A}}
health:
  poll_interval: 50ms
  failures_before_critical: 3
  successes_before_passing: 2
  deregister_critical_after: 30s
  restart_grace: 1s
`

// newRig returns a rig (internal/testutil/rig) whose bus1 has a drive per unit → serial.
func newRig(t *testing.T, serials map[int]string) *rig.Rig {
	r := rig.New(t)
	r.Log = testutil.Logger(t, slog.LevelInfo)
	r.StartSimSerials(serials)
	return r
}

// runGateway starts gateway id of r on broker with gatewayYAML; stop shuts it down
// cleanly (status offline) and waits for it. A second runGateway with the same id is a
// restart: the epoch goes up.
func runGateway(r *rig.Rig, id, broker string) (*gateway.Gateway, func()) {
	r.GatewayID = id
	return r.RunGateway(broker, gatewayYAML)
}

const (
	simDrive1 = "rollcall-firmware-sim-sim-0001"
	simDrive2 = "rollcall-firmware-sim-sim-0002"
)

// follow re-checks the invariants of Pick on every catalog change until cond holds
// (failing the test after waitFor), and returns how many changes it saw.
func follow(t *testing.T, c *client.Client, changes <-chan client.Change, what string, cond func() bool) int {
	t.Helper()
	deadline := timer(t, waitFor)
	n := 0
	for {
		checkInvariants(t, c, "servo-drive")
		if cond() {
			return n
		}
		select {
		case _, ok := <-changes:
			if !ok {
				t.Fatal("changes channel closed")
			}
			n++
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s; catalog %+v", waitFor, what, c.Instances(""))
		}
	}
}

// pickOnly picks 10 times and fails the test if Pick returns anything but id. Pick may
// find nothing live when id itself went critical for a moment (a CPU-starved simulator
// leaves it unanswered), but it must succeed at least once.
func pickOnly(t *testing.T, c *client.Client, service, id string, opts ...client.PickOption) {
	t.Helper()
	ok := 0
	var lastErr error
	for range 10 {
		in, err := c.Pick(service, opts...)
		if err != nil {
			lastErr = err
			continue
		}
		if in.ID != id {
			t.Fatalf("Pick returned %s/%s (%s), want only %s", in.Gateway, in.ID, in.Status, id)
		}
		ok++
	}
	if ok == 0 {
		t.Fatalf("Pick never returned %s in 10 tries: %v", id, lastErr)
	}
}

// instance returns the catalog entry of gateway gw and id.
func instance(c *client.Client, gw, id string) (client.Instance, bool) {
	for _, in := range c.Instances("") {
		if in.Gateway == gw && in.ID == id {
			return in, true
		}
	}
	return client.Instance{}, false
}

func statusIs(c *client.Client, gw, id string, st contract.Status) func() bool {
	return func() bool { in, ok := instance(c, gw, id); return ok && in.Status == st }
}

// TestRealGatewayPickRules runs firmware-sim and a real gateway against Mosquitto: a
// drive that goes silent (critical), one in CiA 402 fault (warning), the gateway's
// clean shutdown (offline) and its restart (new epoch, records of the old epoch
// still retained until the gateway confirms them). After every catalog change, Pick
// and Live are checked never to return what they must not.
func TestRealGatewayPickRules(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	m := mosquitto.Start(t)
	r := newRig(t, map[int]string{1: "SIM-0001", 2: "SIM-0002"})
	c, _ := runClient(t, client.Options{Brokers: []string{m.URL()}, Services: []string{"servo-drive"}})
	changes, cancel := c.Subscribe(1024)
	defer cancel()
	const svc, gw = "servo-drive", "it-gw"
	g, stopGW := runGateway(r, gw, m.URL())
	epoch1 := g.Epoch()

	follow(t, c, changes, "two live drives", func() bool { return len(c.Live(svc)) == 2 })
	for _, in := range c.Live(svc) {
		if in.Epoch != epoch1 || in.GatewayEpoch != epoch1 || in.GatewayState != client.GatewayOnline || in.Meta["axis_group"] != "A" {
			t.Errorf("%s: epoch %d gateway %s epoch %d meta %v", in.ID, in.Epoch, in.GatewayState, in.GatewayEpoch, in.Meta)
		}
	}

	// Drive 1 silent: critical; Pick gives drive 2 only.
	if err := r.Sim.SetFault("bus1", 1, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	follow(t, c, changes, "drive 1 critical, drive 2 live", func() bool {
		return statusIs(c, gw, simDrive1, contract.Critical)() && len(c.Live(svc)) == 1
	})
	mustRefuse(t, c, svc, []string{"1 critical"}, client.WithID(simDrive1), client.AllowWarning(), client.AllowStale())
	pickOnly(t, c, svc, simDrive2)
	if err := r.Sim.SetFault("bus1", 1, slave.Fault{Mode: slave.FaultNone}); err != nil {
		t.Fatal(err)
	}
	follow(t, c, changes, "drive 1 back", func() bool { return len(c.Live(svc)) == 2 })

	// Drive 2 in CiA 402 fault: warning, only with AllowWarning.
	if err := r.Sim.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultDevice}); err != nil {
		t.Fatal(err)
	}
	follow(t, c, changes, "drive 2 warning", statusIs(c, gw, simDrive2, contract.Warning))
	mustRefuse(t, c, svc, []string{"1 warning"}, client.WithID(simDrive2))
	if in := mustPick(t, c, svc, client.WithID(simDrive2), client.AllowWarning()); in.State["fault"] != true {
		t.Errorf("warning drive state %v", in.State)
	}
	if err := r.Sim.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultNone}); err != nil {
		t.Fatal(err)
	}
	follow(t, c, changes, "drive 2 passing", func() bool { return len(c.Live(svc)) == 2 })

	// Clean shutdown: status offline; the retained records still say passing, but the
	// instances of an offline gateway are unknown, not live.
	stopGW()
	follow(t, c, changes, "gateway offline", func() bool {
		in, ok := instance(c, gw, simDrive1)
		return ok && in.GatewayState == client.GatewayOffline
	})
	mustRefuse(t, c, svc, []string{"2 known: 2 gateway offline"}, client.AllowWarning(), client.AllowStale())
	for _, in := range c.Instances(svc) {
		if in.Status != contract.Passing {
			t.Errorf("%s: retained status %s, expected the last passing record", in.ID, in.Status)
		}
	}

	// Restart: epoch + 1. Its status comes first; the old epoch's records do not
	// qualify until the gateway republishes them in the new epoch.
	g, _ = runGateway(r, gw, m.URL())
	epoch2 := g.Epoch()
	if epoch2 != epoch1+1 {
		t.Fatalf("epoch after restart %d, want %d", epoch2, epoch1+1)
	}
	refusedOld := 0
	follow(t, c, changes, "both drives live in the new epoch", func() bool {
		for _, in := range c.Instances(svc) {
			if in.GatewayEpoch == epoch2 && in.Epoch < epoch2 {
				refusedOld++
				// The new epoch's record may arrive between Instances and Pick: then Pick may
				// return it, never the old one.
				if got, err := c.Pick(svc, client.WithID(in.ID), client.AllowWarning(), client.AllowStale()); err == nil && got.Epoch < got.GatewayEpoch {
					t.Errorf("picked %s of epoch %d after the gateway's epoch %d was known", got.ID, got.Epoch, got.GatewayEpoch)
				}
			}
		}
		live := c.Live(svc)
		return len(live) == 2 && live[0].Epoch == epoch2 && live[1].Epoch == epoch2
	})
	t.Logf("epochs %d → %d; %d checks saw an old-epoch record under the new gateway epoch, each refused", epoch1, epoch2, refusedOld)
}

// TestFailoverSilentDrive measures the failover time: two drives of axis group A on a
// real gateway; the one picked goes silent; how long until Pick (WithMeta axis_group=A)
// returns the other one, and only it.
func TestFailoverSilentDrive(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	m := mosquitto.Start(t)
	r := newRig(t, map[int]string{1: "SIM-0001", 2: "SIM-0002"})
	runGateway(r, "it-gw", m.URL())
	c, _ := runClient(t, client.Options{Brokers: []string{m.URL()}, Services: []string{"servo-drive"}})
	const svc = "servo-drive"
	groupA := client.WithMeta("axis_group", "A")
	changes, cancel := c.Subscribe(1024)
	defer cancel()
	follow(t, c, changes, "both drives live", func() bool { return len(c.Live(svc, groupA)) == 2 })

	victim := mustPick(t, c, svc, groupA)
	other := simDrive1
	if victim.ID == simDrive1 {
		other = simDrive2
	}
	silent := time.Now()
	if err := r.Sim.SetFault("bus1", victim.Endpoint.Unit, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	follow(t, c, changes, "the silent drive to be refused", func() bool {
		_, err := c.Pick(svc, groupA, client.WithID(victim.ID))
		return err != nil
	})
	failover := time.Since(silent)
	follow(t, c, changes, other+" live", func() bool { return len(c.Live(svc, groupA, client.WithID(other))) == 1 })
	pickOnly(t, c, svc, other, groupA)
	in, _ := instance(c, "it-gw", victim.ID)
	t.Logf("failover: drive %s (unit %d) silent → Pick(axis_group=A) returns only %s after %v "+
		"(poll 50 ms, default timeout, 3 failures; record's detect_budget_ms %d; victim now %s)",
		victim.ID, victim.Endpoint.Unit, other, failover.Round(time.Millisecond), victim.Check.DetectBudgetMS, in.Status)
	// The failover follows the gateway's detection (plus one broker hop): within the
	// published detect budget, with the suite's margin for a loaded machine.
	if budget := time.Duration(victim.Check.DetectBudgetMS) * time.Millisecond; failover > rig.DetectFactor*budget {
		t.Errorf("failover took %v, more than %d × the published detect budget %v", failover, rig.DetectFactor, budget)
	}
}

// TestTwoRealGatewaysMerged: two gateways, each with its own simulated bus, publish
// servo-drive; one drive id exists on both (same vendor and serial: to the contract, the
// same device). The client merges the pools and the shared device into one instance
// seen by both; when one gateway stops, the shared device stays pickable through the
// other.
func TestTwoRealGatewaysMerged(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	m := mosquitto.Start(t)
	ra := newRig(t, map[int]string{1: "SIM-0001", 2: "SIM-0002"})
	rb := newRig(t, map[int]string{1: "SIM-0001", 2: "SIM-0003"})
	_, stopA := runGateway(ra, "gw-a", m.URL())
	runGateway(rb, "gw-b", m.URL())
	c, _ := runClient(t, client.Options{Brokers: []string{m.URL()}})
	const svc = "servo-drive"
	const simDrive3 = "rollcall-firmware-sim-sim-0003"
	changes, cancel := c.Subscribe(1024)
	defer cancel()
	follow(t, c, changes, "three live drives, one seen by both gateways", func() bool {
		live := c.Live(svc)
		return len(live) == 3 && slices.Equal(live[0].SeenBy, []string{"gw-a", "gw-b"})
	})
	want := []string{simDrive1, simDrive2, simDrive3}
	var got []string
	for _, in := range c.Live(svc) {
		got = append(got, in.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("merged catalog %v, want %v", got, want)
	}
	// Round robin: 3 picks return each of the 3 drives once. (A drive that a CPU-starved
	// simulator let go critical meanwhile is rightly skipped: only the drives live
	// before and after the picks must all have been picked.)
	liveIDs := func() []string {
		var out []string
		for _, in := range c.Live(svc) {
			out = append(out, in.ID)
		}
		return out
	}
	before := liveIDs()
	seen := map[string]bool{}
	for range 3 {
		if in, err := c.Pick(svc, client.WithMeta("axis_group", "A")); err == nil {
			seen[in.ID] = true
		}
	}
	after := liveIDs()
	for _, id := range before {
		if slices.Contains(after, id) && !seen[id] {
			t.Errorf("round robin over two gateways saw %v, not %s (live before and after)", seen, id)
		}
	}
	if in := mustPick(t, c, svc, client.WithID(simDrive1), client.WithGateway("gw-b")); in.Gateway != "gw-b" {
		t.Errorf("WithGateway gw-b returned %s", in.Gateway)
	}
	// gw-a shuts down: its own drive goes; the shared one is still picked, from gw-b.
	stopA()
	follow(t, c, changes, "gw-a offline", func() bool { return len(c.Live(svc)) == 2 })
	for range 4 {
		if in, err := c.Pick(svc); err == nil && in.Gateway != "gw-b" {
			t.Errorf("picked %s/%s of the offline gateway", in.Gateway, in.ID)
		}
	}
	if in := mustPick(t, c, svc, client.WithID(simDrive1)); in.Gateway != "gw-b" || !slices.Equal(in.SeenBy, []string{"gw-b"}) {
		t.Errorf("shared drive after gw-a stopped: gateway %s, seen by %v", in.Gateway, in.SeenBy)
	}
}

// TestLeaseExpiresWhenGatewayVanishes: the gateway's link to the broker goes silent (a
// frozen link: the broker notices nothing, so no will fires before 1.5 × the keep-alive,
// 7.5 s). The consumer must stop picking its drives once the status lease (2 s here, plus
// the default 1 s clock-skew allowance) has run out, while the retained status still says
// "online", and report the expiry to subscribers.
func TestLeaseExpiresWhenGatewayVanishes(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	const statusLease = 2 * time.Second
	m := mosquitto.Start(t)
	proxy := tcpproxy.Start(t, m.Addr())
	r := newRig(t, map[int]string{1: "SIM-0001", 2: "SIM-0002"})
	r.GatewayID = "gw-lease"
	r.RunGateway(proxy.URL(), gatewayYAML+"  status_lease: 2s\n")
	c, _ := runClient(t, client.Options{Brokers: []string{m.URL()}})
	const svc = "servo-drive"
	changes, cancel := c.Subscribe(1024)
	defer cancel()
	follow(t, c, changes, "two live drives", func() bool { return len(c.Live(svc)) == 2 })

	frozen := time.Now()
	if n := proxy.Freeze(); n == 0 {
		t.Fatal("no gateway link to freeze")
	}
	budget := 2 * (statusLease + contract.DefaultMaxClockSkew) // the published lease, with a factor of 2
	expired := testutil.EventuallyValue(t, budget, "the drives unknown (lease expired)", func() (client.Instance, bool) {
		ins := c.Instances(svc)
		for _, in := range ins {
			if !in.Expired {
				return in, false
			}
		}
		return ins[0], len(ins) == 2
	})
	took := time.Since(frozen)
	if expired.GatewayState != client.GatewayOnline {
		t.Fatalf("gateway state %q when the lease expired: the will fired first, the lease was not tested", expired.GatewayState)
	}
	if _, err := c.Pick(svc); !errors.Is(err, client.ErrNoneLive) || !strings.Contains(err.Error(), "lease expired") {
		t.Fatalf("Pick after the lease expired: %v, want ErrNoneLive naming the expired lease", err)
	}
	// Subscribers hear of it too (the client looks for expired leases every 100 ms).
	deadline := timer(t, waitFor)
	for sawExpiry := false; !sawExpiry; {
		select {
		case ch := <-changes:
			sawExpiry = ch.Kind == client.Updated && ch.Instance.Expired
		case <-deadline:
			t.Fatal("no Updated change reported the expiry")
		}
	}
	t.Logf("drives unknown at the consumer %v after the gateway's link froze (status lease %v + skew %v)", took.Round(time.Millisecond),
		statusLease, contract.DefaultMaxClockSkew)
}
