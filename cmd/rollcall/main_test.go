package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/internal/termios"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// zeroconf v1.0.0's (*Server).probe goroutine (the demo advertises over mDNS) is not
// waited for by Shutdown and ends by itself about 3.5 s after a registration.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/grandcat/zeroconf.(*Server).probe"))
}

func TestVersionAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "rollcall ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	if code := run(nil, &out, &errb); code != 2 {
		t.Fatalf("no command: exit %d, want 2", code)
	}
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 {
		t.Fatalf("unknown command: exit %d, want 2", code)
	}
	if code := run([]string{"scan"}, &out, &errb); code != 2 {
		t.Fatalf("scan without --device: exit %d, want 2", code)
	}
	errb.Reset()
	if code := run([]string{"scan", "--device", "/nonexistent/tty", "--units", "1"}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), "/nonexistent/tty") {
		t.Fatalf("scan of a missing port: exit %d, stderr %q", code, errb.String())
	}
	if code := run([]string{"gateway", "--config", "/nonexistent.yaml"}, &out, &errb); code != 1 {
		t.Fatalf("gateway with a missing config: exit %d, want 1", code)
	}
}

// TestColumns: a fixed-width row pads short cells and cuts long ones with "…", so rows
// printed one at a time line up with their header.
func TestColumns(t *testing.T) {
	c := columns{4, 6, 3}
	for _, tt := range []struct {
		cells []string
		want  string
	}{
		{[]string{"UNIT", "VENDOR", "X", "last"}, "UNIT  VENDOR  X    last"},
		{[]string{"7", "acmé", "toolong", "z"}, "7     acmé    to…  z"},
		{[]string{"12", "a very long vendor", "-", "9.99"}, "12    a ver…  -    9.99"},
	} {
		if got := c.row(tt.cells...); got != tt.want {
			t.Errorf("row(%q) = %q, want %q", tt.cells, got, tt.want)
		}
	}
}

// TestShortID: the one rule for the ids shown to people (without the vendor slug of a
// <vendor>-<serial> id, without the gateway of a <gateway>-<local> id), ids made whole
// again where short ones would be ambiguous in one view, and a typed id, full or short,
// read back to the full one.
func TestShortID(t *testing.T) {
	sim := contract.Identity{Vendor: "Rollcall Firmware Sim", Serial: "SIM-0001"}
	for _, tt := range []struct {
		id      string
		ident   contract.Identity
		gateway string
		want    string
	}{
		{"rollcall-firmware-sim-sim-0001", sim, "demo-gw", "sim-0001"},
		{"acme-sn-42", contract.Identity{Vendor: "ACME", Serial: "SN 42"}, "gw", "sn-42"},
		{"unknown-sn-42", contract.Identity{Serial: "SN 42"}, "gw", "sn-42"},
		{"cell2-gw-bus1-u3", contract.Identity{}, "cell2-gw", "bus1-u3"},
		{"cell2-gw-bus1-u3", contract.Identity{}, "Cell2 GW", "bus1-u3"},               // the gateway's slug
		{"cell2-gw-planner", contract.Identity{Vendor: "ACME"}, "cell2-gw", "planner"}, // vendor without serial: gateway form
		{"other-id", contract.Identity{}, "cell2-gw", "other-id"},                      // neither form: whole
		{"acme-", contract.Identity{Vendor: "ACME", Serial: "x"}, "gw", "acme-"},       // nothing left: whole
		{contract.InstanceID(contract.Identity{Vendor: strings.Repeat("v", 70), Serial: "1"}, "", ""),
			contract.Identity{Vendor: strings.Repeat("v", 70), Serial: "1"}, "gw",
			contract.InstanceID(contract.Identity{Vendor: strings.Repeat("v", 70), Serial: "1"}, "", "")}, // cut and hashed: whole
	} {
		if got := shortID(tt.id, tt.ident, tt.gateway); got != tt.want {
			t.Errorf("shortID(%q, %+v, %q) = %q, want %q", tt.id, tt.ident, tt.gateway, got, tt.want)
		}
	}
	rec := func(id, vendor, serial, gateway string) *contract.Record {
		r := testutil.FullRecord(gateway, id, 1)
		r.Identity = contract.Identity{Vendor: vendor, Serial: serial}
		return &r
	}
	recs := []*contract.Record{
		rec("rollcall-firmware-sim-sim-0001", "Rollcall Firmware Sim", "SIM-0001", "gw1"),
		rec("acme-sn-42", "ACME", "SN 42", "gw1"),
		rec("beta-sn-42", "Beta", "SN 42", "gw1"), // the same serial as ACME's: both whole
		rec("cell1-gw-bus1-u3", "", "", "cell1-gw"),
		rec("cell2-gw-bus1-u3", "", "", "cell2-gw"), // two gateways' bus1-u3: both whole
		rec("cell1-gw-bus2-u1", "", "", "cell1-gw"),
		rec("bus2-u1", "", "", "gw9"), // another instance's short id as a full id: that one whole
	}
	want := map[string]string{
		"rollcall-firmware-sim-sim-0001": "sim-0001",
		"acme-sn-42":                     "acme-sn-42",
		"beta-sn-42":                     "beta-sn-42",
		"cell1-gw-bus1-u3":               "cell1-gw-bus1-u3",
		"cell2-gw-bus1-u3":               "cell2-gw-bus1-u3",
		"cell1-gw-bus2-u1":               "cell1-gw-bus2-u1",
		"bus2-u1":                        "bus2-u1",
	}
	if got := shortIDs(recs); !reflect.DeepEqual(got, want) {
		t.Errorf("shortIDs = %v, want %v", got, want)
	}
	for typed, want := range map[string]string{
		"sim-0001":                       "rollcall-firmware-sim-sim-0001",
		"rollcall-firmware-sim-sim-0001": "rollcall-firmware-sim-sim-0001",
		"bus2-u1":                        "bus2-u1",
		"acme-sn-42":                     "acme-sn-42",
		"sn-42":                          "", // ambiguous: not resolved
		"sim-0009":                       "",
	} {
		if got, ok := resolveID(typed, recs); got != want || ok != (want != "") {
			t.Errorf("resolveID(%q) = %q, %v; want %q", typed, got, ok, want)
		}
	}
}

// TestScan runs `rollcall scan` against firmware-sim drives on a pty bus, with the
// command's default reply timeout.
func TestScan(t *testing.T) {
	bus := rig.New(t)
	bus.StartSim(2, 4)
	link := bus.Link

	var out, errb bytes.Buffer
	// The default 50 ms reply timeout suits a real bus; the simulator shares this
	// machine's CPU with whatever else runs, so the test gives it 1 s (a margin, not a
	// different behaviour: absent units still time out).
	code := run([]string{"scan", "--device", link, "--baud", "115200", "--units", "1-6", "--timeout", "1s", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("scan: exit %d\n%s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("scan found %d devices, want 2:\n%s", len(lines), out.String())
	}
	var r scanResult
	if err := json.Unmarshal([]byte(lines[1]), &r); err != nil {
		t.Fatal(err)
	}
	if r.Unit != 4 || r.Serial != "SIM-0004" || r.ID != "rollcall-firmware-sim-sim-0004" || r.Profile != "firmware-sim-drive" || r.State["cia402"] != "operation_enabled" || !r.DeviceID {
		t.Fatalf("unit 4: %+v", r)
	}
	if !strings.Contains(errb.String(), "2 of 6 unit IDs answered") {
		t.Fatalf("summary missing: %q", errb.String())
	}
	// The table: each column of every row starts where its header does (rows are
	// printed as they are found, so widths are fixed, not measured).
	out.Reset()
	if code := run([]string{"scan", "--device", link, "--baud", "115200", "--units", "2-4", "--timeout", "1s"}, &out, &errb); code != 0 {
		t.Fatalf("scan (table): exit %d\n%s", code, errb.String())
	}
	table := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(table) != 3 {
		t.Fatalf("scan table:\n%s", out.String())
	}
	if f := strings.Fields(table[2]); len(f) < 2 || f[0] != "4" || f[1] != "sim-0004" {
		t.Errorf("scan row of unit 4: %q; want its short id sim-0004 second", table[2])
	}
	for _, col := range []string{"ID", "VENDOR", "SERIAL", "PROFILE", "STATE"} {
		at := strings.Index(table[0], col)
		for _, row := range table[1:] {
			if at < 1 || len([]rune(row)) <= at || []rune(row)[at-1] != ' ' || []rune(row)[at] == ' ' {
				t.Errorf("column %s (at %d) does not line up in %q", col, at, row)
			}
		}
	}
	out.Reset()
	if code := run([]string{"scan", "--device", link, "--baud", "115200", "--units", "5-6"}, &out, &errb); code != 1 {
		t.Fatalf("scan of empty units: exit %d, want 1", code)
	}
}

// demoIDs are the short ids (as the demo shows them) of the demo's six drives: four on
// its RS-485 bus, two Modbus TCP drives announced over mDNS (full ids
// rollcall-firmware-sim-sim-0001 …).
var demoIDs = []string{"sim-0001", "sim-0002", "sim-0003", "sim-0004", "sim-0105", "sim-0106"}

// demoStatus reads the statuses of a demo catalog table (its text from the "── catalog
// at" line on): instance → status.
func demoStatus(t *testing.T, table string) map[string]string {
	status := map[string]string{}
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[1] == "servo-drive" {
			status[f[0]] = f[2]
			// The revision, last, as epoch.n (a person reads it), not 4294967297.
			if !regexp.MustCompile(`^[0-9]+\.[0-9]+$`).MatchString(f[len(f)-1]) {
				t.Errorf("demo row %q: revision %q, want <epoch>.<n>", line, f[len(f)-1])
			}
		}
	}
	return status
}

// demoArgs run the demo on free ports, without its scripted silence.
var demoArgs = []string{"demo", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--no-schedule",
	"--http", "127.0.0.1:0", "--modbus", "127.0.0.1:0", "--dns", "127.0.0.1:0"}

// TestDemo runs `rollcall demo` (what `make run` starts) with its output not on a
// terminal, until its catalog shows the 4 bus drives and the 2 mDNS-announced TCP drives
// passing, then tries the README's examples against it (demoRouting, demoBreakHeal) and
// interrupts it. The demo browses every _modbus._tcp announcement on the loopback
// interface, which other processes share: their drives may appear in its table too, so
// the test looks for the demo's six drives by id rather than counting rows. Off a
// terminal a table is printed when an instance's status, state or endpoint changes, not
// for every refreshed record.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testutil.SyncBuffer
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- runCommand(ctx, &out, demoArgs...) }()
	last := func() string {
		select {
		case err := <-done:
			t.Fatalf("demo ended: %v\n%s", err, out.String())
		default:
		}
		tables := strings.Split(out.String(), "── catalog at")
		return tables[len(tables)-1]
	}
	testutil.EventuallyValue(t, 30*time.Second, "the demo's 6 drives passing in its catalog table", func() (string, bool) {
		table := last()
		status := demoStatus(t, table)
		for _, id := range demoIDs {
			if status[id] != "passing" {
				return table, false
			}
		}
		return table, true
	})
	t.Logf("demo: 6 drives passing %v after start", time.Since(start))
	// Quiet off a terminal: the six drives' record refreshes print nothing more.
	if n := strings.Count(out.String(), "── catalog at"); n > 40 {
		t.Errorf("the demo printed %d tables before its drives were all passing: one per change of what they show expected", n)
	}
	banner := out.String()
	// The demo's gateway has no admin token: rollcall maint is refused (exit 1), saying why.
	tok := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tok, []byte("demo-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var merr bytes.Buffer
	dashboard := strings.TrimSuffix(demoField(t, banner, "dashboard:"), "/")
	if code := run([]string{"maint", "sim-0002", "--reason", "x", "--gateway", dashboard, "--token-file", tok}, io.Discard, &merr); code != 1 || !strings.Contains(merr.String(), "http.admin_token_file") {
		t.Errorf("maint against the demo: exit %d, %q; want 1 naming http.admin_token_file", code, merr.String())
	}
	demoRouting(t, banner)
	demoBreakHeal(t, banner, last)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo: %v", err)
	}
}

// demoField is the first word after prefix on a line of the demo's banner.
func demoField(t *testing.T, banner, prefix string) string {
	t.Helper()
	for _, line := range strings.Split(banner, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			return strings.Fields(rest)[0]
		}
	}
	t.Fatalf("no %q line in the demo's banner:\n%s", prefix, banner)
	return ""
}

// demoFault sets the fault mode of the demo's device bus/unit (e.g. "bus1/2") through
// the fault injection API at control (host:port), as the README's curl examples do.
func demoFault(t *testing.T, control, device, mode string) {
	t.Helper()
	resp, err := http.Post("http://"+control+"/v1/devices/"+device+"/fault", "application/json", strings.NewReader(`{"mode":"`+mode+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("fault %s %s: %s", device, mode, resp.Status)
	}
}

// demoControl is the demo's fault injection API (host:port), from its banner's try line.
func demoControl(t *testing.T, banner string) string {
	return strings.TrimSuffix(strings.TrimPrefix(demoField(t, banner, "try: curl -X POST -d '{\"mode\":\"silent\"}'"), "http://"), "/v1/devices/bus1/2/fault")
}

// demoRouting runs the README's worked example of the routing Modbus TCP server and the
// DNS interface against the running demo, whose banner (banner) gives their addresses
// and the fault injection API's: mbpoll reads the serial of the drive serving unit 1
// (sticky: bus drive 1), a write to unit 1 is refused (Illegal function), drive 1 is
// silenced, the next read is served by another drive; unit 2 is axis 2; dig lists the
// six drives' SRV records and axis 2's TXT; drive 1 is healed.
func demoRouting(t *testing.T, banner string) {
	mbpoll := testutil.NeedTool(t, "mbpoll", "mbpoll")
	dig := testutil.NeedTool(t, "dig", "bind9-dnsutils")
	mb, dns, control := demoField(t, banner, "modbus:"), demoField(t, banner, "dns:"), demoControl(t, banner)
	if serial, out, err := testutil.MbpollSerial(mbpoll, mb, 1); err != nil || serial != "SIM-0001" {
		t.Fatalf("mbpoll unit 1: %q, %v\n%s", serial, err, out)
	}
	if serial, out, err := testutil.MbpollSerial(mbpoll, mb, 2); err != nil || serial != "SIM-0002" {
		t.Fatalf("mbpoll unit 2 (axis 2): %q, %v\n%s", serial, err, out)
	}
	if out, err := testutil.MbpollWrite(mbpoll, mb, 1, 2, 15); err == nil || !strings.Contains(out, "Illegal function") {
		t.Errorf("mbpoll write to unit 1: %v\n%s; want Illegal function", err, out)
	}
	if srv := testutil.Dig(t, dig, dns, "servo-drive.service.rollcall", "SRV"); len(srv) != 6 {
		t.Errorf("dig SRV servo-drive: %q, want the demo's 6 drives", srv)
	}
	if txt := strings.Join(testutil.Dig(t, dig, dns, "axis-2.servo-drive.service.rollcall", "TXT"), " "); !strings.Contains(txt, "rollcall-firmware-sim-sim-0002") {
		t.Errorf("dig TXT axis-2.servo-drive: %q, want drive 2", txt)
	}
	demoFault(t, control, "bus1/1", "silent")
	if serial, out, err := testutil.MbpollSerial(mbpoll, mb, 1); err != nil || serial == "SIM-0001" || !strings.HasPrefix(serial, "SIM-") {
		t.Errorf("mbpoll unit 1 with drive 1 silent: %q, %v\n%s; want another drive", serial, err, out)
	}
	demoFault(t, control, "bus1/1", "none")
}

// demoBreakHeal tries the README's "Try a drive dying while the demo runs": drive 2,
// silenced, goes critical in the demo's table and vanishes after
// deregister_critical_after (10 s in the demo); healed, it comes back passing with the
// same id. last returns the demo's latest table.
func demoBreakHeal(t *testing.T, banner string, last func() string) {
	control, drive2 := demoControl(t, banner), demoIDs[1]
	demoFault(t, control, "bus1/2", "silent")
	testutil.EventuallyValue(t, 10*time.Second, "drive 2 critical", func() (string, bool) {
		table := last()
		return table, demoStatus(t, table)[drive2] == "critical"
	})
	testutil.EventuallyValue(t, 30*time.Second, "drive 2 gone from the table", func() (string, bool) {
		table := last()
		_, listed := demoStatus(t, table)[drive2]
		return table, !listed
	})
	demoFault(t, control, "bus1/2", "none")
	testutil.EventuallyValue(t, 30*time.Second, "drive 2 and drive 1 passing again, same ids", func() (string, bool) {
		table := last()
		status := demoStatus(t, table)
		return table, status[drive2] == "passing" && status[demoIDs[0]] == "passing"
	})
}

// TestDemoScreen runs `rollcall demo` with its output on a pseudo-terminal: it draws on
// the alternate screen, each frame from cursor home and cleared below, with the fixed
// header (dashboard, Modbus and DNS addresses, the commands that break and heal a drive,
// the log file) on every frame; the catalog is redrawn in place until the six drives
// are passing; logs go to the file, not to stderr; at the end the screen is restored.
func TestDemoScreen(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	master, tty, err := termios.OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	defer master.Close()
	if err := termios.Control(tty, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: 50, Col: 200})
	}); err != nil {
		t.Fatal(err)
	}
	var screen testutil.SyncBuffer
	copied := make(chan struct{})
	go func() { defer close(copied); _, _ = io.Copy(&screen, master) }()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errb testutil.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- runContext(ctx, demoArgs, tty, &errb) }()
	// complete frames: from cursor home to the clear below the last line.
	frames := func() []string {
		select {
		case code := <-done:
			t.Fatalf("demo ended: exit %d\n%s\n%q", code, errb.String(), screen.String())
		default:
		}
		var out []string
		for _, f := range strings.Split(screen.String(), ansiHome)[1:] {
			if body, ok := strings.CutSuffix(f, ansiClearBelow); ok {
				out = append(out, strings.ReplaceAll(strings.ReplaceAll(body, ansiClearLine, ""), "\r", ""))
			}
		}
		return out
	}
	testutil.EventuallyValue(t, 45*time.Second, "the six drives passing on the demo's screen, after 3 redraws", func() (string, bool) {
		fs := frames()
		if len(fs) < 3 {
			return fmt.Sprint(len(fs), " frames"), false
		}
		frame := fs[len(fs)-1]
		status := demoStatus(t, frame[strings.Index(frame, "── catalog at"):])
		for _, id := range demoIDs {
			if status[id] != "passing" {
				return frame, false
			}
		}
		return frame, true
	})
	fs := frames()
	if !strings.HasPrefix(screen.String(), ansiAltScreen) {
		t.Errorf("the demo did not start on the alternate screen: %q", screen.String()[:min(40, screen.Len())])
	}
	header := regexp.MustCompile(`(?s)^rollcall demo — .*Ctrl-C quits\n` +
		`  dashboard  http://127\.0\.0\.1:[0-9]+/ .*\n` +
		`  modbus     127\.0\.0\.1:[0-9]+ .* mbpoll -m tcp -p [0-9]+ .*\n` +
		`  dns        127\.0\.0\.1:[0-9]+ .*dig @127\.0\.0\.1 -p [0-9]+ .*\n` +
		`  break      curl -X POST -d '\{"mode":"silent"\}' http://127\.0\.0\.1:[0-9]+/v1/devices/bus1/2/fault\n` +
		`  heal       curl -X POST -d '\{"mode":"none"\}' http://127\.0\.0\.1:[0-9]+/v1/devices/bus1/2/fault\n` +
		`  broker     tcp://.*\n` +
		`  logs       (\S+)\n`)
	for i, f := range fs {
		if !header.MatchString(f) {
			t.Fatalf("frame %d of %d lacks the header:\n%s", i+1, len(fs), f)
		}
	}
	logFile := header.FindStringSubmatch(fs[len(fs)-1])[1]
	defer os.Remove(logFile)
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("demo: exit %d: %s", code, errb.String())
	}
	tty.Close() // the demo wrote its last: the copy ends at EOF (EIO)
	<-copied
	tail := screen.String()[strings.LastIndex(screen.String(), ansiClearBelow):]
	if !strings.Contains(tail, ansiMainScreen) || !strings.Contains(tail, logFile) {
		t.Errorf("after the demo: %q; want the main screen back and the log file named", tail)
	}
	if strings.Contains(errb.String(), "level=") {
		t.Errorf("logs on stderr while the screen was drawn:\n%s", errb.String())
	}
	if b, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(b), "instance status") {
		t.Errorf("log file %s: %v, %d bytes; want the demo's logs", logFile, err, len(b))
	}
}

// TestFindAndWatch runs `rollcall find` and `rollcall watch --json` against a gateway
// (embedded broker) with firmware-sim drives.
func TestFindAndWatch(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	r := rig.New(t)
	r.StartSim(1, 2)
	r.GatewayID = "find-gw"
	r.MQTTExtra = ", embedded_auth: {allow_anonymous: true}"
	g := r.StartGateway("embedded", `
discovery:
  serial:
    - {name: bus1, device: $LINK, baud: 115200, units: "1-2",
       devices: [{unit: 1, meta: {axis: "1"}}, {unit: 2, meta: {axis: "2"}}]}
`)
	url := g.BrokerURL()

	// find: retried until the gateway has registered both drives.
	var out, errb bytes.Buffer
	testutil.Eventually(t, 15*time.Second, "find to find drive 2 (axis=2)", func() bool {
		out.Reset()
		errb.Reset()
		code := run([]string{"find", "servo-drive", "--broker", url, "--meta", "axis=2"}, &out, &errb)
		if code != 0 && code != 1 {
			t.Fatalf("find: exit %d: %s", code, errb.String())
		}
		return code == 0
	})
	if got := out.String(); !strings.HasPrefix(got, "modbus-rtu bus1/2 (") || !strings.HasSuffix(got, ") sim-0002\n") {
		t.Fatalf("find printed %q", got)
	}
	if code := run([]string{"find", "servo-drive", "--broker", url, "--meta", "axis=9"}, &out, &errb); code != 1 {
		t.Fatalf("find with no match: exit %d, want 1", code)
	}
	if code := run([]string{"find", "servo-drive", "--broker", "tcp://127.0.0.1:1", "--timeout", "500ms"}, &out, &errb); code != 2 {
		t.Fatalf("find without a broker: exit %d, want 2", code)
	}
	if code := run([]string{"find", "--broker", url}, &out, &errb); code != 2 {
		t.Fatalf("find without a service: exit %d, want 2", code)
	}

	// watch --json prints the catalog as JSON lines.
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	var wout testutil.SyncBuffer
	wdone := make(chan error, 1)
	go func() { wdone <- runCommand(wctx, &wout, "watch", "--broker", url, "--json") }()
	testutil.Eventually(t, 15*time.Second, "watch to print both drives", func() bool {
		select {
		case err := <-wdone:
			t.Fatalf("watch ended: %v", err)
		default:
		}
		return strings.Contains(wout.String(), "rollcall-firmware-sim-sim-0001") && strings.Contains(wout.String(), "rollcall-firmware-sim-sim-0002")
	})
	wcancel()
	if err := <-wdone; err != nil {
		t.Fatalf("watch: %v", err)
	}
	var ev struct {
		Event    string         `json:"event"`
		Instance map[string]any `json:"instance"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(wout.String(), "\n", 2)[0]), &ev); err != nil || ev.Event != "added" || ev.Instance["status"] != "passing" {
		t.Fatalf("watch line %v %+v", err, ev)
	}
	// What the consumer knows of the instance, spelt as its --help says (no Go names).
	for key, want := range map[string]any{"stale": false, "gateway_state": "online", "expired": false, "age_ms": 0.0} {
		if got, ok := ev.Instance[key]; !ok || got != want {
			t.Errorf("watch --json: %q is %v (present %v), want %v in %+v", key, got, ok, want, ev.Instance)
		}
	}
	if _, ok := ev.Instance["gateway_epoch"]; !ok {
		t.Errorf("watch --json: no gateway_epoch in %+v", ev.Instance)
	}
	for key := range ev.Instance {
		if key != strings.ToLower(key) {
			t.Errorf("watch --json: field %q is not the record's spelling", key)
		}
	}
}

// TestKeyAndTrustedKeys: `rollcall key` prints the gateway's key as a trusted-keys line;
// `find --trusted-keys` with that file finds its drives, with another gateway's key finds
// nothing (exit 1: every record is ignored), and a malformed file is a usage error
// naming file and line.
func TestKeyAndTrustedKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	r := rig.New(t)
	r.StartSim(1)
	r.GatewayID = "key-gw"
	r.MQTTExtra = ", embedded_auth: {allow_anonymous: true}"
	g := r.StartGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1"}]
`)
	cfg := filepath.Join(r.Dir, "gw.yaml")
	if err := os.WriteFile(cfg, []byte("gateway: {id: key-gw, state_dir: "+filepath.Join(r.Dir, "state-key-gw")+"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"key", "--config", cfg}, &out, &errb); code != 0 {
		t.Fatalf("key: exit %d: %s", code, errb.String())
	}
	line := out.String()
	if !strings.HasPrefix(line, "key-gw ed25519:") || len(strings.Fields(line)) != 2 {
		t.Fatalf("key printed %q", line)
	}
	keys := filepath.Join(r.Dir, "trusted-keys")
	if err := os.WriteFile(keys, []byte("# cell 1\n"+line), 0o644); err != nil {
		t.Fatal(err)
	}
	url := g.BrokerURL()
	testutil.Eventually(t, 15*time.Second, "find with the gateway's key to find its drive", func() bool {
		out.Reset()
		code := run([]string{"find", "servo-drive", "--broker", url, "--trusted-keys", keys}, &out, &errb)
		if code != 0 && code != 1 {
			t.Fatalf("find: exit %d: %s", code, errb.String())
		}
		return code == 0
	})
	// Another gateway's key: the drive's records are not signed with it.
	other := filepath.Join(r.Dir, "other-keys")
	if err := os.WriteFile(other, []byte("key-gw ed25519:"+base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := run([]string{"find", "servo-drive", "--broker", url, "--trusted-keys", other}, &out, &errb); code != 1 {
		t.Fatalf("find with a wrong key: exit %d, want 1 (none live): %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "signature") {
		t.Errorf("find with a wrong key said nothing about signatures: %s", errb.String())
	}
	bad := filepath.Join(r.Dir, "bad-keys")
	if err := os.WriteFile(bad, []byte("key-gw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := run([]string{"find", "servo-drive", "--broker", url, "--trusted-keys", bad}, &out, &errb); code != 2 || !strings.Contains(errb.String(), bad+":1:") {
		t.Fatalf("find with a malformed keys file: exit %d, %s", code, errb.String())
	}
}

// TestMaint runs `rollcall maint` against a gateway's HTTP API: an instance goes into
// maintenance with a reason and an until, and back with --off; mistakes are usage
// errors (exit 2), a wrong token is refused by the gateway (exit 1, its message shown).
func TestMaint(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	h.StartSim(1)
	tokFile := filepath.Join(h.Dir, "admin.token")
	if err := os.WriteFile(tokFile, []byte("maint-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badTok := filepath.Join(h.Dir, "bad.token")
	if err := os.WriteFile(badTok, []byte("not-the-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := h.StartGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1"}]
http: {listen: "127.0.0.1:0", admin_token_file: `+tokFile+`}
`)
	id := "rollcall-firmware-sim-sim-0001"
	rig.WaitCatalog(t, g, 30*time.Second, "the drive passing", rig.StatusIs(id, contract.Passing))
	gw := "http://" + g.HTTPAddr()
	maint := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"maint"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errs := maint(id, "--reason", "encoder replaced", "--until", "1h", "--gateway", gw, "--token-file", tokFile)
	if code != 0 || !strings.Contains(out, "maintenance (encoder replaced) until ") {
		t.Fatalf("maint: exit %d, %q, %q", code, out, errs)
	}
	if rec, _ := g.Registry().Get(id); rec.Status != contract.Maintenance || rec.Maintenance == nil || rec.Maintenance.Until.IsZero() {
		t.Errorf("after maint: %s %+v", rec.Status, rec.Maintenance)
	}
	for _, bad := range [][]string{
		{id, "--gateway", gw, "--token-file", tokFile},                           // no reason
		{"--reason", "x", "--gateway", gw, "--token-file", tokFile},              // no id
		{id, "--off", "--reason", "x", "--gateway", gw, "--token-file", tokFile}, // both
		{id, "--reason", "x", "--until", "yesterday", "--gateway", gw, "--token-file", tokFile},
	} {
		if code, _, errs := maint(bad...); code != 2 || errs == "" {
			t.Errorf("maint %q: exit %d, stderr %q; want 2 and a message", bad, code, errs)
		}
	}
	if code, _, errs := maint(id, "--off", "--gateway", gw, "--token-file", badTok); code != 1 || !strings.Contains(errs, "401") {
		t.Errorf("maint with a wrong token: exit %d, %q; want 1 and the gateway's 401", code, errs)
	}
	if code, _, errs := maint("no-such-instance", "--off", "--gateway", gw, "--token-file", tokFile); code != 1 || !strings.Contains(errs, "404") {
		t.Errorf("maint of an unknown id: exit %d, %q; want 1 and 404", code, errs)
	}
	// The short id the tables show names the instance too.
	if code, out, errs := maint("sim-0001", "--off", "--gateway", gw, "--token-file", tokFile); code != 0 || out != id+": maintenance ended\n" {
		t.Fatalf("maint sim-0001 --off: exit %d, %q, %q", code, out, errs)
	}
	rig.WaitCatalog(t, g, 10*time.Second, "passing again", rig.StatusIs(id, contract.Passing))
}

// TestCheck runs `rollcall check`: every problem of a config in one run, each with
// file:line:column and key (a rule violation, an unreadable password file, a missing
// serial device, an unreachable broker with --broker), exit 1; a fit config, exit 0;
// a usage error, exit 2. `rollcall config` prints the commented sample, which loads.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	dev := filepath.Join(dir, "ttyUSB0")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	check := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"check"}, args...), &out, &errb)
		return code, out.String() + errb.String()
	}
	good := write("good.yaml", "gateway: {id: gw1}\ndiscovery:\n  serial: [{name: bus1, device: "+dev+", baud: 115200}]\n")
	if code, out := check("--config", good); code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("check of a fit config: exit %d\n%s", code, out)
	}
	bad := write("bad.yaml", `gateway: {id: gw1}
mqtt: {broker: "tcp://`+closed+`", password_file: `+filepath.Join(dir, "nope.pw")+`}
discovery:
  serial: [{name: bus1, device: `+filepath.Join(dir, "ttyUSB9")+`, baud: fast}]
health: {poll_intervall: 1s}
`)
	code, out := check("--config", bad, "--broker")
	for _, want := range []string{
		"bad.yaml:2:", "mqtt.password_file: cannot be read",
		"bad.yaml:4:", "discovery.serial[0].baud",
		"bad.yaml:5:", "poll_intervall",
		"broker tcp://" + closed + ": cannot be reached",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check of a bad config: no %q in\n%s", want, out)
		}
	}
	if code != 1 {
		t.Errorf("check of a bad config: exit %d, want 1", code)
	}
	if code, _ := check(); code != 2 {
		t.Errorf("check without --config: exit %d, want 2", code)
	}
	var sample bytes.Buffer
	if code := run([]string{"config"}, &sample, io.Discard); code != 0 {
		t.Fatalf("config: exit %d", code)
	}
	if _, err := config.Parse("sample.yaml", sample.Bytes()); err != nil {
		t.Errorf("the sample printed by rollcall config does not load: %v", err)
	}
	// As README and the helps chain them: rollcall config > gateway.yaml && rollcall check --config gateway.yaml.
	if code, out := check("--config", write("gateway.yaml", sample.String())); code != 0 {
		t.Errorf("check of the sample printed by rollcall config: exit %d, want 0\n%s", code, out)
	}
}

// runCommand runs `rollcall ARGS…` until ctx ends, its output to stdout and its
// messages discarded; an error when it exits other than 0.
func runCommand(ctx context.Context, stdout io.Writer, args ...string) error {
	var errb testutil.SyncBuffer
	if code := runContext(ctx, args, stdout, &errb); code != 0 {
		return fmt.Errorf("rollcall %s: exit status %d: %s", strings.Join(args, " "), code, errb.String())
	}
	return nil
}

// runDemo runs `rollcall demo ARGS…` until ctx ends, its output to stdout.
func runDemo(ctx context.Context, stdout io.Writer, args ...string) error {
	return runCommand(ctx, stdout, append([]string{"demo"}, args...)...)
}

// TestUsageErrors: each command's typical mistake exits 2 with one message on stderr,
// naming the bad flag or value once, with no internal marker word and nothing on
// stdout; the same for mistakes found after parsing (a malformed --meta is a usage
// error, 2, not "none live", 1).
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tok, []byte("token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		once string // named exactly once in the message
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"gateway", "--conifg", "x"}, "--conifg"},
		{[]string{"gateway", "--config"}, "--config: a value is required"},
		{[]string{"gateway", "--log-level", "loud"}, `"loud"`},
		{[]string{"gateway", "extra"}, "extra"},
		{[]string{"demo", "--drives", "99"}, "--drives: expected 1–16, got 99"},
		{[]string{"demo", "--poll", "fast"}, `"fast"`},
		{[]string{"demo", "--http", ":9180"}, `--http: ":9180" has no host`},
		{[]string{"demo", "--modbus", "1502"}, `--modbus: expected HOST:PORT`},
		{[]string{"watch", "--timeout", "10"}, "--timeout"},
		{[]string{"watch", "--brokr", "tcp://x"}, "--brokr"},
		{[]string{"find"}, "SERVICE is required"},
		{[]string{"find", "servo-drive", "--meta", "axis"}, `"axis"`},
		{[]string{"find", "servo-drive", "--strategy", "fastest"}, `"fastest"`},
		{[]string{"find", "servo-drive", "other-service"}, "other-service"},
		{[]string{"scan"}, "--device"},
		{[]string{"scan", "--device", "/dev/ttyUSB0", "--baud", "fast"}, `"fast"`},
		{[]string{"scan", "--device", "/dev/ttyUSB0", "--units", "0-300"}, `"0-300"`},
		{[]string{"scan", "--device", "/dev/ttyUSB0", "--parity", "mark"}, `"mark"`},
		{[]string{"key", "--conf", "x"}, "unknown flag --conf,"},
		{[]string{"maint"}, "an instance id is required"},
		{[]string{"maint", "some-id", "--token-file", tok}, "--reason is required"},
		{[]string{"maint", "some-id", "--off", "--reason", "x", "--token-file", tok}, "--off takes no --reason"},
		{[]string{"maint", "some-id", "--reason", "x"}, "--token-file is required"},
		{[]string{"maint", "some-id", "--reason", "x", "--until", "yesterday", "--token-file", tok}, `"yesterday"`},
		{[]string{"check"}, "--config"},
		{[]string{"check", "--config", "a.yaml", "b.yaml"}, "b.yaml"},
		{[]string{"config", "extra"}, "extra"},
		{[]string{"version", "--verbose"}, "--verbose"},
	} {
		var out, errb bytes.Buffer
		code := runContext(context.Background(), tt.args, &out, &errb)
		msg := errb.String()
		if code != 2 || strings.Count(msg, tt.once) != 1 || out.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and %q once on stderr", tt.args, code, out.String(), msg, tt.once)
			continue
		}
		if !strings.HasPrefix(msg, "rollcall: ") || strings.Count(msg, "rollcall: ") != 1 || strings.Count(msg, "\n") > 2 {
			t.Errorf("%q: stderr %q; want one message (rollcall: …, and where the help is)", tt.args, msg)
		}
		for _, marker := range []string{"usage", "Usage", "flags:", "EOL"} {
			if strings.Contains(msg, marker) {
				t.Errorf("%q: stderr %q has %q", tt.args, msg, marker)
			}
		}
		if cmd := tt.args[0]; cmd != "frobnicate" && !strings.Contains(msg, "rollcall "+cmd+" --help") {
			t.Errorf("%q: stderr %q does not point to rollcall %s --help", tt.args, msg, cmd)
		}
	}
	// No arguments: the commands, on stderr, exit 2.
	var out, errb bytes.Buffer
	if code := runContext(context.Background(), nil, &out, &errb); code != 2 || out.Len() != 0 || !strings.Contains(errb.String(), "scan") {
		t.Errorf("no arguments: exit %d, stdout %q, stderr %q; want 2 and the commands on stderr", code, out.String(), errb.String())
	}
}

// TestHelp: --help and -h exit 0 on the top level and on every command, print on
// stdout, and show the command's flags and examples; `rollcall help CMD` too. The
// documented spellings of every command parse (one-dash long flags, the flag package's
// spelling before, too).
func TestHelp(t *testing.T) {
	commands := map[string][]string{ // command → flags its help must name
		"gateway": {"--config", "--log-format", "--log-level"},
		"demo":    {"--drives", "--poll", "--listen", "--control", "--http", "--modbus", "--dns", "--no-schedule"},
		"watch":   {"--broker", "--service", "--trusted-keys", "--json"},
		"find":    {"<service>", "--broker", "--meta", "--trusted-keys", "--json", "--strategy", "--allow-warning"},
		"scan":    {"--device", "--baud", "--units", "--json", "--timeout", "--parity"},
		"key":     {"--config"},
		"maint":   {"<id>", "--reason", "--until", "--off", "--gateway", "--token-file"},
		"check":   {"--config", "--broker"},
		"config":  {},
		"version": {},
	}
	for _, flag := range []string{"--help", "-h"} {
		var out, errb bytes.Buffer
		if code := runContext(context.Background(), []string{flag}, &out, &errb); code != 0 || errb.Len() != 0 {
			t.Errorf("rollcall %s: exit %d, stderr %q", flag, code, errb.String())
		}
		for c := range commands {
			if !strings.Contains(out.String(), c) {
				t.Errorf("rollcall %s does not list %s:\n%s", flag, c, out.String())
			}
		}
	}
	for c, flags := range commands {
		for _, args := range [][]string{{c, "--help"}, {c, "-h"}, {"help", c}} {
			var out, errb bytes.Buffer
			code := runContext(context.Background(), args, &out, &errb)
			help := out.String()
			if code != 0 || errb.Len() != 0 {
				t.Errorf("%q: exit %d, stderr %q; want 0", args, code, errb.String())
				continue
			}
			if !strings.Contains(help, "rollcall "+c) {
				t.Errorf("%q: no \"rollcall %s\" in\n%s", args, c, help)
			}
			for _, f := range flags {
				if !strings.Contains(help, f) {
					t.Errorf("%q: help lacks %s:\n%s", args, f, help)
				}
			}
			if c == "version" {
				continue
			}
			_, examples, ok := strings.Cut(help, "Examples:")
			if !ok || strings.Count(examples, "    rollcall "+c)+strings.Count(examples, "    curl ") == 0 {
				t.Errorf("%q: no examples of rollcall %s in\n%s", args, c, help)
			}
		}
	}
	var out, errb bytes.Buffer
	for _, args := range [][]string{{"version"}, {"--version"}, {"-v"}} {
		out.Reset()
		if code := runContext(context.Background(), args, &out, &errb); code != 0 || out.String() != "rollcall "+version+"\n" {
			t.Errorf("%q: exit %d, %q", args, code, out.String())
		}
	}
	// The flag package's one-dash spelling of a long flag still parses.
	out.Reset()
	if code := runContext(context.Background(), []string{"config", "-h"}, &out, &errb); code != 0 {
		t.Errorf("config -h: exit %d", code)
	}
	var sample bytes.Buffer
	if code := runContext(context.Background(), []string{"check", "-config", filepath.Join(t.TempDir(), "none.yaml")}, &sample, &errb); code != 1 {
		t.Errorf("check -config FILE (one dash): exit %d, want 1 (the file is missing): %s", code, errb.String())
	}
}

// TestGatewayNotify: under systemd (Type=notify), `rollcall gateway` tells the service
// manager READY=1 once started, and STOPPING=1 when it shuts down (sd_notify(3), read
// here from the $NOTIFY_SOCKET datagram socket).
func TestGatewayNotify(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	cfg := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(cfg, []byte("gateway: {id: notify-gw, state_dir: "+filepath.Join(dir, "state")+"}\n"+
		"mqtt: {broker: embedded, embedded_listen: \"127.0.0.1:0\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runCommand(ctx, io.Discard, "gateway", "--config", cfg) }()
	read := func(want string) {
		t.Helper()
		buf := make([]byte, 512)
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := conn.Read(buf)
		if err != nil || !strings.Contains(string(buf[:n]), want) {
			t.Fatalf("notify socket: %q, %v; want %s", buf[:n], err, want)
		}
	}
	read("READY=1")
	cancel()
	read("STOPPING=1")
	if err := <-done; err != nil {
		t.Errorf("gateway: %v", err)
	}
}
