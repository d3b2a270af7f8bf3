package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// pki is a throw-away CA with a server certificate for 127.0.0.1 and client
// certificates, as PEM files in a test directory.
type pki struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	CAFile string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rollcall test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{dir: t.TempDir(), ca: ca, caKey: key}
	p.CAFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue returns the certificate and key files of a leaf for cn (server: IP SAN 127.0.0.1).
func (p *pki) issue(t *testing.T, cn string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, cn+".pem", "CERTIFICATE", der), p.write(t, cn+".key", "EC PRIVATE KEY", kder)
}

func (p *pki) clientTLS(t *testing.T, cn string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	cf, kf := p.issue(t, cn, false)
	cert, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// aclPatterns returns a Mosquitto ACL that confines every gateway to its own subtree
// (contract.Topics.GatewayACL) with mosquitto's %u (the username, which is the gateway
// id); "reader" may only read (ReadAllFilter).
func aclPatterns() string {
	const user = "acl-username" // a valid gateway slug, replaced by %u
	var b strings.Builder
	fmt.Fprintf(&b, "user reader\ntopic read %s\n\n", contract.Topics{}.ReadAllFilter())
	for _, f := range (contract.Topics{}).GatewayACL(user) {
		fmt.Fprintf(&b, "pattern readwrite %s\n", strings.ReplaceAll(f, user, "%u"))
	}
	return b.String()
}

// marker returns a topic in gateway gw's own subtree (next to its status record) for
// the ordering markers of TestSecuredBroker.
func marker(gw string) string {
	return path.Join(path.Dir(contract.Topics{}.GatewayStatus(gw)), "marker")
}

// TestSecuredBroker runs the gateway against Mosquitto with TLS (CA verification and
// client certificates), a password file and an ACL that confines each gateway to its
// own subtree: the gateway works (password from a file, and from the environment), a
// write outside its subtree is refused, and a second gateway cannot overwrite the
// first one's records.
func TestSecuredBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	p := newPKI(t)
	srvCert, srvKey := p.issue(t, "broker", true)
	acl := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(acl, []byte(aclPatterns()), 0o600); err != nil {
		t.Fatal(err)
	}
	passwd := mosquitto.PasswordFile(t, map[string]string{"it-gw": "s3cret-1", "other-gw": "s3cret-2", "reader": "r3ad"})
	broker := mosquitto.StartSecure(t, mosquitto.Secure{CAFile: p.CAFile, CertFile: srvCert, KeyFile: srvKey,
		RequireClientCert: true, PasswordFile: passwd, ACLFile: acl})

	h := rig.New(t)
	h.StartSim(1, 2)
	pwFile := filepath.Join(h.Dir, "mqtt-password")
	if err := os.WriteFile(pwFile, []byte("s3cret-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gwCert, gwKey := p.issue(t, "it-gw", false)
	readerTLS := p.clientTLS(t, "reader")
	asReader := func(o *paho.ClientOptions) { o.SetUsername("reader").SetPassword("r3ad").SetTLSConfig(readerTLS) }
	sub := subscribe(t, broker.URL(), asReader)

	h.MQTTExtra = fmt.Sprintf(", username: it-gw, password_file: %s, tls: {ca_file: %s, cert_file: %s, key_file: %s}",
		pwFile, p.CAFile, gwCert, gwKey)
	g := h.StartGateway(broker.URL(), `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-2"}]
health: {poll_interval: 50ms}
`)
	v := view{}
	sub.next(t, 15*time.Second, "2 passing records through TLS + password + ACL", func(m message, r map[string]any) bool {
		v.apply(m, r)
		return len(v) == 2
	})
	victim := contract.Topics{}.Instance("servo-drive", "it-gw", "rollcall-firmware-sim-sim-0001")
	original := v["rollcall-firmware-sim-sim-0001"]["revision"]

	// A client with a gateway's credentials writes outside its subtree, then inside it.
	// MQTT keeps the order of one client's QoS 1 messages (MQTT 3.1.1 §4.6): once the
	// marker inside the subtree has arrived, the write before it would have too.
	publishAs := func(user, pass, topic, marker string) {
		t.Helper()
		opts := paho.NewClientOptions().AddBroker(broker.URL()).SetClientID(user + "-intruder").
			SetUsername(user).SetPassword(pass).SetTLSConfig(p.clientTLS(t, user))
		c := paho.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("%s connect: %v", user, tok.Error())
		}
		defer c.Disconnect(100)
		for _, pub := range []struct{ topic, payload string }{{topic, `{"schema":"rollcall.instance/v1","id":"forged"}`}, {marker, `{"marker":true}`}} {
			if tok := c.Publish(pub.topic, 1, true, pub.payload); !tok.WaitTimeout(10 * time.Second) {
				t.Fatalf("%s publish %s: no acknowledgement", user, pub.topic)
			}
		}
		sub.next(t, 10*time.Second, user+"'s marker", func(m message, r map[string]any) bool {
			if m.topic == topic {
				t.Fatalf("%s wrote %s: the ACL did not refuse it", user, topic)
			}
			return m.topic == marker
		})
	}
	publishAs("it-gw", "s3cret-1", contract.Topics{}.Instance("servo-drive", "other-gw", "forged"), marker("it-gw"))
	publishAs("other-gw", "s3cret-2", victim, marker("other-gw"))
	late := subscribe(t, broker.URL(), asReader)
	lv := view{}
	late.next(t, 10*time.Second, "it-gw's records intact", func(m message, r map[string]any) bool {
		lv.apply(m, r)
		return len(lv) == 2
	})
	if got := lv["rollcall-firmware-sim-sim-0001"]; got["id"] != "rollcall-firmware-sim-sim-0001" || got["revision"].(float64) < original.(float64) {
		t.Fatalf("record overwritten: %v", got)
	}
	if b, err := os.ReadFile(broker.LogPath()); err != nil || strings.Count(string(b), "Denied PUBLISH") < 2 {
		t.Errorf("broker log does not show the two refused writes (%v)", err)
	}

	// A wrong password is refused.
	bad := paho.NewClient(paho.NewClientOptions().AddBroker(broker.URL()).SetClientID("bad").
		SetUsername("it-gw").SetPassword("wrong").SetTLSConfig(p.clientTLS(t, "bad")))
	if tok := bad.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		bad.Disconnect(0)
		t.Fatal("wrong password accepted")
	}
	_ = g
}

// TestPasswordFromEnvironment: mqtt.password_env takes the password from the
// environment; the password never appears in the gateway's log.
func TestPasswordFromEnvironment(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	p := newPKI(t)
	srvCert, srvKey := p.issue(t, "broker", true)
	acl := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(acl, []byte(aclPatterns()), 0o600); err != nil {
		t.Fatal(err)
	}
	passwd := mosquitto.PasswordFile(t, map[string]string{"it-gw": "env-s3cret-9", "reader": "r3ad"})
	broker := mosquitto.StartSecure(t, mosquitto.Secure{CAFile: p.CAFile, CertFile: srvCert, KeyFile: srvKey,
		PasswordFile: passwd, ACLFile: acl})
	t.Setenv("IT_MQTT_PASSWORD", "env-s3cret-9")
	h := rig.New(t)
	var logs testutil.SyncBuffer
	h.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.StartSim(1)
	h.MQTTExtra = fmt.Sprintf(", username: it-gw, password_env: IT_MQTT_PASSWORD, tls: {ca_file: %s}", p.CAFile)
	sub := subscribe(t, broker.URL(), func(o *paho.ClientOptions) {
		o.SetUsername("reader").SetPassword("r3ad").SetTLSConfig(&tls.Config{RootCAs: poolOf(p.ca)})
	})
	h.StartGateway(broker.URL(), `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1"}]
`)
	sub.next(t, 15*time.Second, "a passing record", func(m message, r map[string]any) bool {
		return isCatalog(m) && r != nil && r["status"] == "passing"
	})
	if strings.Contains(logs.String(), "env-s3cret-9") {
		t.Fatal("the password appears in the log")
	}
}

func poolOf(c *x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return pool
}

// TestEmbeddedBrokerAccess: the embedded broker refuses anonymous clients unless
// allow_anonymous is set, lets configured users read the catalog but not write records,
// and the gateway itself (its own per-start account) publishes normally.
func TestEmbeddedBrokerAccess(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	h.StartSim(1)
	h.EmbeddedUser("line1", "l1ne")
	g := h.StartGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1"}]
`)
	connect := func(user, pass string) (paho.Client, error) {
		o := paho.NewClientOptions().AddBroker(g.BrokerURL()).SetClientID("access-" + user + pass)
		if user != "" {
			o.SetUsername(user).SetPassword(pass)
		}
		c := paho.NewClient(o)
		tok := c.Connect()
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			return nil, fmt.Errorf("connect %q: %v", user, tok.Error())
		}
		return c, nil
	}
	if c, err := connect("", ""); err == nil {
		c.Disconnect(0)
		t.Fatal("anonymous client accepted without allow_anonymous")
	}
	if c, err := connect("line1", "wrong"); err == nil {
		c.Disconnect(0)
		t.Fatal("wrong password accepted")
	}
	sub := subscribe(t, g.BrokerURL(), func(o *paho.ClientOptions) { o.SetUsername("line1").SetPassword("l1ne") })
	sub.next(t, 15*time.Second, "the gateway's record, read by line1", func(m message, r map[string]any) bool {
		return isCatalog(m) && r != nil && r["status"] == "passing"
	})
	// line1 may not write records: a forged record followed by a marker in its own
	// consumer topic; the marker arrives, the forgery does not (one client's messages
	// keep their order, MQTT 3.1.1 §4.6). QoS 0: mochi answers a refused QoS 1 publish
	// of an MQTT 3.1.1 client by closing its connection (§3.3.5 allows either), and a
	// refused QoS 0 publish by dropping it.
	c, err := connect("line1", "l1ne")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(100)
	forged := contract.Topics{}.Instance("servo-drive", "it-gw", "forged")
	syncTopic := contract.Topics{}.ConsumerSyncTopic("access-line1l1ne") // its own client id
	otherSync := contract.Topics{}.ConsumerSyncTopic("someone-else")
	c.Publish(forged, 0, true, `{"schema":"rollcall.instance/v1"}`).WaitTimeout(5 * time.Second)
	c.Publish(otherSync, 0, false, `{"marker":0}`).WaitTimeout(5 * time.Second)
	c.Publish(syncTopic, 0, false, `{"marker":1}`).WaitTimeout(5 * time.Second)
	sub.next(t, 10*time.Second, "line1's marker", func(m message, r map[string]any) bool {
		if m.topic == forged {
			t.Fatal("line1 wrote a record")
		}
		if m.topic == otherSync {
			t.Fatal("line1 wrote on another consumer's sync topic")
		}
		return m.topic == syncTopic
	})
}
