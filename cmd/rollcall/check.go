package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/rollcall-edge/rollcall/configs"
	"github.com/rollcall-edge/rollcall/devices"
	"github.com/rollcall-edge/rollcall/gateway/config"
)

// checkCmd is `rollcall check --config FILE [--broker]`.
type checkCmd struct {
	Config string `required:"" placeholder:"FILE" help:"Gateway config file to check."`
	Broker bool   `help:"Also check that the MQTT broker(s) can be reached (TCP connect, 3 s)."`
}

// Help is the text of `rollcall check --help`.
func (checkCmd) Help() string {
	return `Checks a gateway config before it is used, reporting every problem in one run, each as file:line:column: key: what is wrong: rule violations, files it names that cannot be read (password, TLS, trusted-keys, admin-token files, profile directories), serial devices that do not exist, profiles that do not load; with --broker also MQTT brokers that cannot be reached (not the embedded one). Warnings are printed too. Exit status 0 when the config is fit to start, 1 when it is not, 2 on a usage error.

Examples:

    rollcall check --config /etc/rollcall/gateway.yaml
    rollcall check --config gateway.yaml --broker
    rollcall config > gateway.yaml && rollcall check --config gateway.yaml`
}

// Run checks the config before it is used: every rule violation at once
// (file:line:column: key), the files it names readable, its serial devices present, its
// device profiles loadable, and with --broker its MQTT brokers reachable. Exit 0: fit
// to start; 1: problems (each on its own line).
func (c *checkCmd) Run(ctx context.Context, s *streams) error {
	path, stdout := c.Config, s.stdout
	cfg, warnings, err := config.Check(path)
	for _, w := range warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	problems := 0
	report := func(err error) {
		for _, line := range strings.Split(err.Error(), "\n") {
			if line != "" {
				fmt.Fprintln(stdout, line)
				problems++
			}
		}
	}
	if err != nil {
		report(err)
	}
	if cfg != nil {
		if len(cfg.Profiles.Dirs) > 0 {
			if _, err := devices.LoadProfiles(cfg.Profiles.Dirs); err != nil {
				report(fmt.Errorf("%s: profiles.dirs: %w", path, err))
			}
		}
		if c.Broker {
			for _, err := range checkBrokers(ctx, cfg) {
				report(err)
			}
		}
	}
	if problems > 0 {
		fmt.Fprintf(stdout, "%s: %d problem(s)\n", path, problems)
		return errProblems
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return nil
}

// errProblems: check found problems (exit status 1, already printed).
var errProblems = errors.New("problems found")

// checkBrokers dials each configured broker (TCP, 3 s) and returns what failed.
func checkBrokers(ctx context.Context, cfg *config.Config) []error {
	urls := cfg.MQTT.Brokers
	if len(urls) == 0 {
		if cfg.MQTT.Broker == "embedded" {
			return nil
		}
		urls = []string{cfg.MQTT.Broker}
	}
	var out []error
	for _, u := range urls {
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" {
			out = append(out, fmt.Errorf("broker %s: not a URL: %v", u, err))
			continue
		}
		host := pu.Host
		if pu.Port() == "" {
			port := "1883"
			if pu.Scheme == "ssl" || pu.Scheme == "tls" || pu.Scheme == "mqtts" {
				port = "8883"
			}
			host = net.JoinHostPort(pu.Hostname(), port)
		}
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		c, err := (&net.Dialer{}).DialContext(dctx, "tcp", host)
		cancel()
		if err != nil {
			out = append(out, fmt.Errorf("broker %s: cannot be reached: %v", pu.Redacted(), err))
			continue
		}
		c.Close()
	}
	return out
}

// configCmd is `rollcall config`.
type configCmd struct{}

// Help is the text of `rollcall config --help`.
func (configCmd) Help() string {
	return `Prints the commented sample gateway config: every section with its defaults. Start from it, then run rollcall check on the result.

Examples:

    rollcall config > gateway.yaml && rollcall check --config gateway.yaml
    rollcall config | less`
}

// Run prints the commented sample gateway config (configs/gateway.yaml).
func (configCmd) Run(s *streams) error {
	_, err := s.stdout.Write(configs.GatewaySample)
	return err
}
