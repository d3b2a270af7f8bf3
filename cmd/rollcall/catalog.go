package main

import (
	"context"
	"encoding/json"
	"errors"
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

// recordsOf are the records of ins (pointers into ins), as shortIDs takes them.
func recordsOf(ins []client.Instance) []*contract.Record {
	recs := make([]*contract.Record, 0, len(ins))
	for i := range ins {
		recs = append(recs, &ins[i].Record)
	}
	return recs
}

// consumerFlags are the flags of the commands that read the catalog (find, watch).
type consumerFlags struct {
	Broker       string        `default:"tcp://127.0.0.1:1883" placeholder:"URL" help:"Broker URL; several, comma-separated, fail over in order (default ${default})."`
	Prefix       string        `default:"rollcall/v1" help:"Topic prefix."`
	Username     string        `help:"MQTT username."`
	PasswordEnv  string        `name:"password-env" placeholder:"VAR" help:"Environment variable holding the MQTT password."`
	JSON         bool          `name:"json" help:"JSON output (one object per line)."`
	Timeout      time.Duration `default:"10s" help:"How long to wait for the broker's catalog."`
	MaxClockSkew time.Duration `name:"max-clock-skew" default:"${max_clock_skew}" help:"How far this host's clock may differ from the gateways': a record counts as expired this long after its valid_until."`
	TrustedKeys  string        `name:"trusted-keys" placeholder:"FILE" help:"File of trusted gateway keys, one '<gateway-id> ed25519:<base64>' per line as rollcall key prints them: records not signed by them are ignored."`
}

// start runs a catalog client until ctx ends and waits until its first complete
// catalog arrived; a usage error (exit 2) when no broker answered within the timeout.
func (c *consumerFlags) start(ctx context.Context, services []string, stderr io.Writer) (*client.Client, func(), error) {
	o := client.Options{
		Brokers:      strings.Split(c.Broker, ","),
		Services:     services,
		Username:     c.Username,
		Logger:       slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		MaxClockSkew: c.MaxClockSkew,
	}
	if c.MaxClockSkew == 0 {
		o.MaxClockSkew = -1 // 0 on the command line: no allowance
	}
	o.Topics.Prefix = c.Prefix
	if c.PasswordEnv != "" {
		o.Password = os.Getenv(c.PasswordEnv)
	}
	if c.TrustedKeys != "" {
		var err error
		if o.TrustedKeys, err = contract.ReadKeyRingFile(c.TrustedKeys); err != nil {
			return nil, nil, usagef("--trusted-keys: %v", err)
		}
	}
	cl, err := client.New(o)
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = cl.Run(ctx) }()
	stop := func() { cancel(); <-done }
	select {
	case <-cl.Ready():
		return cl, stop, nil
	case <-time.After(c.Timeout):
		stop()
		return nil, nil, usagef("no catalog from %s within %v", c.Broker, c.Timeout)
	case <-ctx.Done():
		stop()
		return nil, nil, usagef("interrupted")
	}
}

// findCmd is `rollcall find SERVICE --broker URL [--meta k=v]… [--json]`.
type findCmd struct {
	Service      string   `arg:"" name:"service" help:"The service to find, e.g. servo-drive."`
	Meta         []string `sep:"none" placeholder:"KEY=VALUE" help:"Require meta key=value (repeatable)."`
	AllowWarning bool     `name:"allow-warning" help:"A warning instance may be returned."`
	Strategy     string   `enum:"round-robin,random,lowest-rtt,weighted" default:"round-robin" help:"round-robin, random, lowest-rtt or weighted (meta \"weight\")."`
	consumerFlags
}

// Help is the text of `rollcall find --help`.
func (findCmd) Help() string {
	return `Prints one live instance of SERVICE as "<transport> <endpoint> <short id>" (the id without its vendor or gateway prefix: sim-0002 for rollcall-firmware-sim-sim-0002), or its whole record, full id included, with --json. The service may come before or after the flags.

Examples:

    rollcall find servo-drive --broker tcp://127.0.0.1:1883 --meta axis=2
    rollcall find servo-drive --meta cell=1 --meta axis_group=A --strategy lowest-rtt --json
    rollcall find servo-drive --broker tcp://box-a:1883,tcp://box-b:1883 --trusted-keys trusted-keys`
}

// Validate checks SERVICE and each --meta (kong calls it after parsing).
func (c *findCmd) Validate() error {
	if c.Service == "" {
		return errors.New("SERVICE is required, e.g. rollcall find servo-drive --meta axis=2")
	}
	for _, kv := range c.Meta {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("--meta: expected key=value, got %q", kv)
		}
	}
	return nil
}

// Run prints one live instance's endpoint. Exit status: 0 found, 1 none live, 2 usage
// or connection error (docs/design.md, "Commands").
func (c *findCmd) Run(ctx context.Context, s *streams) error {
	opts := []client.PickOption{}
	for _, kv := range c.Meta {
		k, v, _ := strings.Cut(kv, "=")
		opts = append(opts, client.WithMeta(k, v))
	}
	if c.AllowWarning {
		opts = append(opts, client.AllowWarning())
	}
	switch c.Strategy {
	case "random":
		opts = append(opts, client.Random)
	case "lowest-rtt":
		opts = append(opts, client.LowestRTT)
	case "weighted":
		opts = append(opts, client.Weighted)
	}
	cl, stop, err := c.start(ctx, []string{c.Service}, s.stderr)
	if err != nil {
		return err
	}
	defer stop()
	inst, err := cl.Pick(c.Service, opts...)
	if errors.Is(err, client.ErrNoneLive) {
		fmt.Fprintln(s.stderr, "rollcall:", err)
		return errNoneFound
	}
	if err != nil {
		return err
	}
	if c.JSON {
		return json.NewEncoder(s.stdout).Encode(inst.Record)
	}
	recs := append(recordsOf(cl.Instances(c.Service)), &inst.Record)
	fmt.Fprintf(s.stdout, "%s %s %s\n", inst.Endpoint.Transport, endpointString(inst.Endpoint), shortIDs(recs)[inst.ID])
	return nil
}

// watchCmd is `rollcall watch --broker URL [--service S] [--json]`.
type watchCmd struct {
	Service string `placeholder:"SERVICE" help:"Only this service (default: all)."`
	consumerFlags
}

// Help is the text of `rollcall watch --help`.
func (watchCmd) Help() string {
	return `Shows the live catalog as a table redrawn on every change (at most 4 times a second), or with --json one line per change, {"event":"added|updated|removed","instance":{…}}: the instance's record (contract v1 fields) with "stale", "age_ms", "gateway_state" (online, offline, unknown), "gateway_epoch", "expired" and, for a device several gateways see, "seen_by"; until interrupted. The table shows short ids (sim-0002 for rollcall-firmware-sim-sim-0002); JSON keeps full ids.

Examples:

    rollcall watch --broker tcp://127.0.0.1:1883
    rollcall watch --broker tcp://box-a:1883 --service servo-drive --trusted-keys trusted-keys
    rollcall watch --json | jq -c 'select(.event == "removed") | .instance.id'`
}

// Run shows the catalog until ctx ends.
func (c *watchCmd) Run(ctx context.Context, s *streams) error {
	var services []string
	if c.Service != "" {
		services = []string{c.Service}
	}
	cl, stop, err := c.start(ctx, services, s.stderr)
	if err != nil {
		return err
	}
	defer stop()
	changes, cancel := cl.Subscribe(256)
	defer cancel()
	stdout := s.stdout
	if c.JSON {
		enc := json.NewEncoder(stdout)
		for _, in := range cl.Instances(c.Service) {
			_ = enc.Encode(newWatchEvent("added", in))
		}
		for {
			select {
			case <-ctx.Done():
				return nil
			case ch, ok := <-changes:
				if !ok {
					return nil
				}
				_ = enc.Encode(newWatchEvent(strings.ToLower(ch.Kind.String()), ch.Instance))
			}
		}
	}
	tty := isTerminal(stdout)
	draw := func() {
		if tty {
			fmt.Fprint(stdout, "\033[H\033[2J")
		}
		printCatalog(stdout, client.MergeByID(cl.Instances(c.Service)), cl.Status())
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

// watchEvent is one line of `rollcall watch --json`: the change and the instance.
type watchEvent struct {
	Event    string        `json:"event"`
	Instance watchInstance `json:"instance"`
}

// watchInstance is an instance as `watch --json` prints it: its record (contract v1
// fields, full id) and what this consumer knows of it, in the record's spelling.
type watchInstance struct {
	contract.Record
	Stale        bool     `json:"stale"`         // not confirmed by a broker lately (client.Instance.Stale)
	AgeMS        int64    `json:"age_ms"`        // how long ago it was last known current; 0 while connected
	GatewayState string   `json:"gateway_state"` // online, offline or unknown
	GatewayEpoch int64    `json:"gateway_epoch"` // the gateway's current epoch (0: unknown)
	Expired      bool     `json:"expired"`       // a lease ran out: unknown, never live
	SeenBy       []string `json:"seen_by,omitempty"`
}

// newWatchEvent makes the line of one change.
func newWatchEvent(event string, in client.Instance) watchEvent {
	return watchEvent{event, watchInstance{
		Record: in.Record, Stale: in.Stale, AgeMS: in.Age.Milliseconds(), GatewayState: in.GatewayState,
		GatewayEpoch: in.GatewayEpoch, Expired: in.Expired, SeenBy: in.SeenBy,
	}}
}

// printCatalog prints watch's table: one row per instance, with short ids (shortID).
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
	short := shortIDs(recordsOf(ins))
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\n", in.Service, short[in.ID], status, state, endpointString(in.Endpoint),
			seenBy(in), in.Check.RTTMS, in.LastSeen.Local().Format("15:04:05.000"))
	}
	tw.Flush()
}
