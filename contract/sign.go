package contract

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Signatures (docs/contract.md, "Signed records"). MQTT 3.1.1 messages carry no
// properties, and v1 readers must keep working, so a signature travels inside the
// payload as its last member, "sig". It covers the exact bytes of the record before it,
// so no canonical JSON form is needed:
//
//	body    = the record's JSON object, as the gateway encoded it, ending in '}'
//	message = "rollcall/v1 " + kind + "\n" + body      (kind: "instance" or "gateway")
//	payload = body without its final '}' + `,"sig":"` + base64(Ed25519(message)) + `"}`
//
// A reader recovers body by cutting the last `,"sig":"` member off and closing the
// object again, verifies the signature over message, and decodes body (never the
// bytes after it). Readers that do not check signatures decode the payload as
// before: "sig" is one more field they ignore. Ed25519 is RFC 8032 (pure Ed25519, no
// context); base64 is the standard alphabet with padding (RFC 4648 §4).

// SignatureMember is what precedes the signature in a signed payload.
const SignatureMember = `,"sig":"`

// PublicKeyPrefix starts the text form of a public key: "ed25519:" + base64 of the 32
// key bytes (standard alphabet, padded), as `rollcall key` prints it.
const PublicKeyPrefix = "ed25519:"

// AnyGateway, as the gateway of a KeyRing entry, trusts the key for every gateway id.
const AnyGateway = "*"

// SignedKind says what a signature covers; it is part of the signed message, so an
// instance record's signature is never valid for a gateway record and vice versa.
type SignedKind string

// Kinds of signed payloads.
const (
	KindInstance SignedKind = "instance" // instance records (Record)
	KindGateway  SignedKind = "gateway"  // gateway status records and wills (GatewayRecord)
)

// Errors of signature checks (KeyRing.Verify, SplitSigned); test with errors.Is.
var (
	// ErrUnsigned: the payload has no "sig" member in the form Sign writes.
	ErrUnsigned = errors.New("record not signed")
	// ErrBadSignature: a signature that does not verify with any trusted key of the
	// gateway, or is malformed.
	ErrBadSignature = errors.New("record signature does not verify")
	// ErrUntrustedGateway: no trusted key for the publishing gateway.
	ErrUntrustedGateway = errors.New("no trusted key for the gateway")
	// ErrInvalidKey: a public key that is not "ed25519:" + base64 of 32 bytes, or a key
	// ring line that is not "<gateway> <key>".
	ErrInvalidKey = errors.New("invalid public key")
)

// signedMessage returns the bytes an Ed25519 signature covers.
func signedMessage(kind SignedKind, body []byte) []byte {
	m := make([]byte, 0, len("rollcall/v1 \n")+len(kind)+len(body))
	m = append(m, "rollcall/v1 "...)
	m = append(m, kind...)
	m = append(m, '\n')
	return append(m, body...)
}

// Sign returns body (a JSON object as EncodeRecord or EncodeGatewayRecord produce)
// with its signature appended as the member "sig" (see the package's signature
// rules). Errors: ErrInvalidRecord when body is not a non-empty JSON object ending in
// '}', ErrPayloadTooLarge when the signed payload exceeds MaxPayloadSize.
func Sign(priv ed25519.PrivateKey, kind SignedKind, body []byte) ([]byte, error) {
	if len(body) < 3 || body[0] != '{' || body[len(body)-1] != '}' {
		return nil, fmt.Errorf("%w: signing needs a non-empty JSON object", ErrInvalidRecord)
	}
	sig := ed25519.Sign(priv, signedMessage(kind, body))
	n := len(body) - 1 + len(SignatureMember) + base64.StdEncoding.EncodedLen(len(sig)) + 2
	if n > MaxPayloadSize {
		return nil, fmt.Errorf("%w: %d bytes signed", ErrPayloadTooLarge, n)
	}
	out := make([]byte, 0, n)
	out = append(out, body[:len(body)-1]...)
	out = append(out, SignatureMember...)
	out = base64.StdEncoding.AppendEncode(out, sig)
	return append(out, '"', '}'), nil
}

// SplitSigned separates a signed payload into the signed body and the signature.
// ErrUnsigned when payload does not end in a "sig" member of Sign's form.
func SplitSigned(payload []byte) (body, sig []byte, err error) {
	i := bytes.LastIndex(payload, []byte(SignatureMember))
	const sigLen = 88 // base64 of 64 bytes, padded
	if i < 1 || len(payload)-i != len(SignatureMember)+sigLen+2 || !bytes.HasSuffix(payload, []byte(`"}`)) {
		return nil, nil, ErrUnsigned
	}
	sig, err = base64.StdEncoding.DecodeString(string(payload[i+len(SignatureMember) : len(payload)-2]))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, nil, fmt.Errorf("%w: malformed signature", ErrBadSignature)
	}
	body = make([]byte, 0, i+1)
	body = append(body, payload[:i]...)
	return append(body, '}'), sig, nil
}

// FormatPublicKey returns the text form of a public key: "ed25519:" + base64.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return PublicKeyPrefix + base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKey parses the text form written by FormatPublicKey. Errors wrap
// ErrInvalidKey.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), PublicKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%w %q: want %s followed by base64", ErrInvalidKey, s, PublicKeyPrefix)
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w %q: want base64 of %d bytes", ErrInvalidKey, s, ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// KeyRing holds the trusted public keys of gateways, by gateway id (slugged), for
// readers that check signatures. A gateway may have several keys (a key being
// replaced); a key added for AnyGateway is trusted for every gateway. The zero value is
// empty; it is not safe for concurrent Add, but Verify and Len may be called
// concurrently once it is filled.
type KeyRing struct {
	keys map[string][]ed25519.PublicKey
}

// Add trusts key for gateway (an id, slugged here, or AnyGateway).
func (k *KeyRing) Add(gateway string, key ed25519.PublicKey) {
	if k.keys == nil {
		k.keys = map[string][]ed25519.PublicKey{}
	}
	g := gateway
	if g != AnyGateway {
		g = Slug(gateway)
	}
	k.keys[g] = append(k.keys[g], key)
}

// Len returns the number of trusted keys; 0 for a nil ring.
func (k *KeyRing) Len() int {
	if k == nil {
		return 0
	}
	n := 0
	for _, ks := range k.keys {
		n += len(ks)
	}
	return n
}

// Verify checks a signed payload published by gateway (the slug from its topic) and
// returns the signed body, the only bytes a reader may decode. Errors: ErrUnsigned,
// ErrUntrustedGateway (no key for gateway, none for AnyGateway), ErrBadSignature.
func (k *KeyRing) Verify(gateway string, kind SignedKind, payload []byte) ([]byte, error) {
	body, sig, err := SplitSigned(payload)
	if err != nil {
		return nil, err
	}
	if k == nil || len(k.keys[gateway])+len(k.keys[AnyGateway]) == 0 {
		return nil, fmt.Errorf("%w %q", ErrUntrustedGateway, gateway)
	}
	msg := signedMessage(kind, body)
	for _, keys := range [][]ed25519.PublicKey{k.keys[gateway], k.keys[AnyGateway]} {
		for _, key := range keys {
			if ed25519.Verify(key, msg, sig) {
				return body, nil
			}
		}
	}
	return nil, fmt.Errorf("%w with the trusted key(s) of gateway %q", ErrBadSignature, gateway)
}

// ReadKeyRingFile reads the trusted-keys file at path (ParseKeyRing). Errors: the file
// cannot be opened (*fs.PathError), or ParseKeyRing's.
func ReadKeyRingFile(path string) (*KeyRing, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseKeyRing(f, path)
}

// ParseKeyRing reads a trusted-keys file: one "<gateway-id> ed25519:<base64>" per line
// (what `rollcall key` prints; gateway "*" trusts the key for every gateway), blank
// lines and lines starting with '#' ignored. name is used in errors, which give
// name:line and wrap ErrInvalidKey; every bad line is reported.
func ParseKeyRing(r io.Reader, name string) (*KeyRing, error) {
	k := &KeyRing{}
	var errs []error
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			errs = append(errs, fmt.Errorf("%s:%d: %w: want \"<gateway-id> %s<base64>\"", name, line, ErrInvalidKey, PublicKeyPrefix))
			continue
		}
		key, err := ParsePublicKey(fields[1])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: gateway %q: %w", name, line, fields[0], err))
			continue
		}
		k.Add(fields[0], key)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if k.Len() == 0 {
		return nil, fmt.Errorf("%s: %w: no key in the file", name, ErrInvalidKey)
	}
	return k, nil
}
