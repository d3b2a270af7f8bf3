package gateway

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// KeyFile is the name of the gateway's private signing key in the state directory:
// an Ed25519 key as PKCS #8 in PEM ("PRIVATE KEY", RFC 8410; `openssl pkey` reads it),
// mode 0600.
const KeyFile = "signing.key"

// LoadOrCreateKey returns the gateway's signing key from dir/signing.key, making a new
// one (and dir) when the file does not exist; created says which. Every record the
// gateway publishes is signed with it (docs/contract.md, "Signed records"). A file
// that is not an Ed25519 PKCS #8 PEM key is an error naming it, never replaced:
// consumers that trust the old key would ignore everything signed with a new one.
func LoadOrCreateKey(dir string) (key ed25519.PrivateKey, created bool, err error) {
	path := filepath.Join(dir, KeyFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, err := parseKey(data)
		if err != nil {
			return nil, false, fmt.Errorf("signing key %s: %w", path, err)
		}
		return key, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, fmt.Errorf("signing key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, false, fmt.Errorf("state dir: %w", err)
	}
	_, key, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("signing key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, KeyFile+".*") // mode 0600
	if err != nil {
		return nil, false, fmt.Errorf("signing key: %w", err)
	}
	defer os.Remove(tmp.Name())
	werr := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, false, fmt.Errorf("signing key %s: %w", tmp.Name(), werr)
	}
	// Link, not rename: of two processes starting at once, exactly one key wins.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadOrCreateKey(dir)
		}
		return nil, false, fmt.Errorf("signing key: %w", err)
	}
	return key, true, nil
}

// parseKey decodes a PEM PKCS #8 Ed25519 private key.
func parseKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New(`expected a PEM "PRIVATE KEY" block (PKCS #8)`)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("expected an Ed25519 key, got %T", k)
	}
	return key, nil
}
