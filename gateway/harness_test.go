package gateway_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/sim"
	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/gateway/config"
)

// harness runs a firmware-sim and a gateway in-process for one test; both stop (and
// are waited for) in t.Cleanup.
type harness struct {
	t    *testing.T
	dir  string
	log  *slog.Logger
	ctx  context.Context
	wg   *sync.WaitGroup
	sim  *sim.Sim
	link string
	// mqttExtra is appended inside the gateway config's mqtt mapping, e.g.
	// `, username: it-gw, password_file: /x`.
	mqttExtra string
}

func newHarness(t *testing.T) *harness {
	logw := io.Discard
	if testing.Verbose() {
		logw = os.Stderr
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, dir: t.TempDir(), ctx: ctx, wg: &sync.WaitGroup{},
		log: slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	t.Cleanup(func() { cancel(); h.wg.Wait() })
	return h
}

// startSim starts one bus "bus1" at 115200 baud (1 ms turnaround) with a drive at
// each given unit, serial SIM-<unit as 4 digits>.
func (h *harness) startSim(units ...int) *sim.Sim {
	h.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "buses:\n  - name: bus1\n    link: $LINK\n    baud: 115200\n    turnaround: 1ms\n    drives:\n")
	for _, u := range units {
		fmt.Fprintf(&b, "      - {unit: %d, serial: SIM-%04d}\n", u, u)
	}
	return h.startSimYAML(b.String())
}

// startSimYAML starts a simulator from YAML in which $LINK stands for the link of bus1
// in the test's directory.
func (h *harness) startSimYAML(text string) *sim.Sim {
	h.t.Helper()
	h.link = filepath.Join(h.dir, "bus1")
	cfg, err := sim.ParseConfig("sim.yaml", []byte(strings.ReplaceAll(text, "$LINK", h.link)))
	if err != nil {
		h.t.Fatal(err)
	}
	s, err := sim.New(cfg, h.log.With("component", "sim"))
	if err != nil {
		h.t.Fatal(err)
	}
	if err := s.Start(h.ctx); err != nil {
		h.t.Fatal(err)
	}
	h.wg.Add(1)
	go func() { defer h.wg.Done(); _ = s.Wait() }()
	h.sim = s
	return s
}

// startGateway starts a gateway whose config is extra (YAML) after a header naming the
// gateway "it-gw", its state dir and the broker; $LINK and $ADDR(name) are expanded
// (see expand). It runs until the test ends.
func (h *harness) startGateway(broker, extra string) *gateway.Gateway {
	h.t.Helper()
	g, _ := h.runGateway(broker, extra)
	return g
}

// runGateway is startGateway with a stop function that shuts the gateway down cleanly
// and waits for it (a gateway restart in a test is stop, then runGateway again: same id
// and state dir, so the epoch goes up).
func (h *harness) runGateway(broker, extra string) (*gateway.Gateway, func()) {
	h.t.Helper()
	text := fmt.Sprintf("gateway: {id: it-gw, state_dir: %s}\nmqtt: {broker: %q, embedded_listen: \"127.0.0.1:0\"%s}\n%s",
		filepath.Join(h.dir, "state"), broker, h.mqttExtra, h.expand(extra))
	cfg, err := config.Parse("gateway.yaml", []byte(text))
	if err != nil {
		h.t.Fatal(err)
	}
	g, err := gateway.New(gateway.Options{Config: cfg, Logger: h.log.With("component", "gateway"), Version: "test"})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(h.ctx)
	errc := make(chan error, 1)
	h.wg.Add(1)
	go func() { defer h.wg.Done(); errc <- g.Run(ctx) }()
	select {
	case <-g.Started():
	case err := <-errc:
		cancel()
		h.t.Fatalf("gateway: %v", err)
	}
	stopped := false
	return g, func() {
		if !stopped {
			stopped = true
			cancel()
			<-errc
		}
	}
}

// waitCatalog polls the gateway's registry until cond holds for its snapshot, failing the
// test at the deadline. (Polling the registry, not sleeping: the condition decides.)
func waitCatalog(t *testing.T, g *gateway.Gateway, deadline time.Duration, what string, cond func([]contract.Record) bool) []contract.Record {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(deadline)
	for {
		snap := g.Registry().Snapshot()
		if cond(snap) {
			return snap
		}
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatalf("timed out after %v waiting for %s; catalog: %+v", deadline, what, snap)
		}
	}
}

// expand replaces $LINK with bus1's link and $ADDR(name) with the address of the sim's
// TCP listener name.
func (h *harness) expand(text string) string {
	text = strings.ReplaceAll(text, "$LINK", h.link)
	for {
		i := strings.Index(text, "$ADDR(")
		if i < 0 {
			return text
		}
		j := strings.Index(text[i:], ")")
		name := text[i+6 : i+j]
		text = text[:i] + h.sim.ListenerAddr(name) + text[i+j+1:]
	}
}

// instance returns the record with the given id from a snapshot.
func instance(snap []contract.Record, id string) (contract.Record, bool) {
	for _, r := range snap {
		if r.ID == id {
			return r, true
		}
	}
	return contract.Record{}, false
}
