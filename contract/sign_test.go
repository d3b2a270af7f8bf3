package contract_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/rollcall-edge/rollcall/contract"
)

func newKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func signedRecord(t testing.TB, priv ed25519.PrivateKey) (body, payload []byte) {
	t.Helper()
	body, err := contract.EncodeRecord(contract.Record{ID: "acme-sn1", Service: "servo-drive", Gateway: "gw-a", Epoch: 2, Revision: 7, Status: contract.Passing})
	if err != nil {
		t.Fatal(err)
	}
	payload, err = contract.Sign(priv, contract.KindInstance, body)
	if err != nil {
		t.Fatal(err)
	}
	return body, payload
}

// A signed payload is still a v1 record to a reader that does not check signatures,
// and a reader with the gateway's key gets back exactly the signed body.
func TestSignVerifyRoundTrip(t *testing.T) {
	pub, priv := newKey(t)
	body, payload := signedRecord(t, priv)
	rec, err := contract.DecodeRecord(payload)
	if err != nil || rec.ID != "acme-sn1" || rec.Revision != 7 {
		t.Fatalf("old reader: %+v, %v", rec, err)
	}
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil || m["sig"] == nil {
		t.Fatalf("signed payload is not a JSON object with sig: %v", err)
	}
	var ring contract.KeyRing
	ring.Add("gw-a", pub)
	got, err := ring.Verify("gw-a", contract.KindInstance, payload)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("Verify = %q, %v; want the body", got, err)
	}
	// The text form of the key survives a round trip.
	k, err := contract.ParsePublicKey(contract.FormatPublicKey(pub))
	if err != nil || !k.Equal(pub) {
		t.Fatalf("ParsePublicKey(FormatPublicKey) = %v, %v", k, err)
	}
}

// Everything a forger can do to a payload is refused, each with its reason.
func TestVerifyRefuses(t *testing.T) {
	pub, priv := newKey(t)
	_, other := newKey(t)
	body, payload := signedRecord(t, priv)
	_, foreign := signedRecord(t, other)
	var ring contract.KeyRing
	ring.Add("gw-a", pub)
	tampered := bytes.Replace(payload, []byte(`"revision":7`), []byte(`"revision":9`), 1)
	asGateway, err := contract.Sign(priv, contract.KindGateway, body)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		gateway string
		kind    contract.SignedKind
		payload []byte
		want    error
	}{
		{"unsigned", "gw-a", contract.KindInstance, body, contract.ErrUnsigned},
		{"empty", "gw-a", contract.KindInstance, nil, contract.ErrUnsigned},
		{"tampered", "gw-a", contract.KindInstance, tampered, contract.ErrBadSignature},
		{"other key", "gw-a", contract.KindInstance, foreign, contract.ErrBadSignature},
		{"other kind", "gw-a", contract.KindInstance, asGateway, contract.ErrBadSignature},
		{"untrusted gateway", "gw-b", contract.KindInstance, payload, contract.ErrUntrustedGateway},
		{"trailing bytes", "gw-a", contract.KindInstance, append(bytes.Clone(payload), ' '), contract.ErrUnsigned},
		{"bad base64", "gw-a", contract.KindInstance, append(bytes.Clone(payload[:len(payload)-4]), "!!\"}"...), contract.ErrBadSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ring.Verify(c.gateway, c.kind, c.payload)
			if !errors.Is(err, c.want) || got != nil {
				t.Fatalf("Verify = %q, %v; want %v", got, err, c.want)
			}
		})
	}
	var empty *contract.KeyRing
	if _, err := empty.Verify("gw-a", contract.KindInstance, payload); !errors.Is(err, contract.ErrUntrustedGateway) {
		t.Fatalf("nil ring: %v", err)
	}
}

// A key trusted for every gateway verifies any gateway's records; a gateway may have
// several keys (a key being replaced).
func TestKeyRingAnyGatewayAndRotation(t *testing.T) {
	pub1, priv1 := newKey(t)
	pub2, priv2 := newKey(t)
	_, p1 := signedRecord(t, priv1)
	_, p2 := signedRecord(t, priv2)
	var ring contract.KeyRing
	ring.Add("gw-a", pub1)
	ring.Add("gw-a", pub2)
	for _, p := range [][]byte{p1, p2} {
		if _, err := ring.Verify("gw-a", contract.KindInstance, p); err != nil {
			t.Fatal(err)
		}
	}
	var any contract.KeyRing
	any.Add(contract.AnyGateway, pub1)
	if _, err := any.Verify("whatever", contract.KindInstance, p1); err != nil {
		t.Fatal(err)
	}
	if ring.Len() != 2 || any.Len() != 1 {
		t.Fatalf("Len = %d, %d", ring.Len(), any.Len())
	}
}

// A signed payload larger than MaxPayloadSize is refused at signing, so no reader
// drops it as oversized.
func TestSignRefusesOversized(t *testing.T) {
	_, priv := newKey(t)
	body := []byte(`{"x":"` + strings.Repeat("a", contract.MaxPayloadSize-20) + `"}`)
	if _, err := contract.Sign(priv, contract.KindInstance, body); !errors.Is(err, contract.ErrPayloadTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if _, err := contract.Sign(priv, contract.KindInstance, []byte("{}")); !errors.Is(err, contract.ErrInvalidRecord) {
		t.Fatalf("empty object: err = %v", err)
	}
}

// The trusted-keys file names every bad line with file:line; what `rollcall key`
// prints is a valid line.
func TestParseKeyRing(t *testing.T) {
	pub, _ := newKey(t)
	good := "# cell 2\n\ncell2-gw " + contract.FormatPublicKey(pub) + "\n* " + contract.FormatPublicKey(pub) + "\n"
	ring, err := contract.ParseKeyRing(strings.NewReader(good), "keys.txt")
	if err != nil || ring.Len() != 2 {
		t.Fatalf("ParseKeyRing = %v, %v", ring, err)
	}
	bad := "cell2-gw\ncell3-gw ed25519:AAAA\ncell4-gw rsa:xyz\n"
	_, err = contract.ParseKeyRing(strings.NewReader(bad), "keys.txt")
	if !errors.Is(err, contract.ErrInvalidKey) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"keys.txt:1:", "keys.txt:2:", "keys.txt:3:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := contract.ParseKeyRing(strings.NewReader("# nothing\n"), "keys.txt"); !errors.Is(err, contract.ErrInvalidKey) {
		t.Fatalf("empty file: err = %v", err)
	}
}

// FuzzVerify: a hostile payload never panics the signature check, and nothing but the
// signer's exact body comes out of it.
func FuzzVerify(f *testing.F) {
	pub, priv := newKey(f)
	body, payload := signedRecord(f, priv)
	f.Add(payload)
	f.Add(body)
	f.Add([]byte(`{,"sig":"` + strings.Repeat("A", 86) + `=="}`))
	var ring contract.KeyRing
	ring.Add("gw-a", pub)
	f.Fuzz(func(t *testing.T, p []byte) {
		got, err := ring.Verify("gw-a", contract.KindInstance, p)
		if err == nil && !bytes.Equal(got, body) {
			t.Fatalf("verified a body the signer never signed: %q", got)
		}
	})
}
