// Command rollcall-bench measures rollcall's performance figures (issue 4) against their
// physical or spec floors, all in one run, and prints one line per figure:
//
//	name value unit floor ratio
//
// after a header line with those column names. floor is the physical or spec floor (or,
// where the name says so, the published budget) measured or computed in the same run; the
// name ends in [v/f] (ratio = value/floor), [f/v] (ratio = floor/value) or [v/b] (the floor
// column holds a budget, ratio = value/budget); "-" marks a figure without a floor. Lines
// starting with "#" are goals (one per figure: goal, met yes/no, by how much) and notes.
//
// Figures (select with -only, comma-separated):
//
//	rtu_poll     RTU poll throughput against firmware-sim at 115200 baud: our modbus.RTU,
//	             goburrow/modbus's own RTU handler and a raw client, against the floor per
//	             poll and the raw client; the simulator's first-byte precision
//	detect       silence → critical at a Mosquitto subscriber, 8 and 32 drives on one bus
//	propagation  record change (the confirming poll) → subscriber, the gateway's added latency
//	sweep        full sweep of unit IDs 1–247 with none present
//	noise        a line with 5 % CRC noise: false criticals (goal 0) over -noise-for, and
//	             garbage-only and silent drives still critical within their budget
//	tcp_scale    CPU share and peak RSS of a gateway process polling 100, 1000 and 3000
//	             Modbus TCP devices at 1 Hz, and their slopes (RSS per device, CPU per poll)
//	plant_scale  many gateways on a 3-node NATS cluster: publish rate, consumer convergence
//	             and memory per instance, failover after a node loss (figPlantScale)
//	resync       Mosquitto restarted (with and without its retained store): time until a
//	             consumer has all 5000 records of a gateway live again (budget 1 s)
//	route        the routing Modbus TCP server and DNS interface of an in-process gateway
//	             (4 RTU drives, 2 Modbus TCP drives): routed vs direct read round trip,
//	             failover gap, DNS removal of a dead drive, and the bus's heartbeat poll
//	             rate and detection time without and under routed load
//
// Flags: -quick (fewer trials, shorter windows, resync with 500 records: a smoke run),
// -only, -cpuprofile FILE (CPU profile of this process, which runs the gateway
// in-process for rtu_poll, detect, propagation, sweep and route), -gwprofile DIR
// (tcp_scale: one more pass with CPU and heap profiles of the gateway, summarised as
// notes), -noise-for D (figure noise's run, 1m; 20s with -quick), -seed N, -keep (keep
// the logs), -v (progress log on stderr).
//
// Everything runs on 127.0.0.1 or on pseudo-terminals. detect, propagation, noise and resync need
// Mosquitto (apt-get install -y mosquitto); tcp_scale builds ./cmd/rollcall and
// ./cmd/firmware-sim of the module it is run in.
//
// Exit status: 0 when every selected figure was measured (goals met or not), 1 when a
// figure could not be measured, 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"
)

// main runs the command with SIGINT/SIGTERM cancelling its context.
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// figure is one selectable measurement. Its lines are named with its name as prefix.
type figure struct {
	name string
	run  func(ctx context.Context, b *bench) error
}

// figureNames returns the names -only accepts, in the order the figures run.
func figureNames() []string {
	return []string{"rtu_poll", "detect", "propagation", "sweep", "noise", "tcp_scale", "plant_scale", "resync", "route"}
}

// options are the command-line settings.
type options struct {
	quick      bool            // fewer trials and shorter windows
	only       map[string]bool // selected figure names; all when empty
	cpuProfile string          // CPU profile output file, "" for none
	seed       uint64          // seed of the trials' random choices
	repo       string          // module root (figure tcp_scale builds binaries there)
	gwProfile  string          // tcp_scale: also profile the gateway, profiles into this directory
	noiseFor   time.Duration   // figure noise: how long the noisy line runs
}

// selected reports whether the figure name was selected.
func (o *options) selected(name string) bool { return len(o.only) == 0 || o.only[name] }

// bench is the state of one run shared by the figures: options, output and a scratch
// directory removed at the end.
type bench struct {
	opt *options
	out *report
	log *slog.Logger // progress, on stderr with -v
	dir string       // scratch directory of this run
	// plant are the plant_scale sizes measured so far (for their slopes).
	plant []plantPoint
}

// run is the command without process globals; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rollcall-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "smoke run: fewer trials, shorter windows, resync with 500 records")
	only := fs.String("only", "", "comma-separated figures to run: "+strings.Join(figureNames(), ","))
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process to `file`")
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "seed of the random trial choices")
	repo := fs.String("repo", "", "module root `dir` (default: found from the working directory)")
	verbose := fs.Bool("v", false, "progress log on stderr")
	noiseFor := fs.Duration("noise-for", time.Minute, "figure noise: how long the noisy line runs (20s with -quick unless set)")
	keep := fs.Bool("keep", false, "keep the scratch directory (logs of the sims, gateways and brokers) and print its path")
	gwProfile := fs.String("gwprofile", "", "tcp_scale: afterwards run the gateway once more with CPU and heap profiles into `dir`, and summarise them")
	gatewayProcess := fs.String("gateway-process", "", "internal (used by -gwprofile): run a gateway from config `file`")
	profileDir := fs.String("profile-dir", "", "internal (used by -gwprofile): profile `dir` of -gateway-process")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: rollcall-bench [-quick] [-only %s] [-cpuprofile FILE] [-gwprofile DIR] [-seed N] [-keep] [-v]\n",
			strings.Join(figureNames(), ","))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "rollcall-bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *gatewayProcess != "" {
		return runGatewayProcess(ctx, *gatewayProcess, *profileDir, stderr)
	}
	opt := &options{quick: *quick, cpuProfile: *cpuProfile, seed: *seed, repo: *repo, gwProfile: *gwProfile, only: map[string]bool{},
		noiseFor: *noiseFor}
	if *quick && !flagSet(fs, "noise-for") {
		opt.noiseFor = 20 * time.Second
	}
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if !slices.Contains(figureNames(), n) {
			fmt.Fprintf(stderr, "rollcall-bench: -only: unknown figure %q (want %s)\n", n, strings.Join(figureNames(), ","))
			return 2
		}
		opt.only[n] = true
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	dir, err := os.MkdirTemp("", "rollcall-bench-")
	if err != nil {
		fmt.Fprintf(stderr, "rollcall-bench: scratch directory: %v\n", err)
		return 1
	}
	if *keep {
		defer fmt.Fprintf(stderr, "rollcall-bench: scratch directory kept: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	if opt.cpuProfile != "" {
		f, err := os.Create(opt.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "rollcall-bench: -cpuprofile: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "rollcall-bench: -cpuprofile: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}

	b := &bench{opt: opt, out: newReport(stdout), log: log, dir: dir}
	figures := []figure{
		{"rtu_poll", figRTUPoll},
		{"detect", figDetectAndPropagation}, // also measures propagation
		{"sweep", figSweep},
		{"tcp_scale", figTCPScale},
		{"noise", figNoise},
		{"plant_scale", figPlantScale},
		{"resync", figResync},
		{"route", figRoute},
	}
	b.out.header(opt)
	failed := 0
	for _, f := range figures {
		want := opt.selected(f.name)
		if f.name == "detect" {
			want = opt.selected("detect") || opt.selected("propagation")
		}
		if !want {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		start := time.Now()
		log.Info("figure start", "figure", f.name)
		if err := f.run(ctx, b); err != nil {
			failed++
			b.out.note("error: %v", err) // errors name their figure and step
			fmt.Fprintf(stderr, "rollcall-bench: %v\n", err)
		}
		log.Info("figure done", "figure", f.name, "took", time.Since(start).Round(time.Millisecond))
		b.out.note("%s took %v; load average now %s", f.name, time.Since(start).Round(100*time.Millisecond), loadAvg())
	}
	if ctx.Err() != nil {
		b.out.note("interrupted")
		return 1
	}
	if failed > 0 {
		return 1
	}
	return 0
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
