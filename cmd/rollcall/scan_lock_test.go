package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// TestScanRefusesBusHeldByGateway: `rollcall scan` of a bus that a running gateway polls
// refuses at once (exit 2, nothing sent, nothing printed on stdout), naming the
// gateway's pid (this process: the rig runs the gateway in-process); once the gateway
// has stopped and released the bus, the same scan finds both drives.
func TestScanRefusesBusHeldByGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	r := rig.New(t)
	r.StartSim(1, 2)
	g, stop := r.RunGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-2"}]
`)
	// Both drives passing: the gateway's master has the bus open.
	rig.WaitCatalog(t, g, 15*time.Second, "both drives passing", rig.Passing(2))

	args := []string{"scan", "--device", r.Link, "--baud", "115200", "--units", "1-2", "--timeout", "1s", "--json"}
	var out, errb bytes.Buffer
	start := time.Now()
	code := run(args, &out, &errb)
	el := time.Since(start)
	msg := errb.String()
	if code != 2 {
		t.Fatalf("scan of a bus held by the gateway: exit %d, want 2\nstdout %q\nstderr %q", code, out.String(), msg)
	}
	for _, want := range []string{
		"rollcall: modbus: open " + r.Link + " (/dev/pts/",
		fmt.Sprintf("serial device in use by pid %d (", os.Getpid()),
		": one master per bus\n",
		"a running gateway holds every bus in its config",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("stderr %q does not contain %q", msg, want)
		}
	}
	if out.Len() != 0 || strings.Contains(msg, "unit IDs answered") {
		t.Errorf("a refused scan scanned: stdout %q, stderr %q", out.String(), msg)
	}
	t.Logf("refused in %v:\n%s", el, msg)

	stop()
	out.Reset()
	errb.Reset()
	if code := run(args, &out, &errb); code != 0 || strings.Count(out.String(), "\n") != 2 {
		t.Fatalf("scan after the gateway stopped: exit %d, want 0 with 2 drives\nstdout %q\nstderr %q", code, out.String(), errb.String())
	}
}

// TestScanHelpSaysGatewayHoldsBus: `rollcall scan -h` tells that a running gateway holds
// its buses and that a held bus is refused.
func TestScanHelpSaysGatewayHoldsBus(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"scan", "-h"}, &out, &errb); code != 0 {
		t.Fatalf("scan -h: exit %d, want 0 (help asked for)", code)
	}
	help := strings.Join(strings.Fields(out.String()), " ") // as words: the help is wrapped to the terminal
	for _, want := range []string{"gateway holds (locks) every bus", "refuses", "--device"} {
		if !strings.Contains(help, want) {
			t.Errorf("scan -h output lacks %q:\n%s", want, help)
		}
	}
}
