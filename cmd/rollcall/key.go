package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/gateway/config"
)

// cmdKey prints the gateway's public signing key as a trusted-keys line,
// "<gateway-id> ed25519:<base64>", making the key pair in the state directory if the
// gateway has not made it yet.
func cmdKey(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: rollcall key [--config FILE]

Prints the gateway's public signing key as one line of a trusted-keys file:
  <gateway-id> ed25519:<base64>
Consumers given it (rollcall find/watch --trusted-keys FILE, registry/client
Options.TrustedKeys) ignore every record not signed with it. The key pair lives in
the state directory (signing.key); it is made there if the gateway has not made it yet.

Example:
  rollcall key --config /etc/rollcall/gateway.yaml >> trusted-keys
  rollcall find servo-drive --broker tcp://broker:1883 --trusted-keys trusted-keys

`)
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", "", "gateway config file (YAML); default: the default config (state dir ./state)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("key: unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	cfg := config.Default()
	if *cfgPath != "" {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			return err
		}
	}
	key, created, err := gateway.LoadOrCreateKey(cfg.Gateway.StateDir)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(stderr, "rollcall: made a new signing key in %s\n", filepath.Join(cfg.Gateway.StateDir, gateway.KeyFile))
	}
	fmt.Fprintf(stdout, "%s %s\n", cfg.Gateway.ID, contract.FormatPublicKey(key.Public().(ed25519.PublicKey)))
	return nil
}
