package main

import (
	"bytes"
	"context"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain checks that no figure run by the tests leaves a goroutine behind (its
// simulators, gateways and clients are stopped and waited for).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// checkOutput checks the command's output format and returns the figure lines by name
// (ratio suffix included).
func checkOutput(t *testing.T, out string) map[string][]string {
	t.Helper()
	// A figure line: name (with a ratio suffix when it has a floor), value, unit, floor, ratio.
	linePattern := regexp.MustCompile(`^([a-z0-9_]+)(\[(v/f|f/v|v/b)\])? (\S+) (\S+) (\S+) (\S+)$`)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || lines[0] != "name value unit floor ratio" {
		t.Fatalf("first line %q, want the header", lines[0])
	}
	figs := map[string][]string{}
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "# ") {
			continue
		}
		m := linePattern.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("malformed line %q", l)
			continue
		}
		value, floor, ratio := m[4], m[6], m[7]
		if _, err := strconv.ParseFloat(value, 64); err != nil {
			t.Errorf("%q: value %q is not a number", l, value)
		}
		hasFloor := m[2] != ""
		if hasFloor != (floor != "-") || (floor == "-") != (ratio == "-") {
			t.Errorf("%q: ratio suffix, floor and ratio disagree", l)
		}
		if hasFloor {
			f, err1 := strconv.ParseFloat(floor, 64)
			r, err2 := strconv.ParseFloat(ratio, 64)
			v, _ := strconv.ParseFloat(value, 64)
			if err1 != nil || err2 != nil {
				t.Errorf("%q: floor or ratio is not a number", l)
			} else if want := map[string]float64{"v/f": v / f, "v/b": v / f, "f/v": f / v}[m[3]]; math.Abs(r-want) > 0.01*want+0.002 {
				t.Errorf("%q: ratio %v, but %s of the printed numbers is %.3f", l, r, m[3], want)
			}
		}
		figs[m[1]+m[2]] = strings.Fields(l)
	}
	return figs
}

// TestLineFormat checks figure, no-floor and goal lines against the column format.
func TestLineFormat(t *testing.T) {
	var buf bytes.Buffer
	r := newReport(&buf)
	r.header(&options{seed: 1})
	r.line("a_rate", 171.234, "polls/s", 195.3, valueOverFloor)
	r.line("a_time", 5.9, "ms", 5.12, floorOverValue)
	r.line("a_max", 300, "ms", 680, valueOverBudget)
	r.line("a_cpu", 7.4, "%core", 0, noFloor)
	r.goalAtLeast("a", "rate", 171.2, 175.8, "polls/s")
	figs := checkOutput(t, buf.String())
	if got := strings.Join(figs["a_rate[v/f]"], " "); got != "a_rate[v/f] 171.2 polls/s 195.3 0.877" {
		t.Errorf("rate line %q", got)
	}
	if got := strings.Join(figs["a_cpu"], " "); got != "a_cpu 7.40 %core - -" {
		t.Errorf("cpu line %q", got)
	}
	if !strings.Contains(buf.String(), "# goal a: rate ≥ 175.8 polls/s; got 171.2 polls/s; met NO, by -4.60 polls/s") {
		t.Errorf("goal line missing or wrong:\n%s", buf.String())
	}
}

// TestPercentile checks the nearest-rank percentile.
func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 3}, {99, 5}, {100, 5}, {1, 1}} {
		if got := percentile(ds, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
}

// TestRTUPollQuick runs figure rtu_poll in quick mode (firmware-sim in-process on a
// pseudo-terminal) and checks the output lines.
func TestRTUPollQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a benchmark figure (about 10 s)")
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if code := run(ctx, []string{"-quick", "-only", "rtu_poll"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, stderr.String(), stdout.String())
	}
	t.Logf("output:\n%s", stdout.String())
	figs := checkOutput(t, stdout.String())
	for _, name := range []string{"rtu_poll_rate_ours[v/f]", "rtu_poll_rate_goburrow[v/f]", "rtu_poll_rate_raw[v/f]",
		"rtu_poll_rate_ours_vs_raw[v/f]", "rtu_sim_turnaround", "rtu_sim_first_byte_late_p50[v/b]", "rtu_sim_first_byte_late_p99[v/b]"} {
		if figs[name] == nil {
			t.Errorf("no line %s", name)
		}
	}
	if f := figs["rtu_poll_rate_ours[v/f]"]; f != nil && f[3] != "163.3" {
		t.Errorf("floor %s polls/s, want 163.3 (6.123 ms per poll at 115200 baud with the sim's 1 ms turnaround)", f[3])
	}
	if f := figs["rtu_poll_rate_ours_sim_turnaround_0[v/f]"]; f != nil && f[3] != "195.2" {
		t.Errorf("floor %s polls/s with no turnaround, want 195.2 (5.123 ms per poll)", f[3])
	}
	if !regexp.MustCompile(`(?m)^# goal rtu_poll: .* met (yes|NO), by `).MatchString(stdout.String()) {
		t.Errorf("no goal line for rtu_poll")
	}
}
