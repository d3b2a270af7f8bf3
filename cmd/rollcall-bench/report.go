package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// ratioKind says how a line's ratio is formed and which suffix its name gets.
type ratioKind int

// Ratio kinds.
const (
	noFloor         ratioKind = iota // no floor: floor and ratio are "-"
	valueOverFloor                   // ratio = value/floor, name suffix [v/f]
	floorOverValue                   // ratio = floor/value, name suffix [f/v]
	valueOverBudget                  // the floor column holds a budget; ratio = value/budget, suffix [v/b]
)

// suffix is the name suffix saying how the ratio is formed.
func (k ratioKind) suffix() string {
	switch k {
	case valueOverFloor:
		return "[v/f]"
	case floorOverValue:
		return "[f/v]"
	case valueOverBudget:
		return "[v/b]"
	}
	return ""
}

// report writes the result table: a header, figure lines and "#" goal/note lines. It
// is used from one goroutine (the figures run one after the other).
type report struct {
	w io.Writer
}

// newReport returns a report writing to w.
func newReport(w io.Writer) *report { return &report{w: w} }

// header prints the column names and the legend.
func (r *report) header(o *options) {
	fmt.Fprintln(r.w, "name value unit floor ratio")
	mode := "default"
	if o.quick {
		mode = "quick"
	}
	r.note("rollcall-bench %s mode, seed %d, %s, %d CPUs, load average %s; ratio: [v/f] value/floor, [f/v] floor/value, "+
		"[v/b] value/budget (floor column = budget); percentiles are nearest-rank (p99 of < 100 samples = max)", mode, o.seed, time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), loadAvg())
}

// loadAvg is the 1, 5 and 15 minute load averages of /proc/loadavg ("?" if unreadable):
// the figures are timings, and other work on the machine shows in them.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// line prints one figure line. floor is ignored for noFloor.
func (r *report) line(name string, value float64, unit string, floor float64, k ratioKind) {
	fl, ratio := "-", "-"
	if k != noFloor && !math.IsNaN(floor) {
		fl = num(floor)
		switch k {
		case valueOverFloor, valueOverBudget:
			if floor != 0 {
				ratio = fmt.Sprintf("%.3f", value/floor)
			}
		case floorOverValue:
			if value != 0 {
				ratio = fmt.Sprintf("%.3f", floor/value)
			}
		}
	}
	fmt.Fprintf(r.w, "%s%s %s %s %s %s\n", name, k.suffix(), num(value), unit, fl, ratio)
}

// note prints a "#" line.
func (r *report) note(format string, args ...any) {
	fmt.Fprintf(r.w, "# %s\n", strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " "))
}

// goalAtMost prints the goal line "value ≤ limit" of figure name.
func (r *report) goalAtMost(name, what string, value, limit float64, unit string) {
	met := value <= limit
	fmt.Fprintf(r.w, "# goal %s: %s ≤ %s %s; got %s %s; met %s, by %s %s (%s)\n", name, what, num(limit), unit,
		num(value), unit, yesNo(met), signed(limit-value), unit, pct((limit-value)/limit))
}

// goalAtLeast prints the goal line "value ≥ limit" of figure name.
func (r *report) goalAtLeast(name, what string, value, limit float64, unit string) {
	met := value >= limit
	fmt.Fprintf(r.w, "# goal %s: %s ≥ %s %s; got %s %s; met %s, by %s %s (%s)\n", name, what, num(limit), unit,
		num(value), unit, yesNo(met), signed(value-limit), unit, pct((value-limit)/limit))
}

// yesNo is "yes" or "NO" (capitals stand out in the goal lines).
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

// num formats a measured value with a precision suited to its size.
func num(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return "NaN"
	case a >= 100:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	case a == 0:
		return "0"
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// signed formats v with its sign.
func signed(v float64) string {
	if v >= 0 {
		return "+" + num(v)
	}
	return num(v)
}

// pct formats the fraction f as a signed percentage.
func pct(f float64) string { return fmt.Sprintf("%+.1f %%", 100*f) }

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of ds (which it
// sorts); 0 for no samples.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := int(math.Ceil(p / 100 * float64(len(ds))))
	rank = min(max(rank, 1), len(ds))
	return ds[rank-1]
}
