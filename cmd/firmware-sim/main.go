// Command firmware-sim runs simulated CiA 402 servo drives on simulated RS-485 buses
// (pseudo-terminals reached through symlinks) and on Modbus TCP listeners (optionally
// advertised over mDNS/DNS-SD), with scripted fault schedules and a fault-injection
// control API.
//
//	firmware-sim --config sim.yaml [--log-level debug]
//	firmware-sim --version
//
// It runs until SIGINT or SIGTERM. See docs/design.md ("Commands"), docs/registers.md and
// the sample config firmware-sim/testdata/sim.yaml.
// Exit status: 0 after a signal, 1 on a runtime or config error, 2 on a usage error.
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
	"runtime/debug"
	"syscall"

	"github.com/rollcall-edge/rollcall/firmware-sim/sim"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3") and never written at
// run time; "" falls back to the module version from the build info.
var version string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the command without process globals: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("firmware-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML config `file` (required)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: firmware-sim --config FILE [--log-level LEVEL]\n       firmware-sim --version\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "firmware-sim %s\n", versionString())
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "firmware-sim: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *configPath == "" {
		fmt.Fprintln(stderr, "firmware-sim: --config is required")
		fs.Usage()
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "firmware-sim: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	cfg, err := sim.LoadConfig(*configPath)
	if err != nil {
		log.Error("invalid config", "err", err)
		return 1
	}
	s, err := sim.New(cfg, log)
	if err != nil {
		log.Error("cannot create the simulator", "err", err)
		return 1
	}
	if err := s.Start(ctx); err != nil {
		log.Error("cannot start the simulator", "err", err)
		return 1
	}
	log.Info("firmware-sim running", "version", versionString(), "config", *configPath)
	if err := s.Wait(); err != nil { // returns after SIGINT/SIGTERM, or when a bus or listener fails
		log.Error("firmware-sim stopped", "err", err)
		return 1
	}
	log.Info("firmware-sim stopped")
	return 0
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
