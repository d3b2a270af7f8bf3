// Command rollcall is the edge discovery gateway: it finds servo drives and control
// modules on RS-485 buses (Modbus RTU), registers each as a service instance whose
// heartbeat is a poll of the device, and publishes the live catalog over MQTT.
//
// Usage:
//
//	rollcall gateway [--config FILE] [--log-format text|json] [--log-level info]
//	rollcall demo    [--drives N] [--no-schedule]
//	rollcall watch   [--broker URL] [--service S] [--json]
//	rollcall find    SERVICE [--broker URL] [--meta k=v]... [--json]
//	rollcall scan    --device PATH [--baud N] [--units 1-247] [--json]
//	rollcall key     [--config FILE]
//	rollcall maint   ID --reason TEXT [--until TIME] | --off  --token-file FILE
//	rollcall check   --config FILE [--broker]
//	rollcall config
//	rollcall version
//
// The command line is parsed by github.com/alecthomas/kong (the grammar is the struct
// cli); every command's --help shows its flags and examples.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/gateway/config"
)

// version is stamped by the Makefile (-X main.version=...).
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command line's testable entry point: it runs the command args name until
// SIGINT or SIGTERM and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runContext(ctx, args, stdout, stderr)
}

// cli is the grammar of the command line: one field per command.
type cli struct {
	Gateway gatewayCmd `cmd:"" help:"Run the gateway daemon."`
	Demo    demoCmd    `cmd:"" help:"Embedded broker, simulated drives and the gateway in one process, with the live catalog on screen."`
	Watch   watchCmd   `cmd:"" help:"Show the live catalog as a table redrawn on every change, or as JSON lines."`
	Find    findCmd    `cmd:"" help:"Print one live instance's endpoint (exit 0 found, 1 none live, 2 usage or connection error)."`
	Scan    scanCmd    `cmd:"" help:"One-shot commissioning scan of a serial bus."`
	Key     keyCmd     `cmd:"" help:"Print the gateway's public signing key as a trusted-keys line."`
	Maint   maintCmd   `cmd:"" help:"Put an instance into maintenance through the gateway's HTTP API, or end it."`
	Check   checkCmd   `cmd:"" help:"Check a gateway config before starting: every problem, as file:line:column: key."`
	Config  configCmd  `cmd:"" help:"Print the commented sample gateway config."`
	Version versionCmd `cmd:"" help:"Print the version."`

	VersionFlag kong.VersionFlag `name:"version" short:"v" hidden:"" help:"Print the version."`
}

// streams are where a command writes: its output, and messages and logs.
type streams struct {
	stdout, stderr io.Writer
}

// usageError is a mistake on the command line found after parsing, or a broker or
// gateway that cannot be reached: exit status 2, its message printed as it is.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef makes a usageError; %w in format keeps the wrapped error reachable.
func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Errorf(format, args...).Error()}
}

// errNoneFound: the command worked but found nothing live: exit status 1 (find, scan).
var errNoneFound = errors.New("none found")

// exited is what the parser's exit function panics with (after --help or --version),
// for runContext to recover: a status, not an os.Exit in the middle of a test.
type exited int

// newParser builds the parser for one run; help and --version print to stdout.
func newParser(grammar *cli, stdout, stderr io.Writer) (*kong.Kong, error) {
	return kong.New(grammar,
		kong.Name("rollcall"),
		kong.Description("rollcall finds the drives and modules on RS-485 buses (Modbus RTU), Modbus TCP and mDNS, polls each as its heartbeat, and publishes the live catalog over MQTT."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exited(code)) }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, WrapUpperBound: 100}),
		kong.Vars{"version": "rollcall " + version, "http_listen": config.DefaultHTTPListen,
			"max_clock_skew": contract.DefaultMaxClockSkew.String()},
	)
}

// runContext parses args and runs the command until ctx ends; the exit status: 0 done
// (or help shown), 1 failed or nothing found, 2 a usage mistake (one message on stderr)
// or no connection. With no arguments it prints the commands on stderr, exit 2.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	var grammar cli
	if len(args) == 0 {
		p, err := newParser(&grammar, stderr, stderr)
		if err != nil {
			panic(err) // the grammar is wrong: a bug, caught by every test
		}
		kctx, _ := kong.Trace(p, nil)
		_ = kctx.PrintUsage(false)
		return 2
	}
	p, err := newParser(&grammar, stdout, stderr)
	if err != nil {
		panic(err)
	}
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(exited)
			if !ok {
				panic(r)
			}
			code = int(c)
		}
	}()
	kctx, err := p.Parse(normalizeArgs(p, args))
	if err != nil {
		fmt.Fprintln(stderr, parseErrorText(err))
		return 2
	}
	kctx.BindTo(ctx, (*context.Context)(nil))
	return exitStatus(kctx.Run(&streams{stdout, stderr}), stderr)
}

// exitStatus prints err when it has not been printed yet and returns the exit status.
func exitStatus(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errNoneFound), errors.Is(err, errProblems):
		return 1 // the command printed what it found
	case errors.Is(err, errBusInUse):
		return 2 // printed whole by the scan
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "rollcall:", ue.msg)
		return 2
	}
	fmt.Fprintln(stderr, "rollcall:", err)
	return 1
}

// Rewrites of the parser's messages: a flag named with its placeholder ("--baud=INT:")
// is named alone; a flag given without its value, or a required flag not given, says
// so; a bad duration is named once.
var (
	placeholderInMessage = regexp.MustCompile(`(--[a-z0-9-]+)=[^\s:,]+`)
	missingValue         = regexp.MustCompile(`expected \S+ value but got "EOL" \(<EOL>\)`)
	missingFlags         = regexp.MustCompile(`^missing flags: (.*)$`)
	badDuration          = regexp.MustCompile(`(expected duration but got "[^"]*"): time: .*$`)
)

// parseErrorText is a parse error as one message: "rollcall: <command>: <mistake>"
// and where to read the command's flags and examples.
func parseErrorText(err error) string {
	msg := placeholderInMessage.ReplaceAllString(err.Error(), "$1")
	msg = missingValue.ReplaceAllString(msg, "a value is required")
	msg = missingFlags.ReplaceAllString(msg, "missing $1")
	msg = badDuration.ReplaceAllString(msg, "$1 (e.g. 500ms, 10s, 2m)")
	help := "rollcall --help"
	var pe *kong.ParseError
	if errors.As(err, &pe) && pe.Context != nil {
		cmd := pe.Context.Selected()
		if arg, ok := strings.CutPrefix(msg, "unexpected argument "); ok && cmd == nil {
			var names []string
			for _, c := range pe.Context.Model.Children {
				names = append(names, c.Name)
			}
			msg = fmt.Sprintf("unknown command %q (commands: %s)", arg, strings.Join(names, ", "))
		}
		if cmd != nil {
			if !strings.HasPrefix(msg, cmd.Path()+":") {
				msg = cmd.Path() + ": " + msg
			}
			help = "rollcall " + cmd.Path() + " --help"
		}
	}
	return fmt.Sprintf("rollcall: %s\n(%s shows the flags and examples)", msg, help)
}

// normalizeArgs accepts the spellings of the flag package that rollcall used before:
// a long flag with one dash (-config FILE, -json) and "rollcall help [COMMAND]".
func normalizeArgs(p *kong.Kong, args []string) []string {
	if len(args) > 0 && args[0] == "help" {
		return append(append([]string{}, args[1:]...), "--help")
	}
	long := map[string]bool{}
	_ = kong.Visit(p.Model, func(n kong.Visitable, next kong.Next) error {
		if f, ok := n.(*kong.Flag); ok {
			long[f.Name] = true
		}
		return next(nil)
	})
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "-"), "=")
		if len(a) > 2 && a[0] == '-' && a[1] != '-' && len(name) > 1 && long[name] {
			a = "-" + a
		}
		out = append(out, a)
	}
	return out
}

// versionCmd is `rollcall version`.
type versionCmd struct{}

// Run prints "rollcall <version>".
func (versionCmd) Run(s *streams) error {
	fmt.Fprintln(s.stdout, "rollcall", version)
	return nil
}

// logFlags are --log-format and --log-level, of the commands that log.
type logFlags struct {
	LogFormat string   `name:"log-format" enum:"text,json" default:"text" placeholder:"text|json" help:"Log format: text or json."`
	LogLevel  logLevel `name:"log-level" default:"info" placeholder:"LEVEL" help:"Log level: debug, info, warn or error."`
}

// logger makes the logger the flags ask for, writing to w.
func (f *logFlags) logger(w io.Writer) *slog.Logger {
	o := &slog.HandlerOptions{Level: slog.Level(f.LogLevel)}
	if f.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// logLevel is a slog level on the command line (debug, info, warn, error; slog's
// offsets such as info+2 too).
type logLevel slog.Level

// Decode reads the level (kong.MapperValue).
func (l *logLevel) Decode(ctx *kong.DecodeContext) error {
	var s string
	if err := ctx.Scan.PopValueInto("level", &s); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("expected debug, info, warn or error, got %q", s)
	}
	*l = logLevel(lv)
	return nil
}

// gatewayCmd is `rollcall gateway`: the daemon.
type gatewayCmd struct {
	Config string `placeholder:"FILE" help:"Gateway config file (YAML); default: embedded broker on 127.0.0.1:1883, no buses, HTTP on ${http_listen}."`
	logFlags
}

// Help is the text of `rollcall gateway --help`.
func (gatewayCmd) Help() string {
	return `Runs the gateway until SIGINT or SIGTERM: sweeps the configured buses and endpoints, polls each device as its heartbeat and publishes the live catalog over MQTT. Under systemd (Type=notify) it reports READY=1 once started.

Examples:

    rollcall gateway --config /etc/rollcall/gateway.yaml --log-format json
    rollcall gateway                       # embedded broker, HTTP on 127.0.0.1:9180
    rollcall config > gateway.yaml && rollcall check --config gateway.yaml && rollcall gateway --config gateway.yaml`
}

// Run loads the config, builds the gateway and runs it until ctx ends.
func (c *gatewayCmd) Run(ctx context.Context, s *streams) error {
	log := c.logger(s.stderr)
	cfg := config.Default()
	if c.Config != "" {
		var err error
		if cfg, err = config.Load(c.Config); err != nil {
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
	// SIGHUP reloads the config file (README, "Reloading the config").
	defer reloadOnHangup(ctx, g, c.Config, log)()
	return g.Run(ctx)
}
