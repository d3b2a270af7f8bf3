package main

import (
	"crypto/ed25519"
	"fmt"
	"path/filepath"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/gateway/config"
)

// keyCmd is `rollcall key [--config FILE]`.
type keyCmd struct {
	Config string `placeholder:"FILE" help:"Gateway config file (YAML); default: the default config (state dir ./state)."`
}

// Help is the text of `rollcall key --help`.
func (keyCmd) Help() string {
	return `Prints the gateway's public signing key as one line of a trusted-keys file, "<gateway-id> ed25519:<base64>". Consumers given it (rollcall find/watch --trusted-keys FILE, registry/client Options.TrustedKeys) ignore every record not signed with it. The key pair lives in the state directory (signing.key); it is made there if the gateway has not made it yet.

Examples:

    rollcall key --config /etc/rollcall/gateway.yaml >> trusted-keys
    rollcall find servo-drive --broker tcp://broker:1883 --trusted-keys trusted-keys`
}

// Run prints the gateway's public signing key as a trusted-keys line,
// "<gateway-id> ed25519:<base64>", making the key pair in the state directory if the
// gateway has not made it yet.
func (c *keyCmd) Run(s *streams) error {
	stdout, stderr := s.stdout, s.stderr
	cfg := config.Default()
	if c.Config != "" {
		var err error
		if cfg, err = config.Load(c.Config); err != nil {
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
