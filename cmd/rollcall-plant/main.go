// Command rollcall-plant runs a whole plant on one machine, for `make plant`: a 3-node
// NATS cluster (nats-server v2.15.2 in-process: MQTT, JetStream with 3 replicas), three
// gateways (cells), each with its own simulated RS-485 bus of two drives and a Modbus TCP
// drive of its own, cells 1 and 2 both polling one more, shared, Modbus TCP drive; and
// the merged live catalog of all three on screen, as a line controller sees it (signed
// records checked against the three gateways' keys, one row per device with the
// gateways that see it). Each gateway prefers another node and fails over to the
// others.
//
// Usage:
//
//	rollcall-plant [--kill-node-after 30s] [--log-level warn]
//
// --kill-node-after shuts node 0 down after that time (0: never), to watch cell 1's
// gateway fail over without a gap in the catalog. Ctrl-C stops everything.
package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/sim"
	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/internal/testutil/natscluster"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
	"github.com/rollcall-edge/rollcall/registry/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rollcall-plant:", err)
		os.Exit(1)
	}
}

// cells is the number of gateways (and NATS nodes).
const cells = 3

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rollcall-plant", flag.ContinueOnError)
	fs.SetOutput(stderr)
	killAfter := fs.Duration("kill-node-after", 30*time.Second, "shut NATS node 0 down after this long (0: never)")
	level := fs.String("log-level", "warn", "log level of the gateways and the simulator: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	dir, err := os.MkdirTemp("", "rollcall-plant-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The cluster outlives everything else: the gateways publish "offline" to it when
	// they stop.
	cl, err := natscluster.Launch(filepath.Join(dir, "nats"), cells, nil)
	if cl != nil {
		defer cl.Close()
	}
	if err != nil {
		return err
	}
	urls := cl.URLs()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// The simulator: a bus per cell, a TCP drive per cell, and the shared TCP drive.
	var simYAML strings.Builder
	fmt.Fprint(&simYAML, "buses:\n")
	for c := 1; c <= cells; c++ {
		fmt.Fprintf(&simYAML, "  - {name: bus%d, link: %s, baud: 115200, turnaround: 1ms, drives: [{unit: 1, serial: SIM-%d01}, {unit: 2, serial: SIM-%d02}]}\n",
			c, filepath.Join(dir, fmt.Sprintf("bus%d", c)), c, c)
	}
	fmt.Fprint(&simYAML, "tcp:\n")
	for c := 1; c <= cells; c++ {
		fmt.Fprintf(&simYAML, "  - {name: tcp%d, listen: \"127.0.0.1:0\", drives: [{unit: 1, serial: SIM-%d10}]}\n", c, c)
	}
	fmt.Fprint(&simYAML, "  - {name: shared, listen: \"127.0.0.1:0\", drives: [{unit: 1, serial: SIM-0900}]}\n")
	simCfg, err := sim.ParseConfig("plant-sim.yaml", []byte(simYAML.String()))
	if err != nil {
		return err
	}
	s, err := sim.New(simCfg, log.With("component", "firmware-sim"))
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = s.Wait() }()

	// The gateways, cell c preferring node c-1.
	trusted := &contract.KeyRing{}
	for c := 1; c <= cells; c++ {
		id := fmt.Sprintf("cell%d-gw", c)
		var brokers []string
		for _, u := range cl.URLsFrom(c - 1) {
			brokers = append(brokers, fmt.Sprintf("%q", u))
		}
		tcp := fmt.Sprintf("{name: own, address: %q, meta: {cell: \"%d\"}}", s.ListenerAddr(fmt.Sprintf("tcp%d", c)), c)
		if c <= 2 {
			tcp += fmt.Sprintf(", {name: shared, address: %q, meta: {cell: \"shared\"}}", s.ListenerAddr("shared"))
		}
		state := filepath.Join(dir, id)
		// The simulated drives run in this process, beside three gateways and three NATS
		// nodes: each bus has rig.HostTiming, or on a busy machine a drive may turn
		// warning for its link and leave the line controller's view.
		text := fmt.Sprintf(`gateway: {id: %s, state_dir: %s}
mqtt: {brokers: [%s]}
discovery:
  serial: [{name: bus%d, device: %s, baud: 115200, units: "1-2", meta: {cell: "%d"}, %s}]
  tcp: [%s]
health: {poll_interval: 100ms, status_lease: 3s}
`, id, state, strings.Join(brokers, ", "), c, filepath.Join(dir, fmt.Sprintf("bus%d", c)), c, rig.HostTiming, tcp)
		cfg, err := config.Parse(id+".yaml", []byte(text))
		if err != nil {
			return err
		}
		key, _, err := gateway.LoadOrCreateKey(state)
		if err != nil {
			return err
		}
		trusted.Add(id, key.Public().(ed25519.PublicKey))
		g, err := gateway.New(gateway.Options{Config: cfg, Logger: log.With("component", id), Version: "plant"})
		if err != nil {
			return err
		}
		gwErr := make(chan error, 1)
		wg.Add(1)
		go func() { defer wg.Done(); gwErr <- g.Run(ctx) }()
		select {
		case <-g.Started():
		case err := <-gwErr:
			return fmt.Errorf("%s: %w", id, err)
		}
	}

	// The line controller's view: the merged catalog from node 2, failing over.
	view, err := client.New(client.Options{Brokers: []string{urls[2], urls[1], urls[0]}, ClientID: "plant-view",
		TrustedKeys: trusted, Logger: log.With("component", "view")})
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = view.Run(ctx) }()
	fmt.Fprintf(stdout, "rollcall plant: NATS nodes %s; gateways cell1-gw, cell2-gw, cell3-gw (each prefers another node); "+
		"SIM-0900 is a Modbus TCP drive polled by cell1-gw and cell2-gw\n", strings.Join(urls, " "))
	if *killAfter > 0 {
		fmt.Fprintf(stdout, "  node 0 (%s, preferred by cell1-gw) will be shut down %v from now\n", urls[0], *killAfter)
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-ctx.Done():
			case <-time.After(*killAfter):
				cl.Nodes[0].Shutdown()
				fmt.Fprintf(stdout, "\n*** NATS node 0 shut down at %s: cell1-gw fails over ***\n\n", time.Now().Format("15:04:05.000"))
			}
		}()
	}
	changes, unsubscribe := view.Subscribe(256)
	defer unsubscribe()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
		case <-tick.C:
			printPlant(stdout, view)
		}
	}
}

// printPlant prints the merged live catalog: one row per device, with the gateways that
// see it.
func printPlant(w io.Writer, view *client.Client) {
	live := view.Live("servo-drive")
	slices.SortFunc(live, func(a, b client.Instance) int { return strings.Compare(a.ID, b.ID) })
	st := view.Status()
	fmt.Fprintf(w, "%s  merged live catalog from %s: %d drives\n", time.Now().Format("15:04:05"), st.Broker, len(live))
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  INSTANCE\tSTATUS\tENDPOINT\tSEEN BY\tRTT ms")
	for _, in := range live {
		ep := in.Endpoint
		where := fmt.Sprintf("%s:%d unit %d", ep.Host, ep.Port, ep.Unit)
		if ep.Transport == "modbus-rtu" {
			where = fmt.Sprintf("%s unit %d", ep.Bus, ep.Unit)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s %s\t%s\t%.2f\n", in.ID, in.Status, ep.Transport, where, strings.Join(in.SeenBy, ","), in.Check.RTTMS)
	}
	tw.Flush()
}
