package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/sim"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// rig runs a firmware-sim bus and a rollcall gateway in-process (as gateway's
// harness_test.go does); both stop, and are waited for, in t.Cleanup.
type rig struct {
	t    *testing.T
	dir  string
	log  *slog.Logger
	ctx  context.Context
	wg   *sync.WaitGroup
	sim  *sim.Sim
	link string
}

func newRig(t *testing.T) *rig {
	logw := io.Discard
	if testing.Verbose() {
		logw = os.Stderr
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{t: t, dir: t.TempDir(), ctx: ctx, wg: &sync.WaitGroup{},
		log: slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	t.Cleanup(func() { cancel(); r.wg.Wait() })
	return r
}

// startSim starts bus "bus1" at 115200 baud with a drive per unit → serial.
func (r *rig) startSim(serials map[int]string) {
	r.t.Helper()
	r.link = filepath.Join(r.dir, "bus1")
	var b strings.Builder
	fmt.Fprintf(&b, "buses:\n  - name: bus1\n    link: %s\n    baud: 115200\n    turnaround: 1ms\n    drives:\n", r.link)
	units := make([]int, 0, len(serials))
	for u := range serials {
		units = append(units, u)
	}
	slices.Sort(units)
	for _, u := range units {
		fmt.Fprintf(&b, "      - {unit: %d, serial: %s}\n", u, serials[u])
	}
	cfg, err := sim.ParseConfig("sim.yaml", []byte(b.String()))
	if err != nil {
		r.t.Fatal(err)
	}
	s, err := sim.New(cfg, r.log.With("component", "sim"))
	if err != nil {
		r.t.Fatal(err)
	}
	if err := s.Start(r.ctx); err != nil {
		r.t.Fatal(err)
	}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); _ = s.Wait() }()
	r.sim = s
}

// gatewayYAML polls units 1–2 of bus1 every 50 ms (20 ms timeout, critical after 3
// failures); both drives are in axis group A of cell 2.
const gatewayYAML = `
discovery:
  serial:
    - name: bus1
      device: $LINK
      baud: 115200
      units: "1-2"
      timeout: 20ms
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

// runGateway starts gateway id on broker; stop shuts it down cleanly (status offline)
// and waits for it. A second runGateway with the same id is a restart: the epoch goes up.
func (r *rig) runGateway(id, broker string) (*gateway.Gateway, func()) {
	r.t.Helper()
	text := fmt.Sprintf("gateway: {id: %s, state_dir: %s}\nmqtt: {broker: %q, embedded_listen: \"127.0.0.1:0\"}\n%s",
		id, filepath.Join(r.dir, "state-"+id), broker, strings.ReplaceAll(gatewayYAML, "$LINK", r.link))
	cfg, err := config.Parse("gateway.yaml", []byte(text))
	if err != nil {
		r.t.Fatal(err)
	}
	g, err := gateway.New(gateway.Options{Config: cfg, Logger: r.log.With("component", "gateway", "gateway", id), Version: "test"})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	errc := make(chan error, 1)
	r.wg.Add(1)
	go func() { defer r.wg.Done(); errc <- g.Run(ctx) }()
	select {
	case <-g.Started():
	case err := <-errc:
		cancel()
		r.t.Fatalf("gateway: %v", err)
	}
	var once sync.Once
	return g, func() { once.Do(func() { cancel(); <-errc }) }
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
	r := newRig(t)
	r.startSim(map[int]string{1: "SIM-0001", 2: "SIM-0002"})
	c, _ := runClient(t, client.Options{Brokers: []string{m.URL()}, Services: []string{"servo-drive"}})
	changes, cancel := c.Subscribe(1024)
	defer cancel()
	const svc, gw = "servo-drive", "it-gw"
	g, stopGW := r.runGateway(gw, m.URL())
	epoch1 := g.Epoch()

	follow(t, c, changes, "two live drives", func() bool { return len(c.Live(svc)) == 2 })
	for _, in := range c.Live(svc) {
		if in.Epoch != epoch1 || in.GatewayEpoch != epoch1 || in.GatewayState != client.GatewayOnline || in.Meta["axis_group"] != "A" {
			t.Errorf("%s: epoch %d gateway %s epoch %d meta %v", in.ID, in.Epoch, in.GatewayState, in.GatewayEpoch, in.Meta)
		}
	}

	// Drive 1 silent: critical; Pick gives drive 2 only.
	if err := r.sim.SetFault("bus1", 1, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	follow(t, c, changes, "drive 1 critical", statusIs(c, gw, simDrive1, contract.Critical))
	mustRefuse(t, c, svc, []string{"1 critical"}, client.WithID(simDrive1), client.AllowWarning(), client.AllowStale())
	for range 10 {
		if in := mustPick(t, c, svc); in.ID != simDrive2 {
			t.Fatalf("picked %s while drive 1 is critical", in.ID)
		}
	}
	if err := r.sim.SetFault("bus1", 1, slave.Fault{Mode: slave.FaultNone}); err != nil {
		t.Fatal(err)
	}
	follow(t, c, changes, "drive 1 back", func() bool { return len(c.Live(svc)) == 2 })

	// Drive 2 in CiA 402 fault: warning, only with AllowWarning.
	if err := r.sim.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultDevice}); err != nil {
		t.Fatal(err)
	}
	follow(t, c, changes, "drive 2 warning", statusIs(c, gw, simDrive2, contract.Warning))
	mustRefuse(t, c, svc, []string{"1 warning"}, client.WithID(simDrive2))
	if in := mustPick(t, c, svc, client.WithID(simDrive2), client.AllowWarning()); in.State["fault"] != true {
		t.Errorf("warning drive state %v", in.State)
	}
	if err := r.sim.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultNone}); err != nil {
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
	g, _ = r.runGateway(gw, m.URL())
	epoch2 := g.Epoch()
	if epoch2 != epoch1+1 {
		t.Fatalf("epoch after restart %d, want %d", epoch2, epoch1+1)
	}
	refusedOld := 0
	follow(t, c, changes, "both drives live in the new epoch", func() bool {
		for _, in := range c.Instances(svc) {
			if in.GatewayEpoch == epoch2 && in.Epoch < epoch2 {
				refusedOld++
				if _, err := c.Pick(svc, client.WithID(in.ID), client.AllowWarning(), client.AllowStale()); err == nil {
					t.Errorf("picked %s of epoch %d after the gateway's epoch %d was known", in.ID, in.Epoch, epoch2)
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
	r := newRig(t)
	r.startSim(map[int]string{1: "SIM-0001", 2: "SIM-0002"})
	r.runGateway("it-gw", m.URL())
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
	if err := r.sim.SetFault("bus1", victim.Endpoint.Unit, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	follow(t, c, changes, "the silent drive to be refused", func() bool {
		_, err := c.Pick(svc, groupA, client.WithID(victim.ID))
		return err != nil
	})
	failover := time.Since(silent)
	for range 10 {
		if in := mustPick(t, c, svc, groupA); in.ID != other {
			t.Fatalf("after failover Pick returned %s, want %s", in.ID, other)
		}
	}
	in, _ := instance(c, "it-gw", victim.ID)
	t.Logf("failover: drive %s (unit %d) silent → Pick(axis_group=A) returns only %s after %v "+
		"(poll 50 ms, timeout 20 ms, 3 failures; record's detect_budget_ms %d; victim now %s)",
		victim.ID, victim.Endpoint.Unit, other, failover.Round(time.Millisecond), victim.Check.DetectBudgetMS, in.Status)
}

// TestTwoRealGatewaysMerged: two gateways, each with its own simulated bus, publish
// servo-drive; one drive id exists on both (same vendor and serial). The client merges
// them into one pool, keyed by gateway and id.
func TestTwoRealGatewaysMerged(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	m := mosquitto.Start(t)
	ra, rb := newRig(t), newRig(t)
	ra.startSim(map[int]string{1: "SIM-0001", 2: "SIM-0002"})
	rb.startSim(map[int]string{1: "SIM-0001", 2: "SIM-0003"})
	_, stopA := ra.runGateway("gw-a", m.URL())
	rb.runGateway("gw-b", m.URL())
	c, _ := runClient(t, client.Options{Brokers: []string{m.URL()}})
	const svc = "servo-drive"
	changes, cancel := c.Subscribe(1024)
	defer cancel()
	follow(t, c, changes, "four live drives", func() bool { return len(c.Live(svc)) == 4 })
	want := []string{"gw-a/" + simDrive1, "gw-a/" + simDrive2, "gw-b/" + simDrive1, "gw-b/rollcall-firmware-sim-sim-0003"}
	if got := ids(c.Live(svc)); !slices.Equal(got, want) {
		t.Fatalf("merged catalog %v, want %v", got, want)
	}
	seen := map[string]bool{}
	for range 4 {
		in := mustPick(t, c, svc, client.WithMeta("axis_group", "A"))
		seen[in.Gateway+"/"+in.ID] = true
	}
	if len(seen) != 4 {
		t.Errorf("round robin over two gateways saw %v", seen)
	}
	if in := mustPick(t, c, svc, client.WithID(simDrive1), client.WithGateway("gw-b")); in.Gateway != "gw-b" {
		t.Errorf("WithGateway gw-b returned %s", in.Gateway)
	}
	// gw-a shuts down: only gw-b's drives remain live.
	stopA()
	follow(t, c, changes, "gw-a offline", func() bool { return len(c.Live(svc)) == 2 })
	for range 4 {
		if in := mustPick(t, c, svc); in.Gateway != "gw-b" {
			t.Errorf("picked %s/%s of the offline gateway", in.Gateway, in.ID)
		}
	}
}
