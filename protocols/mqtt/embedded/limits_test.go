package embedded

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/tcpproxy"
)

const (
	prefix     = "rollcall/v1"
	gwStatus   = prefix + "/gateways/gw/status"
	gwInstance = prefix + "/catalog/servo-drive/gw/drive-1"
)

// plantAccess is the embedded broker's access as the gateway sets it up: the gateway's
// own unlimited account, a named consumer, and read-only anonymous clients that may
// write only their own sync topic.
func plantAccess() *Access {
	ownSync := prefix + "/consumers/" + ClientIDPattern + "/#"
	gwACL := []string{prefix + "/catalog/+/gw/#", prefix + "/gateways/gw/#"}
	return NewAccess(AccessOptions{
		Users: []User{
			{Username: "gw", Password: "gw-pw", Read: gwACL, Write: gwACL, Unlimited: true},
			{Username: "gw2", Password: "gw2-pw", Read: []string{prefix + "/#"}, Write: []string{prefix + "/catalog/+/gw2/#"}},
			{Username: "reader", Password: "reader-pw", Read: []string{prefix + "/#", "test/#"}, Write: []string{"test/#"}},
		},
		Anonymous: &User{Read: []string{prefix + "/#"}, Write: []string{ownSync}, NoRetain: true},
	})
}

// connect connects a paho v3.1.1 client with the given credentials and will (topic ""
// for none) and returns it, or the connection error.
func connect(t *testing.T, url, user, pass, willTopic string, willRetain bool) (paho.Client, error) {
	t.Helper()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	o := paho.NewClientOptions().AddBroker(url).SetClientID("c-" + hex.EncodeToString(rnd[:])).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetUsername(user).SetPassword(pass)
	if willTopic != "" {
		o.SetWill(willTopic, `{"state":"online","gateway":"gw","epoch":999999}`, 1, willRetain)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("connect did not complete")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

// retainedAt returns the retained payloads under filter, read with the test's reader
// account.
func retainedAt(t *testing.T, url, filter string) map[string][]byte {
	t.Helper()
	return testutil.Retained(t, url, filter, testutil.RetainedOptions{Username: "reader", Password: "reader-pw", Marker: "test/marker"})
}

// TestWillACL: the will given in CONNECT is held to the same rules as a publish. An
// anonymous (read-only) client's retained will on a gateway's instance topic or status
// topic is refused at CONNECT (so nothing is stored when it dies); a named account's
// will outside its subtree too; a non-retained will on the client's own sync topic is
// allowed. A refused client never got in, so nothing forged is retained afterwards.
func TestWillACL(t *testing.T) {
	b := start(t, Options{Listen: "127.0.0.1:0", Auth: plantAccess()})
	proxy := tcpproxy.Start(t, b.Addr())
	for _, c := range []struct {
		name, user, pass, will string
		retain                 bool
	}{
		{"anonymous retained will on an instance topic", "", "", prefix + "/catalog/servo-drive/gw/evil-w", true},
		{"anonymous will on the gateway's status topic", "", "", gwStatus, false},
		{"anonymous retained will on its own sync topic", "", "", prefix + "/consumers/" + "me/sync", true},
		{"named account's will in another gateway's subtree", "gw2", "gw2-pw", gwStatus, true},
	} {
		if _, err := connect(t, proxy.URL(), c.user, c.pass, c.will, c.retain); err == nil {
			t.Errorf("%s: connection accepted", c.name)
		}
	}
	if n := b.Stats().Refused; n != 4 {
		t.Errorf("Refused = %d, want 4", n)
	}
	// Allowed: a will of gw2 in its own subtree, and an anonymous client with no will.
	if _, err := connect(t, proxy.URL(), "gw2", "gw2-pw", prefix+"/catalog/servo-drive/gw2/x", true); err != nil {
		t.Fatalf("gw2's own will refused: %v", err)
	}
	if _, err := connect(t, proxy.URL(), "", "", "", false); err != nil {
		t.Fatalf("anonymous reader refused: %v", err)
	}
	// Cut every connection: the accepted wills fire; the refused ones never existed.
	proxy.SetDown(true)
	testutil.EventuallyNil(t, 10*time.Second, "gw2's will stored", func() error {
		if _, ok := retainedAt(t, b.URL(), prefix+"/#")[prefix+"/catalog/servo-drive/gw2/x"]; !ok {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	for topic := range retainedAt(t, b.URL(), prefix+"/#") {
		if strings.Contains(topic, "evil") || topic == gwStatus || strings.Contains(topic, "consumers") {
			t.Errorf("a refused will was stored at %s", topic)
		}
	}
}

// TestAnonymousStoresNothing: an anonymous client's retained publish on its own sync
// topic is acknowledged and dropped; a publish on a gateway's topic is refused (MQTT
// 3.1.1 has no negative PUBACK: the broker disconnects it). Nothing is retained.
func TestAnonymousStoresNothing(t *testing.T) {
	b := start(t, Options{Listen: "127.0.0.1:0", Auth: plantAccess()})
	c, err := connect(t, b.URL(), "", "", "", false)
	if err != nil {
		t.Fatal(err)
	}
	own := prefix + "/consumers/" + strings.ToLower(clientID(c)) + "/sync"
	if tok := c.Publish(own, 1, true, "kept?"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish on own sync topic: %v", tok.Error())
	}
	tok := c.Publish(gwInstance, 1, true, `{"forged":true}`)
	tok.WaitTimeout(10 * time.Second)
	testutil.Eventually(t, 10*time.Second, "the writer disconnected", func() bool { return !c.IsConnectionOpen() })
	if got := retainedAt(t, b.URL(), prefix+"/#"); len(got) != 0 {
		t.Fatalf("retained after anonymous publishes: %v", got)
	}
	if n := b.Stats().Refused; n != 2 {
		t.Errorf("Refused = %d, want 2", n)
	}
}

func clientID(c paho.Client) string {
	r := c.OptionsReader()
	return r.ClientID()
}

// TestRetainedQuotas: a limited account stores retained messages up to its quotas
// (count and bytes); replacing its own message does not count twice, deleting frees
// room, and the total quota holds across accounts; the unlimited gateway account is
// not counted and never refused.
func TestRetainedQuotas(t *testing.T) {
	lim := Limits{MaxRetainedPerAccount: 3, MaxRetainedBytesPerAccount: 400, MaxRetained: 4, MaxRetainedBytes: 10000}
	b := start(t, Options{Listen: "127.0.0.1:0", Auth: plantAccess(), Limits: lim})
	gw2, err := connect(t, b.URL(), "gw2", "gw2-pw", "", false)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := connect(t, b.URL(), "gw", "gw-pw", "", false)
	if err != nil {
		t.Fatal(err)
	}
	pub := func(c paho.Client, topic, payload string) {
		t.Helper()
		if tok := c.Publish(topic, 1, true, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
	}
	t2 := func(i int) string { return fmt.Sprintf("%s/catalog/servo-drive/gw2/d%d", prefix, i) }
	for i := range 5 {
		pub(gw2, t2(i), "x")
	}
	pub(gw2, t2(0), "replaced") // its own: allowed
	for i := range 10 {
		pub(gw, fmt.Sprintf("%s/catalog/servo-drive/gw/d%d", prefix, i), "gateway record")
	}
	got := retainedAt(t, b.URL(), prefix+"/#")
	if len(got) != 13 || string(got[t2(0)]) != "replaced" {
		t.Fatalf("retained %d messages (want 3 of gw2 + 10 of gw), %s = %q", len(got), t2(0), got[t2(0)])
	}
	for i := 3; i < 5; i++ {
		if _, ok := got[t2(i)]; ok {
			t.Errorf("%s stored over the per-account quota", t2(i))
		}
	}
	if s := b.Stats(); s.Retained != 3 || s.Refused != 2 {
		t.Errorf("stats %+v, want 3 retained (gw's not counted), 2 refused", s)
	}
	pub(gw2, t2(1), "") // delete: frees a slot
	pub(gw2, t2(3), strings.Repeat("b", 500))
	if _, ok := retainedAt(t, b.URL(), prefix+"/#")[t2(3)]; ok {
		t.Error("a 500-byte message stored over the 400-byte account quota")
	}
	pub(gw2, t2(3), "y")
	if _, ok := retainedAt(t, b.URL(), prefix+"/#")[t2(3)]; !ok {
		t.Error("a message within quota after a delete was not stored")
	}
}

// TestPacketSizeLimit: a client sending a packet over MaxPacketBytes (the 10.7 MB
// retained publish of the flood report) is disconnected before the packet is read, and
// nothing is stored.
func TestPacketSizeLimit(t *testing.T) {
	b := start(t, Options{Listen: "127.0.0.1:0", Auth: plantAccess()})
	c, err := connect(t, b.URL(), "gw", "gw-pw", "", false)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 10_700_000)
	c.Publish(gwInstance, 1, true, big).WaitTimeout(10 * time.Second)
	testutil.Eventually(t, 10*time.Second, "the client disconnected", func() bool { return !c.IsConnectionOpen() })
	if got := retainedAt(t, b.URL(), prefix+"/#"); len(got) != 0 {
		t.Fatalf("retained %d messages after an oversized publish", len(got))
	}
}
