package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
)

// TestResyncQuick runs figure resync in quick mode (one restart of a Mosquitto that
// keeps its store, one of one that loses it) and checks its lines; not the values,
// which are timings of a possibly busy machine.
func TestResyncQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a benchmark figure (about 6 s)")
	}
	if mosquitto.Find() == "" {
		t.Skip(mosquitto.ErrNotInstalled.Error())
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if code := run(ctx, []string{"-quick", "-only", "resync"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, stderr.String(), stdout.String())
	}
	t.Logf("output:\n%s", stdout.String())
	figs := checkOutput(t, stdout.String())
	n := fmt.Sprint(resyncQuickRecords)
	for _, name := range []string{"resync_N_p50[v/b]", "resync_N_kept_p50[v/b]", "resync_N_lost_p50[v/b]",
		"resync_N_kept_max[v/b]", "resync_N_lost_records_p50[v/b]", "resync_N_lost_reconnect_p50",
		"resync_N_kept_gateway_p50", "resync_N_lost_readback_p50"} {
		name = strings.Replace(name, "N", n, 1)
		if figs[name] == nil {
			t.Errorf("no line %s", name)
		} else if name == "resync_"+n+"_p50[v/b]" && figs[name][3] != "1000.0" {
			t.Errorf("budget %s ms, want 1000.0", figs[name][3])
		}
	}
	if !regexp.MustCompile(`(?m)^# goal resync: .* met (yes|NO), by `).MatchString(stdout.String()) {
		t.Errorf("no goal line for resync")
	}
}
