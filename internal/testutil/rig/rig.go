// Package rig runs a firmware-sim simulator and rollcall gateways in-process for one
// test: the one gateway-plus-simulator harness of the test suites (gateway,
// registry/client, cmd/rollcall, examples). Everything a Rig starts stops, and is
// waited for, in t.Cleanup.
//
// A typical test:
//
//	r := rig.New(t)
//	s := r.StartSim(1, 2) // bus1: drives at units 1 and 2, serials SIM-0001, SIM-0002
//	g := r.StartGateway("embedded", `
//	discovery:
//	  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-4"}]
//	health: {poll_interval: 50ms}
//	`)
//	rig.WaitCatalog(t, g, 15*time.Second, "2 passing drives", rig.Passing(2))
//	_ = s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultSilent})
//
// Timing: gateway configs in tests should leave reply timeouts at the product's
// defaults (or derive them from a published detect_budget_ms), so that a machine
// starved of CPU does not turn a healthy simulated drive into a failed poll; see
// DetectBudget and WaitAnswering for assertions that hold under load.
package rig

import (
	"context"
	"crypto/ed25519"
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
	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/internal/testutil"
)

// DefaultGatewayID is the id of a Rig's gateways unless Rig.GatewayID says otherwise.
const DefaultGatewayID = "it-gw"

// Rig is a simulator and gateways run in-process for one test; see the package
// documentation. Set its exported fields before starting what they configure.
type Rig struct {
	// Dir is the test's temporary directory: the bus link, gateway state directories.
	Dir string
	// Log is the logger of what is started afterwards (component=sim or gateway added).
	// Default: Info and above on stderr with -test.v, else nothing.
	Log *slog.Logger
	// GatewayID is the id of the gateways started afterwards. Default DefaultGatewayID.
	GatewayID string
	// MQTTExtra is appended inside the gateway config's mqtt mapping, e.g.
	// `, username: it-gw, password_file: /x`.
	MQTTExtra string
	// Sim is the simulator started last, and Link the path of its bus1's link
	// (Dir/bus1), which $LINK stands for in configs.
	Sim  *sim.Sim
	Link string

	t   testing.TB
	ctx context.Context
	wg  *sync.WaitGroup
}

// New returns a Rig whose simulator and gateways run until the test ends: t.Cleanup
// cancels them and waits for every one to return.
func New(t testing.TB) *Rig {
	logw := io.Discard
	if testing.Verbose() {
		logw = os.Stderr
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Rig{
		Dir:       t.TempDir(),
		Log:       slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo})),
		GatewayID: DefaultGatewayID,
		t:         t,
		ctx:       ctx,
		wg:        &sync.WaitGroup{},
	}
	r.Link = filepath.Join(r.Dir, "bus1")
	t.Cleanup(func() { cancel(); r.wg.Wait() })
	return r
}

// StartSim starts one bus "bus1" at 115200 baud (1 ms turnaround) with a drive at each
// given unit, serial SIM-<unit as 4 digits>.
func (r *Rig) StartSim(units ...int) *sim.Sim {
	r.t.Helper()
	serials := make(map[int]string, len(units))
	for _, u := range units {
		serials[u] = fmt.Sprintf("SIM-%04d", u)
	}
	return r.StartSimSerials(serials)
}

// StartSimSerials is StartSim with the serial of each unit given (unit → serial).
func (r *Rig) StartSimSerials(serials map[int]string) *sim.Sim {
	r.t.Helper()
	var b strings.Builder
	b.WriteString("buses:\n  - name: bus1\n    link: $LINK\n    baud: 115200\n    turnaround: 1ms\n    drives:\n")
	units := make([]int, 0, len(serials))
	for u := range serials {
		units = append(units, u)
	}
	slices.Sort(units)
	for _, u := range units {
		fmt.Fprintf(&b, "      - {unit: %d, serial: %q}\n", u, serials[u])
	}
	return r.StartSimYAML(b.String())
}

// StartSimYAML starts a simulator from its YAML config, in which $LINK stands for
// Link. It fails the test if the config is invalid or the simulator cannot start.
func (r *Rig) StartSimYAML(text string) *sim.Sim {
	r.t.Helper()
	cfg, err := sim.ParseConfig("sim.yaml", []byte(strings.ReplaceAll(text, "$LINK", r.Link)))
	if err != nil {
		r.t.Fatal(err)
	}
	s, err := sim.New(cfg, r.Log.With("component", "sim"))
	if err != nil {
		r.t.Fatal(err)
	}
	if err := s.Start(r.ctx); err != nil {
		r.t.Fatal(err)
	}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); _ = s.Wait() }()
	r.Sim = s
	return s
}

// EmbeddedUser gives the embedded broker of the gateways started next one configured
// account (mqtt.embedded_auth.users, with its default topic rights): its password is
// written to a file in Dir, and MQTTExtra is set to name it.
func (r *Rig) EmbeddedUser(username, password string) {
	r.t.Helper()
	pw := filepath.Join(r.Dir, username+".pw")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		r.t.Fatal(err)
	}
	r.MQTTExtra = fmt.Sprintf(", embedded_auth: {users: [{username: %s, password_file: %s}]}", username, pw)
}

// StartGateway starts a gateway and returns it once it has started; it runs until the
// test ends. See RunGateway for the config.
func (r *Rig) StartGateway(broker, extra string) *gateway.Gateway {
	r.t.Helper()
	g, _ := r.RunGateway(broker, extra)
	return g
}

// RunGateway starts a gateway whose config is extra (YAML, expanded by Expand) after
// a header naming the gateway GatewayID, its state directory Dir/state-<id>, the broker
// ("embedded", a URL, or comma-separated URLs of a cluster's nodes, given as
// mqtt.brokers; an embedded broker listens on a free loopback port) and
// MQTTExtra. It returns once the gateway has started, with a function that shuts it down
// cleanly and waits for it (idempotent). Stopping and running again with the same id is
// a restart: same state directory, so the epoch goes up.
func (r *Rig) RunGateway(broker, extra string) (*gateway.Gateway, func()) {
	r.t.Helper()
	cfg, err := config.Parse("gateway.yaml", []byte(r.GatewayConfig(broker, extra)))
	if err != nil {
		r.t.Fatal(err)
	}
	g, err := gateway.New(gateway.Options{Config: cfg, Logger: r.Log.With("component", "gateway"), Version: "test"})
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

// GatewayConfig is the text of the config RunGateway gives a gateway: a header naming
// GatewayID, its state directory, the broker and MQTTExtra, then extra expanded (Expand).
// A test that reloads a running gateway (Gateway.Reload) writes its new config with it.
func (r *Rig) GatewayConfig(broker, extra string) string {
	id := r.GatewayID
	brokerKey := fmt.Sprintf("broker: %q", broker)
	if strings.Contains(broker, ",") { // a cluster's nodes
		var q []string
		for _, b := range strings.Split(broker, ",") {
			q = append(q, fmt.Sprintf("%q", b))
		}
		brokerKey = fmt.Sprintf("brokers: [%s]", strings.Join(q, ", "))
	}
	return fmt.Sprintf("gateway: {id: %s, state_dir: %s}\nmqtt: {%s, embedded_listen: \"127.0.0.1:0\"%s}\n%s",
		id, filepath.Join(r.Dir, "state-"+id), brokerKey, r.MQTTExtra, r.Expand(extra))
}

// Expand replaces $LINK with Link and $ADDR(name) with the address of the simulator's
// TCP listener name.
func (r *Rig) Expand(text string) string {
	text = strings.ReplaceAll(text, "$LINK", r.Link)
	for {
		i := strings.Index(text, "$ADDR(")
		if i < 0 {
			return text
		}
		j := strings.Index(text[i:], ")")
		if j < 0 || r.Sim == nil {
			r.t.Fatalf("rig: cannot expand %q (no simulator, or no closing parenthesis)", text[i:])
		}
		name := text[i+6 : i+j]
		text = text[:i] + r.Sim.ListenerAddr(name) + text[i+j+1:]
	}
}

// WaitCatalog polls the gateway's registry until cond holds for its snapshot and
// returns that snapshot; at the deadline it fails the test, showing the last snapshot.
func WaitCatalog(t testing.TB, g *gateway.Gateway, deadline time.Duration, what string, cond func([]contract.Record) bool) []contract.Record {
	t.Helper()
	return testutil.EventuallyValue(t, deadline, what, func() ([]contract.Record, bool) {
		snap := g.Registry().Snapshot()
		return snap, cond(snap)
	})
}

// HostTiming is the timing of a discovery.serial bus (entries of its YAML flow map)
// whose simulated drives run on the gateway's own host, where detection speed is not
// what is shown: a fixed 250 ms reply timeout and 60 ms of silence to end a reply. A
// busy host (packages run side by side under -race, or other work) can hold a
// simulator's reply up past an adaptive timeout (the drive turns critical) or pause it
// mid-frame past a pseudo-terminal's default frame gap of t3.5 + 10 ms (garbled: the
// drive turns warning for its link, and is not picked). A real drive's timing does
// not depend on the gateway's host, so the product keeps its defaults.
const HostTiming = "timeout: 250ms, adaptive_timeout: false, frame_gap: 60ms"

// Passing is a WaitCatalog condition: exactly n instances are passing.
func Passing(n int) func([]contract.Record) bool {
	return func(recs []contract.Record) bool {
		c := 0
		for _, r := range recs {
			if r.Status == contract.Passing {
				c++
			}
		}
		return c == n
	}
}

// StatusIs is a WaitCatalog condition: instance id is live with status st.
func StatusIs(id string, st contract.Status) func([]contract.Record) bool {
	return func(recs []contract.Record) bool {
		r, ok := Instance(recs, id)
		return ok && r.Status == st
	}
}

// Instance returns the record with the given id from a snapshot.
func Instance(snap []contract.Record, id string) (contract.Record, bool) {
	for _, r := range snap {
		if r.ID == id {
			return r, true
		}
	}
	return contract.Record{}, false
}

// DetectBudget is the record's published detect_budget_ms: the gateway's own worst
// case from a device's death to its critical status.
func DetectBudget(rec contract.Record) time.Duration {
	return time.Duration(rec.Check.DetectBudgetMS) * time.Millisecond
}

// DetectFactor is how many times its published detect budget a test lets a detection
// (device death → critical) take. The budget is computed for a gateway that gets the
// CPU when its timers fire; the suite runs on shared 2-core machines next to other
// work, where timer and scheduling delays stretch every poll. A detection beyond
// DetectFactor × budget is still a regression (a fault went unnoticed for several
// budgets); one within it is what the product does on a loaded machine.
const DetectFactor = 4

// WaitAnswering waits until every instance in ids answers its polls now: live, not
// critical, no failed poll pending, and a successful poll after since (a warning status
// is an answer too, e.g. a round trip grown past slow_rtt behind a slow neighbour). At
// the deadline it fails the test with the records it saw last. Tests use it for "a fault
// on one drive does not disturb the others": a bystander that a CPU-starved simulator
// let time out answers again by itself within a few polls, one that the fault keeps
// from answering never satisfies it.
func WaitAnswering(t testing.TB, g *gateway.Gateway, deadline time.Duration, since time.Time, ids ...string) {
	t.Helper()
	what := fmt.Sprintf("%s answering, with a successful poll after %s", strings.Join(ids, ", "), since.Format("15:04:05.000"))
	testutil.EventuallyValue(t, deadline, what, func() ([]contract.Record, bool) {
		recs := make([]contract.Record, 0, len(ids))
		ok := true
		for _, id := range ids {
			rec, found := g.Registry().Get(id)
			recs = append(recs, rec)
			if !found || rec.Status == contract.Critical || rec.Check.Failures != 0 || !rec.LastSeen.After(since) {
				ok = false
			}
		}
		return recs, ok
	})
}

// TrustedKeys returns a key ring holding the public signing key of each gateway id
// given (default: GatewayID) from its state directory, as a consumer given
// `rollcall key`'s output holds it; run the gateway first (it makes its key).
func (r *Rig) TrustedKeys(ids ...string) *contract.KeyRing {
	r.t.Helper()
	if len(ids) == 0 {
		ids = []string{r.GatewayID}
	}
	ring := &contract.KeyRing{}
	for _, id := range ids {
		key, _, err := gateway.LoadOrCreateKey(filepath.Join(r.Dir, "state-"+id))
		if err != nil {
			r.t.Fatal(err)
		}
		ring.Add(id, key.Public().(ed25519.PublicKey))
	}
	return ring
}
