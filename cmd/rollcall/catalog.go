package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// endpointString is an endpoint in one short line: "bus1/3 (/dev/ttyUSB0 115200)",
// "10.0.0.5:502/1", "http://10.0.0.9:80/health".
func endpointString(ep contract.Endpoint) string {
	switch ep.Transport {
	case "modbus-rtu":
		return fmt.Sprintf("%s/%d (%s %d)", ep.Bus, ep.Unit, ep.Device, ep.Baud)
	case "modbus-tcp":
		return fmt.Sprintf("%s:%d/%d", ep.Host, ep.Port, ep.Unit)
	case "http":
		return ep.URL
	}
	return fmt.Sprintf("%s:%d", ep.Host, ep.Port)
}

// metaFlag collects repeated --meta k=v.
type metaFlag []string

func (m *metaFlag) String() string { return strings.Join(*m, ",") }
func (m *metaFlag) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("expected key=value, got %q", v)
	}
	*m = append(*m, v)
	return nil
}

// consumerFlags are the flags of the commands that read the catalog.
type consumerFlags struct {
	brokers  string
	prefix   string
	user     string
	pwEnv    string
	asJSON   bool
	wait     time.Duration
	logLevel string
	skew     time.Duration
	keys     string
}

func (c *consumerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.brokers, "broker", "tcp://127.0.0.1:1883", "broker URL; several, comma-separated, fail over in order")
	fs.StringVar(&c.prefix, "prefix", "rollcall/v1", "topic prefix")
	fs.StringVar(&c.user, "username", "", "MQTT username")
	fs.StringVar(&c.pwEnv, "password-env", "", "environment variable holding the MQTT password")
	fs.BoolVar(&c.asJSON, "json", false, "JSON output (one object per line)")
	fs.DurationVar(&c.wait, "timeout", 10*time.Second, "how long to wait for the broker's catalog")
	fs.DurationVar(&c.skew, "max-clock-skew", contract.DefaultMaxClockSkew,
		"how far this host's clock may differ from the gateways': a record counts as expired this long after its valid_until")
	fs.StringVar(&c.keys, "trusted-keys", "",
		"file of trusted gateway keys, one `<gateway-id> ed25519:<base64>` per line as `rollcall key` prints them: records not signed by them are ignored")
}

// start runs a catalog client until ctx ends and waits until its first complete
// catalog arrived; an error (exit 2) when no broker answered within the timeout.
func (c *consumerFlags) start(ctx context.Context, services []string, stderr io.Writer) (*client.Client, func(), error) {
	o := client.Options{
		Brokers:      strings.Split(c.brokers, ","),
		Services:     services,
		Username:     c.user,
		Logger:       slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		MaxClockSkew: c.skew,
	}
	if c.skew == 0 {
		o.MaxClockSkew = -1 // 0 on the command line: no allowance
	}
	o.Topics.Prefix = c.prefix
	if c.pwEnv != "" {
		o.Password = os.Getenv(c.pwEnv)
	}
	if c.keys != "" {
		var err error
		if o.TrustedKeys, err = contract.ReadKeyRingFile(c.keys); err != nil {
			return nil, nil, fmt.Errorf("--trusted-keys: %v: %w", err, errUsage)
		}
	}
	cl, err := client.New(o)
	if err != nil {
		return nil, nil, fmt.Errorf("%v: %w", err, errUsage)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = cl.Run(ctx) }()
	stop := func() { cancel(); <-done }
	select {
	case <-cl.Ready():
		return cl, stop, nil
	case <-time.After(c.wait):
		stop()
		return nil, nil, fmt.Errorf("no catalog from %s within %v: %w", c.brokers, c.wait, errUsage)
	case <-ctx.Done():
		stop()
		return nil, nil, fmt.Errorf("interrupted: %w", errUsage)
	}
}

// splitService accepts the service before or after the flags (`find SERVICE --broker
// URL` and `find --broker URL SERVICE`).
func splitService(fs *flag.FlagSet, args []string) (string, error) {
	var svc string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		svc, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	if svc == "" && fs.NArg() > 0 {
		svc = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return "", fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	return svc, nil
}

// cmdFind is `rollcall find SERVICE --broker URL [--meta k=v]… [--json]`: it prints
// one live instance's endpoint. Exit status: 0 found, 1 none live, 2 usage or
// connection error (docs/design.md, "Commands").
func cmdFind(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("find", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf consumerFlags
	cf.register(fs)
	var meta metaFlag
	fs.Var(&meta, "meta", "require meta key=value (repeatable)")
	warning := fs.Bool("allow-warning", false, "a warning instance may be returned")
	strategy := fs.String("strategy", "round-robin", "round-robin, random, lowest-rtt or weighted (meta \"weight\")")
	svc, err := splitService(fs, args)
	if err != nil {
		return err
	}
	if svc == "" {
		fmt.Fprintln(stderr, "usage: rollcall find SERVICE --broker URL [--meta k=v]... [--json]")
		return errUsage
	}
	opts := []client.PickOption{}
	for _, kv := range meta {
		k, v, _ := strings.Cut(kv, "=")
		opts = append(opts, client.WithMeta(k, v))
	}
	if *warning {
		opts = append(opts, client.AllowWarning())
	}
	switch *strategy {
	case "round-robin":
	case "random":
		opts = append(opts, client.Random)
	case "lowest-rtt":
		opts = append(opts, client.LowestRTT)
	case "weighted":
		opts = append(opts, client.Weighted)
	default:
		return fmt.Errorf("--strategy: expected round-robin, random, lowest-rtt or weighted, got %q: %w", *strategy, errUsage)
	}
	cl, stop, err := cf.start(ctx, []string{svc}, stderr)
	if err != nil {
		return err
	}
	defer stop()
	inst, err := cl.Pick(svc, opts...)
	if errors.Is(err, client.ErrNoneLive) {
		fmt.Fprintln(stderr, "rollcall:", err)
		return errNoneFound
	}
	if err != nil {
		return err
	}
	if cf.asJSON {
		return json.NewEncoder(stdout).Encode(inst.Record)
	}
	fmt.Fprintf(stdout, "%s %s %s\n", inst.Endpoint.Transport, endpointString(inst.Endpoint), inst.ID)
	return nil
}

// cmdWatch is `rollcall watch --broker URL [--service S] [--json]`: the live catalog as
// a table redrawn on every change (at most 4 times a second), or JSON lines, one per
// change ({"event":"added|updated|removed", "instance": record + "stale",
// "gateway_state"}), until interrupted.
func cmdWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf consumerFlags
	cf.register(fs)
	service := fs.String("service", "", "only this service (default: all)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var services []string
	if *service != "" {
		services = []string{*service}
	}
	cl, stop, err := cf.start(ctx, services, stderr)
	if err != nil {
		return err
	}
	defer stop()
	changes, cancel := cl.Subscribe(256)
	defer cancel()
	if cf.asJSON {
		enc := json.NewEncoder(stdout)
		for _, in := range cl.Instances(*service) {
			_ = enc.Encode(watchEvent{"added", in})
		}
		for {
			select {
			case <-ctx.Done():
				return nil
			case ch, ok := <-changes:
				if !ok {
					return nil
				}
				_ = enc.Encode(watchEvent{strings.ToLower(ch.Kind.String()), ch.Instance})
			}
		}
	}
	tty := isTerminal(stdout)
	draw := func() {
		if tty {
			fmt.Fprint(stdout, "\033[H\033[2J")
		}
		printCatalog(stdout, client.MergeByID(cl.Instances(*service)), cl.Status())
	}
	draw()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	dirty := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-changes:
			if !ok {
				return nil
			}
			dirty = true
		case <-tick.C:
			if dirty {
				dirty = false
				draw()
			}
		}
	}
}

// seenBy names the gateways that see in: its record's gateway first, then the others
// (client.MergeByID).
func seenBy(in client.Instance) string {
	out := []string{in.Gateway}
	for _, g := range in.SeenBy {
		if g != in.Gateway {
			out = append(out, g)
		}
	}
	return strings.Join(out, ",")
}

type watchEvent struct {
	Event    string          `json:"event"`
	Instance client.Instance `json:"instance"`
}

func printCatalog(w io.Writer, ins []client.Instance, st client.Status) {
	sort.Slice(ins, func(i, j int) bool {
		if ins[i].Service != ins[j].Service {
			return ins[i].Service < ins[j].Service
		}
		return ins[i].ID < ins[j].ID
	})
	conn := "disconnected"
	if st.Connected {
		conn = "connected to " + st.Broker
	}
	fmt.Fprintf(w, "rollcall catalog, %s, %d instances, %s\n", conn, len(ins), time.Now().Format("15:04:05"))
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tINSTANCE\tSTATUS\tSTATE\tENDPOINT\tSEEN BY\tRTT ms\tLAST SEEN")
	for _, in := range ins {
		status := string(in.Status)
		if in.GatewayState == client.GatewayOffline {
			status += " (gateway offline)"
		}
		if in.Expired {
			status += " (lease expired: unknown)"
		}
		if in.Stale {
			status += fmt.Sprintf(" (stale %s)", in.Age.Round(time.Second))
		}
		state := "-"
		if s, ok := in.State["cia402"]; ok {
			state = fmt.Sprint(s)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\n", in.Service, in.ID, status, state, endpointString(in.Endpoint),
			seenBy(in), in.Check.RTTMS, in.LastSeen.Local().Format("15:04:05.000"))
	}
	tw.Flush()
}
