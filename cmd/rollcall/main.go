// Command rollcall is the edge discovery gateway: it finds servo drives and control
// modules on RS-485 buses (Modbus RTU), registers each as a service instance whose
// heartbeat is a poll of the device, and publishes the live catalog over MQTT.
//
// Usage:
//
//	rollcall gateway [--config FILE] [--log-format text|json] [--log-level info]
//	rollcall demo    [--drives N] [--no-schedule]
//	rollcall watch   --broker URL [--service S] [--json]
//	rollcall find    SERVICE --broker URL [--meta k=v]... [--json]
//	rollcall scan    --device PATH --baud N [--units 1-247] [--json]
//	rollcall key     [--config FILE]
//	rollcall maint   ID --reason TEXT [--until TIME] | --off --token-file FILE
//	rollcall check   --config FILE [--broker]
//	rollcall config
//	rollcall version
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
	"strings"
	"syscall"

	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/gateway/config"
)

// version is stamped by the Makefile (-X main.version=...).
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks command-line mistakes and connection errors: exit status 2.
var errUsage = errors.New("usage")

// errFlags marks a mistake in a command's flags, which the flag package has printed,
// with the command's usage, already: exit status 2, nothing more printed.
var errFlags = errors.New("flags")

// parseFlags parses args with fs: flag.ErrHelp for -h/--help (the help is printed),
// an error wrapping errFlags and errUsage for a mistake (printed with the usage).
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		return flag.ErrHelp
	}
	return fmt.Errorf("%w: %w", errFlags, errUsage)
}

// errNoneFound: the command worked but found nothing live: exit status 1 (find, scan).
var errNoneFound = errors.New("none found")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "gateway":
		err = cmdGateway(ctx, args[1:], stderr)
	case "demo":
		err = cmdDemo(ctx, args[1:], stdout, stderr)
	case "scan":
		err = cmdScan(ctx, args[1:], stdout, stderr)
	case "watch":
		err = cmdWatch(ctx, args[1:], stdout, stderr)
	case "find":
		err = cmdFind(ctx, args[1:], stdout, stderr)
	case "key":
		err = cmdKey(ctx, args[1:], stdout, stderr)
	case "maint":
		err = cmdMaint(ctx, args[1:], stdout, stderr)
	case "check":
		err = cmdCheck(ctx, args[1:], stdout, stderr)
	case "config":
		err = cmdConfig(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "rollcall", version)
	case "help", "-h", "--help":
		usage(stdout)
	default:
		fmt.Fprintf(stderr, "rollcall: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errNoneFound), errors.Is(err, errProblems):
		return 1
	case errors.Is(err, flag.ErrHelp):
		return 0 // the command's help was asked for, and printed
	case errors.Is(err, errFlags):
		return 2 // the flag package printed the mistake and the command's usage
	case errors.Is(err, errUsage):
		if msg := strings.TrimSuffix(err.Error(), ": "+errUsage.Error()); msg != errUsage.Error() {
			fmt.Fprintln(stderr, "rollcall:", msg)
		}
		return 2
	default:
		fmt.Fprintln(stderr, "rollcall:", err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  rollcall gateway [--config FILE]   run the gateway daemon
  rollcall demo                      embedded broker + simulated drives + gateway + live catalog
  rollcall watch --broker URL [--service S] [--trusted-keys FILE] [--json]
                                     the live catalog as a table (or JSON lines)
  rollcall find SERVICE --broker URL [--meta k=v]... [--trusted-keys FILE] [--json]
                                     one live instance's endpoint (exit 0 found, 1 none, 2 error)
  rollcall scan --device PATH --baud N [--units 1-247] [--json]
                                     one-shot commissioning scan of a serial bus
  rollcall key [--config FILE]       print the gateway's public signing key (a trusted-keys line)
  rollcall maint ID --reason TEXT [--until TIME] | --off  [--gateway URL] --token-file FILE
                                     put an instance into maintenance, or end it
  rollcall check --config FILE [--broker]
                                     check a config before starting: every problem, file:line:key
  rollcall config                    print the commented sample config
  rollcall version                   print the version
`)
}

// logFlags registers --log-format and --log-level and returns a constructor.
func logFlags(fs *flag.FlagSet) func(w io.Writer) (*slog.Logger, error) {
	format := fs.String("log-format", "text", "log format: text or json")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	return func(w io.Writer) (*slog.Logger, error) {
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(*level)); err != nil {
			return nil, fmt.Errorf("--log-level: %w: %w", err, errUsage)
		}
		o := &slog.HandlerOptions{Level: lv}
		switch *format {
		case "text":
			return slog.New(slog.NewTextHandler(w, o)), nil
		case "json":
			return slog.New(slog.NewJSONHandler(w, o)), nil
		}
		return nil, fmt.Errorf("--log-format: expected text or json, got %q: %w", *format, errUsage)
	}
}

func cmdGateway(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "gateway config file (YAML); default: embedded broker on 127.0.0.1:1883, no buses, HTTP on "+config.DefaultHTTPListen)
	newLogger := logFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("gateway: unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	log, err := newLogger(stderr)
	if err != nil {
		return err
	}
	cfg := config.Default()
	if *cfgPath != "" {
		if cfg, err = config.Load(*cfgPath); err != nil {
			return err
		}
	}
	g, err := gateway.New(gateway.Options{Config: cfg, Logger: log, Version: version})
	if err != nil {
		return err
	}
	if gateway.TuneGC(os.Getenv) {
		log.Debug("garbage collector", "gogc", gateway.DefaultGCPercent)
	}
	// systemd readiness (Type=notify, packaging/systemd): ready once the gateway has
	// started (broker listening, epoch bumped, buses being swept); stopping at the end.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-g.Started():
			sdNotify("READY=1\nSTATUS=gateway " + cfg.Gateway.ID + " running")
		case <-done:
		}
	}()
	defer sdNotify("STOPPING=1")
	return g.Run(ctx)
}
