package dnsserver

import (
	"context"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/internal/testutil"
)

// TestDig checks the answers with ISC dig, a client that shares no code with
// the server. It is skipped without dig, unless CI=true.
func TestDig(t *testing.T) {
	dig := testutil.NeedTool(t, "dig", "bind9-dnsutils")
	addr := serve(t, newServer(t, catalog(), time.Second))
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) []string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		args = append([]string{"@127.0.0.1", "-p", port, "+short", "+time=5", "+tries=1"}, args...)
		out, err := exec.CommandContext(ctx, dig, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		slices.Sort(lines)
		return lines
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"servo-drive.service.rollcall", "A"}, []string{"127.0.0.11", "127.0.0.12"}},
		{[]string{"+tcp", "servo-drive.service.rollcall", "A"}, []string{"127.0.0.11", "127.0.0.12"}},
		{[]string{"servo-drive.service.rollcall", "AAAA"}, []string{"fd00::12"}},
		{[]string{"servo-drive.service.rollcall", "SRV"}, []string{
			"1 1 1502 fd000000000000000000000000000012.addr.rollcall.",
			"1 1 502 7f00000b.addr.rollcall.",
			"1 1 502 7f00000c.addr.rollcall.",
		}},
		{[]string{"servo-drive.service.rollcall", "TXT"}, []string{
			`"id=sd-1" "endpoint=modbus-tcp 127.0.0.11:502 unit 1" "unit=1"`,
			`"id=sd-2" "endpoint=modbus-tcp 127.0.0.12:502 unit 1" "unit=1"`,
			`"id=sd-6" "endpoint=modbus-tcp [fd00::12]:1502 unit 2" "unit=2"`,
		}},
		{[]string{"axis-2.servo-drive.service.rollcall", "A"}, []string{"127.0.0.12"}},
		{[]string{"7f00000b.addr.rollcall", "A"}, []string{"127.0.0.11"}},
	} {
		if got := run(c.args...); !slices.Equal(got, c.want) {
			t.Errorf("dig %v:\n got %q\nwant %q", c.args, got, c.want)
		}
	}
}
