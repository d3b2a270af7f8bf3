package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/sim"
	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// demoCmd is `rollcall demo`.
type demoCmd struct {
	Drives     int           `default:"4" placeholder:"N" help:"Number of simulated drives on the bus, 1–16 (default ${default})."`
	Listen     string        `default:"127.0.0.1:1883" placeholder:"ADDR" help:"Embedded broker address; a free port if this one is taken (default ${default})."`
	Control    string        `default:"127.0.0.1:18081" placeholder:"ADDR" help:"firmware-sim control API address, fault injection (default ${default})."`
	HTTP       string        `name:"http" default:"${http_listen}" placeholder:"HOST:PORT" help:"Gateway HTTP address: dashboard, /metrics, /v1/catalog; a free port if this one is taken (default ${default})."`
	Modbus     string        `default:"127.0.0.1:1502" placeholder:"ADDR" help:"Routing Modbus TCP server address; a free port if this one is taken (default ${default})."`
	DNS        string        `name:"dns" default:"127.0.0.1:8600" placeholder:"ADDR" help:"DNS interface address, UDP and TCP; a free port if this one is taken (default ${default})."`
	Poll       time.Duration `default:"100ms" help:"Poll interval per drive."`
	NoSchedule bool          `name:"no-schedule" help:"Keep every drive healthy (no scripted silence of the last bus drive)."`
	logFlags
}

// Help is the text of `rollcall demo --help`.
func (demoCmd) Help() string {
	return `Runs the whole path in one process: the embedded broker, firmware-sim with drives on a virtual RS-485 bus (115200 baud) and 2 Modbus TCP drives announced over mDNS on the loopback interface, the gateway (dashboard, routing Modbus TCP server, DNS interface), and the live catalog on screen until Ctrl-C. The last bus drive goes silent 20 s in and answers again 15 s later, every minute, unless --no-schedule.

Examples:

    rollcall demo
    rollcall demo --drives 8 --poll 50ms --no-schedule
    curl -X POST -d '{"mode":"silent"}' http://127.0.0.1:18081/v1/devices/bus1/2/fault   # in another terminal: break drive 2 ({"mode":"none"} heals it)`
}

// Validate checks --drives (kong calls it after parsing).
func (c *demoCmd) Validate() error {
	if c.Drives < 1 || c.Drives > 16 {
		return fmt.Errorf("--drives: expected 1–16, got %d", c.Drives)
	}
	return nil
}

// Run runs the whole path in one process: firmware-sim drives on a virtual RS-485 bus,
// the embedded broker, the gateway, and a subscriber that shows the live catalog.
func (c *demoCmd) Run(ctx context.Context, out *streams) error {
	stdout := out.stdout
	log := c.logger(out.stderr)
	dir, err := os.MkdirTemp("", "rollcall-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// firmware-sim: N drives at units 1..N on one bus at 115200 baud, the last of them on
	// a scripted schedule (silent 20 s in, back 15 s later, every minute); two Modbus TCP
	// drives on loopback announced over mDNS on the loopback interface.
	lo, err := loopbackName()
	if err != nil {
		return err
	}
	link := filepath.Join(dir, "bus1")
	// The demo's own mDNS instances carry a tag unique to this process, and the gateway
	// admits only those: another demo or device announcing on loopback is not listed.
	demoTag := fmt.Sprintf("demo%d", os.Getpid())
	var simYAML strings.Builder
	fmt.Fprintf(&simYAML, "control: {listen: %q}\nbuses:\n  - name: bus1\n    link: %s\n    baud: 115200\n    turnaround: 1ms\n    drives:\n",
		freeAddr(c.Control), link)
	for u := 1; u <= c.Drives; u++ {
		fmt.Fprintf(&simYAML, "      - {unit: %d, serial: SIM-%04d", u, u)
		if u == c.Drives && !c.NoSchedule {
			fmt.Fprint(&simYAML, ", schedule: [{after: 20s, mode: silent}, {after: 35s, mode: none}], repeat: 60s")
		}
		fmt.Fprint(&simYAML, "}\n")
	}
	fmt.Fprint(&simYAML, "tcp:\n")
	for i, axis := range []int{5, 6} {
		fmt.Fprintf(&simYAML, "  - name: tcp%d\n    listen: 127.0.0.1:0\n    drives: [{unit: 1, serial: SIM-01%02d}]\n", i+1, axis)
		fmt.Fprintf(&simYAML, "    mdns: {instance: axis-%d-%s, host: axis-%d-sim, interfaces: [%s], txt: {cell: \"1\", axis: \"%d\", axis_group: \"A\"}}\n",
			axis, demoTag, axis, lo, axis)
	}
	simCfg, err := sim.ParseConfig("demo-sim.yaml", []byte(simYAML.String()))
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

	// Bus drive u is axis u (the TCP drives are axes 5 and 6, from their mDNS TXT).
	var axes strings.Builder
	for u := 1; u <= c.Drives; u++ {
		fmt.Fprintf(&axes, "{unit: %d, meta: {axis: \"%d\"}}, ", u, u)
	}
	gwYAML := fmt.Sprintf(`
gateway: {id: demo-gw, state_dir: %s}
mqtt: {broker: embedded, embedded_listen: %q, embedded_auth: {allow_anonymous: true}}
discovery:
  serial:
    - {name: bus1, device: %s, baud: 115200, units: "1-16", meta: {cell: "1"}, devices: [%s]}
  mdns: {enabled: true, interfaces: [%s], window: 1s, every: 1s, timeout: 200ms, instance_patterns: ['^axis-[0-9]+-%s$']}
health:
  poll_interval: %s
  failures_before_critical: 3
  successes_before_passing: 2
  deregister_critical_after: 10s
http: {listen: %q}
modbus_server:
  listen: %q
  routes:
    - {unit: 1, service: servo-drive, meta: {cell: "1"}}
    - {unit: 2, service: servo-drive, meta: {axis: "2"}, writes: true}
dns: {listen: %q, domain: rollcall}
`, filepath.Join(dir, "state"), freeAddr(c.Listen), link, strings.TrimSuffix(axes.String(), ", "), lo, demoTag, c.Poll,
		freeAddr(c.HTTP), freeAddr(c.Modbus), freeDNSAddr(c.DNS))
	cfg, err := config.Parse("demo-gateway.yaml", []byte(gwYAML))
	if err != nil {
		return err
	}
	g, err := gateway.New(gateway.Options{Config: cfg, Logger: log.With("component", "gateway"), Version: version})
	if err != nil {
		return err
	}
	gwErr := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); gwErr <- g.Run(ctx) }()
	select {
	case <-g.Started():
	case err := <-gwErr:
		return err
	}
	fmt.Fprintf(stdout, "rollcall demo: broker %s, %d simulated drives on RS-485 bus %s (115200 baud), 2 Modbus TCP drives announced over mDNS on %s, fault injection at http://%s\n",
		g.BrokerURL(), c.Drives, link, lo, s.ControlAddr())
	if !c.NoSchedule {
		fmt.Fprintf(stdout, "  scripted: drive %d on bus1 goes silent 20 s in and answers again 15 s later (every minute)\n", c.Drives)
	}
	fmt.Fprintf(stdout, "  dashboard: http://%s/   metrics: http://%s/metrics\n", g.HTTPAddr(), g.HTTPAddr())
	fmt.Fprintf(stdout, "  try: curl -X POST -d '{\"mode\":\"silent\"}' http://%s/v1/devices/bus1/2/fault   (then {\"mode\":\"none\"})\n", s.ControlAddr())
	mbHost, mbPort, _ := net.SplitHostPort(g.ModbusAddr())
	fmt.Fprintf(stdout, "  modbus: %s (unit 1: any live drive of cell 1; unit 2: axis 2)   e.g. mbpoll -m tcp -p %s -a 1 -0 -r 100 -c 8 -t 4:hex -1 %s\n",
		g.ModbusAddr(), mbPort, mbHost)
	dnsHost, dnsPort, _ := net.SplitHostPort(g.DNSAddr())
	fmt.Fprintf(stdout, "  dns: %s   e.g. dig @%s -p %s +short servo-drive.service.rollcall SRV\n", g.DNSAddr(), dnsHost, dnsPort)
	if host, port, err := net.SplitHostPort(strings.TrimPrefix(g.BrokerURL(), "tcp://")); err == nil {
		fmt.Fprintf(stdout, "  subscribe: mosquitto_sub -h %s -p %s -t '%s' -v\n", host, port,
			contract.Topics{Prefix: cfg.MQTT.TopicPrefix}.ReadAllFilter())
	}
	fmt.Fprintln(stdout)

	// The view trusts the demo gateway's key (made by its first start above), as a line
	// controller given `rollcall key`'s output would.
	key, _, err := gateway.LoadOrCreateKey(cfg.Gateway.StateDir)
	if err != nil {
		return err
	}
	trusted := &contract.KeyRing{}
	trusted.Add(cfg.Gateway.ID, key.Public().(ed25519.PublicKey))
	cc, err := client.New(client.Options{
		Brokers: []string{g.BrokerURL()}, ClientID: fmt.Sprintf("rollcall-demo-view-%d", os.Getpid()),
		Topics: contract.Topics{Prefix: cfg.MQTT.TopicPrefix}, Logger: log.With("component", "view"),
		TrustedKeys: trusted,
	})
	if err != nil {
		return err
	}
	view := &catalogView{out: stdout, start: time.Now(), catalog: cc}
	changes, unsubscribe := cc.Subscribe(64)
	defer unsubscribe()
	wg.Add(1)
	go func() { defer wg.Done(); view.run(ctx, changes) }()
	err = cc.Run(ctx)
	cancel()
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// freeDNSAddr is freeAddr for the DNS interface, which needs the port free for both UDP
// and TCP.
func freeDNSAddr(addr string) string {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		host, _, _ := net.SplitHostPort(addr)
		return net.JoinHostPort(host, "0")
	}
	_ = pc.Close()
	return freeAddr(addr)
}

// loopbackName is the name of the loopback interface (mDNS stays on it in the demo).
func loopbackName() (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 && i.Flags&net.FlagUp != 0 {
			return i.Name, nil
		}
	}
	return "", fmt.Errorf("demo: no loopback interface is up")
}

// freeAddr returns addr when it can be listened on now, else the same host with port 0
// (the OS picks a free one), so the demo runs next to a broker already on 1883.
func freeAddr(addr string) string {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		host, _, _ := net.SplitHostPort(addr)
		return net.JoinHostPort(host, "0")
	}
	l.Close()
	return addr
}

// catalogView prints the catalog as the consumer library sees it, as a table, when it
// changes (at most 4 times a second).
type catalogView struct {
	out     io.Writer
	start   time.Time
	catalog *client.Client
}

// run prints the table after changes arrive on changes, until ctx ends or changes closes.
func (v *catalogView) run(ctx context.Context, changes <-chan client.Change) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	dirty := false
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-changes:
			if !ok {
				return
			}
			dirty = true
		case <-t.C:
			if dirty {
				dirty = false
				v.print()
			}
		}
	}
}

func (v *catalogView) print() {
	ins := v.catalog.Instances("")
	sort.Slice(ins, func(i, j int) bool { return ins[i].ID < ins[j].ID })
	fmt.Fprintf(v.out, "── catalog at +%.1fs ", time.Since(v.start).Seconds())
	seen := map[string]bool{}
	for _, in := range ins {
		if !seen[in.Gateway] {
			seen[in.Gateway] = true
			fmt.Fprintf(v.out, "(gateway %s %s, epoch %d) ", in.Gateway, in.GatewayState, in.GatewayEpoch)
		}
	}
	fmt.Fprintln(v.out)
	recs := make([]*contract.Record, 0, len(ins))
	for i := range ins {
		recs = append(recs, &ins[i].Record)
	}
	tw := tabwriter.NewWriter(v.out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tSERVICE\tSTATUS\tSTATE\tENDPOINT\tFOUND BY\tRTT ms\tLAST SEEN\tREVISION")
	for _, r := range recs {
		state := fmt.Sprint(r.State["cia402"])
		if r.State["fault"] == true {
			state += fmt.Sprintf(" (fault 0x%04X)", toInt(r.State["error_code"]))
		}
		where := endpointString(r.Endpoint)
		if r.Endpoint.Transport == "modbus-rtu" {
			where = fmt.Sprintf("%s/%d", r.Endpoint.Bus, r.Endpoint.Unit) // the device path is long and the same for all
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\n", r.ID, r.Service, r.Status, state,
			where, strings.Join(r.DiscoveredBy, ","), r.Check.RTTMS, r.LastSeen.Local().Format("15:04:05.000"), revisionText(r.Revision))
	}
	if len(recs) == 0 {
		fmt.Fprintln(tw, "(no instances yet)")
	}
	tw.Flush()
	fmt.Fprintln(v.out)
}

// revisionText shows a record revision as a person reads it: "<epoch>.<n>", the
// gateway's epoch and the instance's n-th publication in it (revision = epoch × 2^32 +
// n, docs/contract.md "Implementation notes"), e.g. 4294967299 → "1.3".
func revisionText(rev int64) string {
	return fmt.Sprintf("%d.%d", rev>>32, rev&(1<<32-1))
}

func toInt(v any) int {
	switch n := v.(type) {
	case float64:
		return int(n)
	case int:
		return n
	}
	return 0
}
