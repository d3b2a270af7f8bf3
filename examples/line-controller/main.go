// Command line-controller is an example line controller built on rollcall's consumer
// library (registry/client): it picks a live servo drive of an axis group from the
// catalog, reads the drive's position over Modbus TCP (CiA 402 position actual value,
// registers 10–11 of the firmware-sim map, docs/registers.md), and fails over to
// another drive of the same group when its drive dies — the moment the catalog says
// so, or at its own first failed read, whichever comes first.
//
// Run it next to the demo:
//
//	make run                                              # terminal 1
//	go run ./examples/line-controller --axis-group A      # terminal 2
//	curl -X POST -d '{"mode":"silent"}' http://127.0.0.1:18081/v1/devices/tcp1/1/fault
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
	"github.com/rollcall-edge/rollcall/registry/client"
)

func main() {
	broker := flag.String("broker", "tcp://127.0.0.1:1883", "MQTT broker of the rollcall catalog")
	group := flag.String("axis-group", "A", "meta axis_group of the drives this controller may use")
	every := flag.Duration("every", 200*time.Millisecond, "position read period")
	keys := flag.String("trusted-keys", "", "trusted gateway keys (`rollcall key` lines); records not signed by them are ignored")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := Config{Broker: *broker, AxisGroup: *group, Every: *every}
	if *keys != "" {
		var err error
		if cfg.TrustedKeys, err = contract.ReadKeyRingFile(*keys); err != nil {
			fmt.Fprintln(os.Stderr, "line-controller:", err)
			os.Exit(2)
		}
	}
	err := run(ctx, cfg, os.Stdout)
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "line-controller:", err)
		os.Exit(1)
	}
}

// Config configures the controller.
type Config struct {
	Broker    string        // MQTT broker URL
	AxisGroup string        // meta axis_group to pick drives from
	Every     time.Duration // position read period
	// TrustedKeys, if set, are the gateways' keys: records not signed by them are
	// ignored (client.Options.TrustedKeys).
	TrustedKeys *contract.KeyRing
	// OnDrive, if set, is called with the instance id each time the controller starts
	// using a drive (for tests).
	OnDrive func(id string)
}

// run is the controller loop: pick, read, fail over; until ctx ends.
func run(ctx context.Context, cfg Config, out io.Writer) error {
	cl, err := client.New(client.Options{
		Brokers: []string{cfg.Broker}, Services: []string{"servo-drive"}, TrustedKeys: cfg.TrustedKeys,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	defer func() { cancel(); <-done }()

	changes, unsubscribe := cl.Subscribe(64)
	defer unsubscribe()
	opts := []client.PickOption{client.WithMeta("axis_group", cfg.AxisGroup), client.LowestRTT}
	// candidate returns the best live drive of the group reachable over Modbus TCP,
	// other than avoid. (A drive on an RS-485 bus belongs to the gateway: a bus has one
	// master.) Live returns what Pick may choose from, best first for LowestRTT.
	candidate := func(avoid string) (client.Instance, bool) {
		for _, in := range cl.Live("servo-drive", opts...) {
			if in.Endpoint.Transport == "modbus-tcp" && in.ID != avoid {
				return in, true
			}
		}
		return client.Instance{}, false
	}

	var (
		current client.Instance
		conn    *modbus.TCP
		lost    time.Time // when the current drive was found dead
		good    time.Time // last good read from the current drive
	)
	closeConn := func() {
		if conn != nil {
			conn.Close()
			conn = nil
		}
	}
	defer closeConn()
	use := func(inst client.Instance) error {
		closeConn()
		c, err := modbus.NewTCP(modbus.TCPConfig{
			Address: net.JoinHostPort(inst.Endpoint.Host, strconv.Itoa(inst.Endpoint.Port)), Timeout: 100 * time.Millisecond,
		})
		if err != nil {
			return err
		}
		if current.ID != "" {
			fmt.Fprintf(out, "failover: %s → %s, %v after the last good read\n", current.ID, inst.ID, time.Since(good).Round(time.Millisecond))
		} else {
			fmt.Fprintf(out, "using %s at %s (axis %s)\n", inst.ID, c.Address(), inst.Meta["axis"])
		}
		conn, current, good = c, inst, time.Now()
		if cfg.OnDrive != nil {
			cfg.OnDrive(inst.ID)
		}
		return nil
	}
	tick := time.NewTicker(cfg.Every)
	defer tick.Stop()
	for {
		if conn == nil {
			if inst, ok := candidate(""); ok {
				if err := use(inst); err != nil {
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ch := <-changes:
			// The catalog says our drive is not live any more: switch now.
			if conn != nil && ch.Instance.ID == current.ID && ch.Instance.Gateway == current.Gateway &&
				(ch.Kind == client.Removed || ch.Instance.Status != "passing") {
				fmt.Fprintf(out, "catalog: %s is %s\n", current.ID, ch.Instance.Status)
				if lost.IsZero() {
					lost = time.Now()
				}
				closeConn()
			}
		case <-tick.C:
			if conn == nil {
				continue
			}
			regs, err := conn.ReadRegisters(ctx, byte(current.Endpoint.Unit), modbus.FuncReadHoldingRegisters, 10, 2)
			if err != nil {
				// Our own read failed: switch at once if another drive of the group is
				// live; otherwise keep trying until the catalog decides.
				fmt.Fprintf(out, "read from %s failed: %v\n", current.ID, err)
				if lost.IsZero() {
					lost = time.Now()
				}
				if next, ok := candidate(current.ID); ok {
					if err := use(next); err != nil {
						return err
					}
				}
				continue
			}
			lost, good = time.Time{}, time.Now()
			pos := int32(uint32(regs[0])<<16 | uint32(regs[1]))
			fmt.Fprintf(out, "%s position %d\n", current.ID, pos)
		}
	}
}
