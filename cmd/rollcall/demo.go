package main

import (
	"bytes"
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
	"github.com/rollcall-edge/rollcall/internal/termios"
	"github.com/rollcall-edge/rollcall/registry/client"
	"golang.org/x/sys/unix"
)

// demoCmd is `rollcall demo`.
type demoCmd struct {
	Drives     int           `default:"4" placeholder:"N" help:"Number of simulated drives on the bus, 1–16 (default ${default})."`
	Listen     string        `default:"127.0.0.1:1883" placeholder:"ADDR" help:"Embedded broker address; a free port if this one is taken (default ${default})."`
	Control    string        `default:"127.0.0.1:18081" placeholder:"ADDR" help:"firmware-sim control API address, fault injection; a free port if this one is taken (default ${default})."`
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

// Validate checks --drives and the addresses (kong calls it after parsing): each is
// HOST:PORT; --http needs its host, as http.listen does (":9180" would listen on every
// interface without saying so).
func (c *demoCmd) Validate() error {
	if c.Drives < 1 || c.Drives > 16 {
		return fmt.Errorf("--drives: expected 1–16, got %d", c.Drives)
	}
	for _, f := range []struct{ name, addr, example string }{
		{"--listen", c.Listen, "127.0.0.1:1883"}, {"--control", c.Control, "127.0.0.1:18081"}, {"--http", c.HTTP, "127.0.0.1:9180"},
		{"--modbus", c.Modbus, "127.0.0.1:1502"}, {"--dns", c.DNS, "127.0.0.1:8600"},
	} {
		host, _, err := net.SplitHostPort(f.addr)
		if err != nil {
			return fmt.Errorf("%s: expected HOST:PORT (e.g. %s), got %q", f.name, f.example, f.addr)
		}
		if host == "" && f.name == "--http" {
			return fmt.Errorf("--http: %q has no host: write 127.0.0.1%s for this host only, or 0.0.0.0%s for every interface", f.addr, f.addr, f.addr)
		}
	}
	return nil
}

// Run runs the whole path in one process: firmware-sim drives on a virtual RS-485 bus,
// the embedded broker, the gateway, and a subscriber that shows the live catalog.
func (c *demoCmd) Run(ctx context.Context, out *streams) error {
	stdout := out.stdout
	// On a terminal the demo is a screen: the catalog redrawn in place under a fixed
	// header, the logs in a file and their last lines below the table. Otherwise
	// (a pipe, a test) the banner and a table on each change of the catalog.
	screen := isTerminal(stdout)
	logw, logPath, logs := out.stderr, "", (*logTail)(nil)
	if screen {
		f, err := os.CreateTemp("", "rollcall-demo-*.log")
		if err != nil {
			return err
		}
		defer f.Close()
		logs = &logTail{max: demoLogLines}
		logw, logPath = io.MultiWriter(f, logs), f.Name()
	}
	log := c.logger(logw)
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
	// The demo's own mDNS instances carry a tag unique to this run, and the gateway
	// admits only those: another demo or device announcing on loopback is not listed.
	demoTag := fmt.Sprintf("demo%dt%d", os.Getpid(), time.Now().UnixNano()%1e9)
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
	addrs := demoAddrs{
		drives: c.Drives, scripted: !c.NoSchedule, link: link, loopback: lo, broker: g.BrokerURL(),
		control: s.ControlAddr(), http: g.HTTPAddr(), modbus: g.ModbusAddr(), dns: g.DNSAddr(),
		topics: contract.Topics{Prefix: cfg.MQTT.TopicPrefix}.ReadAllFilter(), logFile: logPath,
	}
	if !screen {
		for _, line := range addrs.banner() {
			fmt.Fprintln(stdout, line)
		}
		fmt.Fprintln(stdout)
	}

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
	if screen {
		view.screen = &demoScreen{tty: stdout.(*os.File), header: addrs.header, logs: logs, logFile: logPath}
	}
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

// demoLogLines is how many of the latest log lines the demo's screen shows.
const demoLogLines = 6

// demoAddrs are what the demo tells a person: where its parts listen and the commands
// to try against them.
type demoAddrs struct {
	drives   int
	scripted bool
	link     string // the virtual bus's device
	loopback string // the interface the TCP drives are announced on
	broker   string // tcp://host:port
	control  string // firmware-sim control API, host:port
	http     string
	modbus   string
	dns      string
	topics   string // the catalog's read-all filter
	logFile  string // screen mode: where the logs go
}

// fault is the command that sets bus drive 2's fault mode: "silent" breaks it, "none"
// heals it (README, "Commands").
func (a demoAddrs) fault(mode string) string {
	return fmt.Sprintf(`curl -X POST -d '{"mode":"%s"}' http://%s/v1/devices/bus1/2/fault`, mode, a.control)
}

// mbpoll is the command that reads the serial number of the drive behind virtual unit 1.
func (a demoAddrs) mbpoll() string {
	host, port, _ := net.SplitHostPort(a.modbus)
	return fmt.Sprintf("mbpoll -m tcp -p %s -a 1 -0 -r 100 -c 8 -t 4:hex -1 %s", port, host)
}

// dig is the command that lists the passing drives' SRV records.
func (a demoAddrs) dig() string {
	host, port, _ := net.SplitHostPort(a.dns)
	return fmt.Sprintf("dig @%s -p %s +short servo-drive.service.rollcall SRV", host, port)
}

// subscribe is the command that shows the catalog's MQTT messages.
func (a demoAddrs) subscribe() string {
	host, port, err := net.SplitHostPort(strings.TrimPrefix(a.broker, "tcp://"))
	if err != nil {
		return ""
	}
	return fmt.Sprintf("mosquitto_sub -h %s -p %s -t '%s' -v", host, port, a.topics)
}

// banner is what the demo prints once, before its tables, when its output is not a
// terminal (one "key: value" line each, which TestDemo reads).
func (a demoAddrs) banner() []string {
	out := []string{fmt.Sprintf("rollcall demo: broker %s, %d simulated drives on RS-485 bus %s (115200 baud), 2 Modbus TCP drives announced over mDNS on %s, fault injection at http://%s",
		a.broker, a.drives, a.link, a.loopback, a.control)}
	if a.scripted {
		out = append(out, fmt.Sprintf("  scripted: drive %d on bus1 goes silent 20 s in and answers again 15 s later (every minute)", a.drives))
	}
	out = append(out,
		fmt.Sprintf("  dashboard: http://%s/   metrics: http://%s/metrics", a.http, a.http),
		fmt.Sprintf("  try: %s   (then {\"mode\":\"none\"})", a.fault("silent")),
		fmt.Sprintf("  modbus: %s (unit 1: any live drive of cell 1; unit 2: axis 2)   e.g. %s", a.modbus, a.mbpoll()),
		fmt.Sprintf("  dns: %s   e.g. %s", a.dns, a.dig()))
	if sub := a.subscribe(); sub != "" {
		out = append(out, "  subscribe: "+sub)
	}
	return out
}

// header is the fixed top of the demo's screen: what runs, where to look, and the
// exact commands that break and heal a drive.
func (a demoAddrs) header(up time.Duration) []string {
	out := []string{
		fmt.Sprintf("rollcall demo — %d drives on RS-485 bus1, 2 Modbus TCP drives over mDNS — up %s — Ctrl-C quits",
			a.drives, up.Truncate(time.Second)),
		fmt.Sprintf("  dashboard  http://%s/      metrics http://%s/metrics", a.http, a.http),
		fmt.Sprintf("  modbus     %-21s  unit 1: a live drive of cell 1, unit 2: axis 2   %s", a.modbus, a.mbpoll()),
		fmt.Sprintf("  dns        %-21s  %s", a.dns, a.dig()),
		fmt.Sprintf("  break      %s", a.fault("silent")),
		fmt.Sprintf("  heal       %s", a.fault("none")),
		fmt.Sprintf("  broker     %-21s  %s", a.broker, a.subscribe()),
		fmt.Sprintf("  logs       %s", a.logFile),
	}
	if a.scripted {
		out = append(out, fmt.Sprintf("  scripted   drive %d goes silent 20 s in and answers again 15 s later, every minute", a.drives))
	}
	return out
}

// catalogView shows the catalog as the consumer library sees it: redrawn in place on a
// screen, or printed as a table when an instance comes, goes or changes status, state
// or endpoint (not for every refreshed record), checked at most 4 times a second.
type catalogView struct {
	out     io.Writer
	start   time.Time
	catalog *client.Client
	screen  *demoScreen // nil: line output

	printed string // line output: what the last printed table showed (tableKey)
}

// run shows the catalog after changes arrive on changes, until ctx ends or changes
// closes; a screen is also redrawn every second (its clock and ages move).
func (v *catalogView) run(ctx context.Context, changes <-chan client.Change) {
	if v.screen != nil {
		v.screen.enter()
		defer v.screen.leave()
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	dirty, ticks := true, 0
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
			ticks++
			if v.screen != nil && (dirty || ticks%4 == 0) {
				dirty = false
				v.screen.draw(v.start, catalogRows(v.read()))
			} else if v.screen == nil && dirty {
				dirty = false
				v.print()
			}
		}
	}
}

// read reads the catalog once: its title (the time and the gateways) and its records
// sorted by id.
func (v *catalogView) read() (title string, recs []*contract.Record) {
	ins := v.catalog.Instances("")
	var b strings.Builder
	fmt.Fprintf(&b, "── catalog at +%.1fs ", time.Since(v.start).Seconds())
	seen := map[string]bool{}
	for _, in := range ins {
		if !seen[in.Gateway] {
			seen[in.Gateway] = true
			fmt.Fprintf(&b, "(gateway %s %s, epoch %d) ", in.Gateway, in.GatewayState, in.GatewayEpoch)
		}
	}
	sort.Slice(ins, func(i, j int) bool { return ins[i].ID < ins[j].ID })
	return strings.TrimRight(b.String(), " "), recordsOf(ins)
}

// catalogRows are the catalog (read) as table rows: the title, the column headings,
// then one row per record, with short ids (shortID).
func catalogRows(title string, recs []*contract.Record) []string {
	short := shortIDs(recs)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tSERVICE\tSTATUS\tSTATE\tENDPOINT\tFOUND BY\tRTT ms\tLAST SEEN\tREVISION")
	for _, r := range recs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\n", short[r.ID], r.Service, r.Status, demoState(r),
			demoWhere(r), strings.Join(r.DiscoveredBy, ","), r.Check.RTTMS, r.LastSeen.Local().Format("15:04:05.000"), revisionText(r.Revision))
	}
	if len(recs) == 0 {
		fmt.Fprintln(tw, "(no instances yet)")
	}
	tw.Flush()
	return append([]string{title}, strings.Split(strings.TrimRight(b.String(), "\n"), "\n")...)
}

// tableKey is what a line-output table is printed for: each instance's id, status,
// state and endpoint.
func tableKey(recs []*contract.Record) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "%s %s %s %s\n", r.ID, r.Status, demoState(r), demoWhere(r))
	}
	return b.String()
}

// print prints the table (line output) when what it shows has changed since the last.
func (v *catalogView) print() {
	title, recs := v.read()
	key := tableKey(recs)
	if key == v.printed && key != "" {
		return
	}
	v.printed = key
	fmt.Fprintln(v.out, strings.Join(catalogRows(title, recs), "\n"))
	fmt.Fprintln(v.out)
}

// demoState is a drive's CiA 402 state, with its fault code when it has one.
func demoState(r *contract.Record) string {
	state := fmt.Sprint(r.State["cia402"])
	if r.State["fault"] == true {
		state += fmt.Sprintf(" (fault 0x%04X)", toInt(r.State["error_code"]))
	}
	return state
}

// demoWhere is an endpoint in the demo's table: an RS-485 drive as bus/unit (the device
// path is long and the same for all).
func demoWhere(r *contract.Record) string {
	if r.Endpoint.Transport == "modbus-rtu" {
		return fmt.Sprintf("%s/%d", r.Endpoint.Bus, r.Endpoint.Unit)
	}
	return endpointString(r.Endpoint)
}

// demoScreen draws the demo on a terminal: the alternate screen while it runs, each
// frame from the top-left corner (cursor home), every line cleared to its end and the
// rest of the screen cleared below the last, lines cut to the terminal's width.
type demoScreen struct {
	tty     *os.File
	header  func(up time.Duration) []string
	logs    *logTail
	logFile string
}

// Terminal control sequences (ECMA-48 and xterm's alternate screen).
const (
	ansiAltScreen    = "\033[?1049h\033[?25l" // alternate screen buffer, cursor hidden
	ansiMainScreen   = "\033[?25h\033[?1049l" // cursor shown, back to the main screen
	ansiHome         = "\033[H"               // cursor home: a frame starts here
	ansiClearLine    = "\033[K"               // clear to the end of the line
	ansiClearBelow   = "\033[J"               // clear to the end of the screen
	ansiClearScreen  = "\033[2J"
	demoScreenWidth  = 100 // when the terminal does not say its size
	demoScreenHeight = 30
)

// enter switches to the alternate screen.
func (d *demoScreen) enter() { fmt.Fprint(d.tty, ansiAltScreen+ansiClearScreen) }

// leave restores the screen the demo started on and says where the logs are.
func (d *demoScreen) leave() {
	fmt.Fprint(d.tty, ansiMainScreen)
	fmt.Fprintf(d.tty, "rollcall demo stopped; its log: %s\r\n", d.logFile)
}

// size is the terminal's width and height (defaults when it does not say).
func (d *demoScreen) size() (w, h int) {
	w, h = demoScreenWidth, demoScreenHeight
	_ = termios.Control(d.tty, func(fd int) error {
		ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
		if err == nil && ws.Col > 0 && ws.Row > 0 {
			w, h = int(ws.Col), int(ws.Row)
		}
		return err
	})
	return w, h
}

// draw redraws the screen: the header, the catalog (rows), the latest log lines.
func (d *demoScreen) draw(start time.Time, rows []string) {
	w, h := d.size()
	lines := append(d.header(time.Since(start)), "")
	logs := d.logs.lines()
	room := h - len(lines) - len(logs) - 2 // the table's room: the rest, but the log pane
	if room < 3 {
		room = 3
	}
	if len(rows) > room {
		rows = append(rows[:room-1], fmt.Sprintf("… %d more", len(rows)-room+1))
	}
	lines = append(lines, rows...)
	lines = append(lines, "", "── latest log lines")
	lines = append(lines, logs...)
	if len(lines) > h {
		lines = lines[:h]
	}
	var b strings.Builder
	b.WriteString(ansiHome)
	for i, l := range lines {
		if r := []rune(l); len(r) > w {
			l = string(r[:w-1]) + "…"
		}
		b.WriteString(l)
		b.WriteString(ansiClearLine)
		if i < len(lines)-1 {
			b.WriteString("\r\n")
		}
	}
	b.WriteString(ansiClearBelow)
	_, _ = io.WriteString(d.tty, b.String())
}

// logTail is an io.Writer that keeps the last max lines written to it (the demo's
// screen shows them), safe for concurrent use.
type logTail struct {
	max int

	mu   sync.Mutex
	last []string
	part []byte // an unfinished line
}

// Write keeps the complete lines of p (and holds back an unfinished one).
func (t *logTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part = append(t.part, p...)
	for {
		i := bytes.IndexByte(t.part, '\n')
		if i < 0 {
			break
		}
		t.last = append(t.last, strings.ToValidUTF8(string(t.part[:i]), "?"))
		t.part = t.part[i+1:]
	}
	if len(t.last) > t.max {
		t.last = append(t.last[:0], t.last[len(t.last)-t.max:]...)
	}
	return len(p), nil
}

// lines are the kept lines, oldest first.
func (t *logTail) lines() []string {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.last...)
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
