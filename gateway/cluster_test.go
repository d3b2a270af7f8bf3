package gateway_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/natscluster"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// clusterLease is the status lease of the gateways in the cluster tests: a consumer
// takes a silent gateway's instances as unknown at most clusterLease + the default
// clock-skew allowance after its last renewal.
const clusterLease = 2 * time.Second

// quoted joins urls for a YAML flow sequence, each quoted (a plain scalar holding "://"
// is not portable YAML in flow context).
func quoted(urls []string) string {
	q := make([]string, len(urls))
	for i, u := range urls {
		q[i] = fmt.Sprintf("%q", u)
	}
	return strings.Join(q, ", ")
}

// plant is three gateway processes, each with its own simulated bus of two drives and
// each preferring another node of a 3-node NATS cluster; gw-0 and gw-2 also poll the
// same Modbus TCP drive (a redundant pair for a network device). Consumers run on every
// node.
type plant struct {
	cluster   *natscluster.Cluster
	gateways  []*exec.Cmd
	consumers []*client.Client
	shared    string // id of the TCP drive both gw-0 and gw-2 poll
}

// drivesOf returns the ids of gateway i's bus drives.
func drivesOf(i int) []string {
	return []string{fmt.Sprintf("rollcall-firmware-sim-sim-%d01", i), fmt.Sprintf("rollcall-firmware-sim-sim-%d02", i)}
}

func startPlant(t *testing.T) *plant {
	t.Helper()
	p := &plant{cluster: natscluster.Start(t, 3), shared: "rollcall-firmware-sim-sim-0900"}
	shared := rig.New(t)
	shared.StartSimYAML(`
tcp:
  - {name: tcp1, listen: "127.0.0.1:0", drives: [{unit: 1, serial: SIM-0900}]}
`)
	tcpAddr := shared.Sim.ListenerAddr("tcp1")
	bin := buildRollcall(t, t.TempDir())
	for i := range 3 {
		h := rig.New(t)
		h.StartSimSerials(map[int]string{1: fmt.Sprintf("SIM-%d01", i), 2: fmt.Sprintf("SIM-%d02", i)})
		extra := ""
		if i != 1 {
			extra = fmt.Sprintf("  tcp: [{name: shared, address: %q, units: \"1\"}]\n", tcpAddr)
		}
		cfg := fmt.Sprintf(`gateway: {id: gw-%d, state_dir: %s}
mqtt: {brokers: [%s]}
discovery:
  serial: [{name: bus1, device: %s, baud: 115200, units: "1-2"}]
%shealth: {poll_interval: 100ms, status_lease: %v}
`, i, filepath.Join(h.Dir, "state"), quoted(p.cluster.URLsFrom(i)), h.Link, extra, clusterLease)
		path := filepath.Join(h.Dir, "gateway.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		logf, err := os.Create(filepath.Join(h.Dir, "gateway.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "gateway", "--config", path)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			logf.Close()
			if t.Failed() {
				if b, err := os.ReadFile(logf.Name()); err == nil {
					t.Logf("gw-%d log:\n%s", i, b)
				}
			}
		})
		p.gateways = append(p.gateways, cmd)
	}
	for j := range 3 {
		c, err := client.New(client.Options{Brokers: p.cluster.URLsFrom(j), ClientID: fmt.Sprintf("consumer-%d", j),
			Logger: testutil.Logger(t, 0)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = c.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		p.consumers = append(p.consumers, c)
	}
	for j, c := range p.consumers {
		testutil.Eventually(t, 60*time.Second, fmt.Sprintf("consumer %d to see the 7 drives live", j), func() bool {
			return len(c.Live("servo-drive")) == 7
		})
	}
	return p
}

// gapWatch follows consumer c and records the longest time any of ids was not live
// (missing, or refused by Pick's rules) until stop is called.
func gapWatch(c *client.Client, ids []string) (stop func() time.Duration) {
	changes, cancel := c.Subscribe(4096)
	var (
		mu      sync.Mutex
		longest time.Duration
		since   = map[string]time.Time{}
	)
	check := func(now time.Time) {
		live := map[string]bool{}
		for _, in := range c.Live("servo-drive") {
			live[in.ID] = true
		}
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			switch start, gone := since[id]; {
			case !live[id] && !gone:
				since[id] = now
			case live[id] && gone:
				longest = max(longest, now.Sub(start))
				delete(since, id)
			}
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range changes {
			check(time.Now())
		}
	}()
	return func() time.Duration {
		cancel()
		<-done
		now := time.Now()
		check(now)
		mu.Lock()
		defer mu.Unlock()
		for _, start := range since {
			longest = max(longest, now.Sub(start)) // still missing
		}
		return longest
	}
}

// TestNATSClusterNodeLoss: on a real 3-node NATS cluster, the node gw-0 is connected to
// dies. gw-0 fails over to the next node and republishes; at every consumer (the one on
// the dead node fails over too) gw-0's drives are never missing or refused for longer
// than one status lease, the redundant TCP drive stays pickable throughout, and after
// the failover every consumer has all 7 drives again: no record lost.
func TestNATSClusterNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	p := startPlant(t)
	watched := append(drivesOf(0), p.shared)
	var stops []func() time.Duration
	for _, c := range p.consumers {
		stops = append(stops, gapWatch(c, watched))
	}
	lost := time.Now()
	p.cluster.Nodes[0].Shutdown()
	for j, c := range p.consumers {
		testutil.Eventually(t, 30*time.Second, fmt.Sprintf("consumer %d connected to a live node with the 7 drives live", j), func() bool {
			st := c.Status()
			return st.Connected && st.Synced && st.Broker != p.cluster.Nodes[0].MQTTURL() && len(c.Live("servo-drive")) == 7
		})
	}
	took := time.Since(lost)
	budget := clusterLease + contract.DefaultMaxClockSkew
	for j, stop := range stops {
		gap := stop()
		// The consumer on the dead node was cut off itself until it reconnected: while it
		// hears nothing, leases run out in its view, as they must. Its own outage is
		// added to its budget.
		own := time.Duration(0)
		if j == 0 {
			own = max(p.consumers[j].Status().Since.Sub(lost), 0)
		}
		t.Logf("consumer %d: longest gap of gw-0's drives and the shared drive %v (budget: one lease %v + its own outage %v)",
			j, gap.Round(time.Millisecond), budget, own.Round(time.Millisecond))
		if gap > budget+own {
			t.Errorf("consumer %d: gw-0's drives were not live for %v, more than one lease (%v) + its own outage (%v)", j, gap, budget, own)
		}
	}
	for j, c := range p.consumers {
		if in, err := c.Pick("servo-drive", client.WithID(p.shared)); err != nil || len(in.SeenBy) != 2 {
			t.Errorf("consumer %d: shared drive %+v, %v: want it seen by gw-0 and gw-2", j, in.SeenBy, err)
		}
	}
	t.Logf("all consumers back on live nodes with every drive %v after node 0 died", took.Round(time.Millisecond))
}

// TestNATSClusterGatewayKilledWithItsNode: the node gw-1 is connected to dies and gw-1
// is SIGKILLed before it can fail over: no will is sent (the node holding its session
// is gone) and nothing renews its status. Its drives must be unknown at every consumer
// within its status lease (plus the clock-skew allowance), while the other gateways'
// drives, and the shared drive, stay live.
func TestNATSClusterGatewayKilledWithItsNode(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	p := startPlant(t)
	// Stopped first, so that it cannot fail over while its node shuts down (its link to
	// a live node would then drop with the kill, and that node would send its will).
	if err := p.gateways[1].Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	p.cluster.Nodes[1].Shutdown()
	if err := p.gateways[1].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	budget := clusterLease + contract.DefaultMaxClockSkew
	for j, c := range p.consumers {
		testutil.EventuallyNil(t, 4*budget, fmt.Sprintf("consumer %d to drop gw-1's drives", j), func() error {
			for _, in := range c.Live("servo-drive") {
				if in.Gateway == "gw-1" {
					return fmt.Errorf("%s live: gateway %s, valid until %v, expired %v, status %+v", in.ID, in.GatewayState,
						in.ValidUntil, in.Expired, c.Status())
				}
			}
			return nil
		})
		took := time.Since(killed)
		t.Logf("consumer %d: gw-1's drives unknown %v after node 1 died and gw-1 was killed (lease %v + skew %v)",
			j, took.Round(time.Millisecond), clusterLease, contract.DefaultMaxClockSkew)
		if took > budget+time.Second { // one more second: the consumer's 100 ms expiry scan and the node's failover
			t.Errorf("consumer %d: %v to drop a dead gateway's drives, more than its lease %v", j, took, budget)
		}
	}
	for j, c := range p.consumers {
		testutil.Eventually(t, 30*time.Second, fmt.Sprintf("consumer %d: the other 5 drives live", j), func() bool {
			return len(c.Live("servo-drive")) == 5
		})
		if _, err := c.Pick("servo-drive", client.WithID(p.shared)); err != nil {
			t.Errorf("consumer %d: the shared drive is not pickable: %v", j, err)
		}
	}
	// Now one of the redundant pair dies too (SIGKILL; its node lives, so its will
	// fires): the shared drive must stay pickable at every consumer without a gap.
	var stops []func() time.Duration
	for _, c := range p.consumers {
		stops = append(stops, gapWatch(c, []string{p.shared}))
	}
	if err := p.gateways[2].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for j, c := range p.consumers {
		testutil.Eventually(t, 4*budget, fmt.Sprintf("consumer %d to drop gw-2's own drives", j), func() bool {
			return len(c.Live("servo-drive")) == 3 // gw-0's two and the shared one
		})
	}
	for j, stop := range stops {
		if gap := stop(); gap > 0 {
			t.Errorf("consumer %d: the shared drive was not pickable for %v after one of its two gateways died", j, gap)
		}
		if in, err := p.consumers[j].Pick("servo-drive", client.WithID(p.shared)); err != nil || in.Gateway != "gw-0" {
			t.Errorf("consumer %d: shared drive after gw-2 died: %+v, %v", j, in.SeenBy, err)
		}
	}
}
