package client_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// retainedOn returns the payload the broker at url retains on topic (nil: none).
func retainedOn(t *testing.T, url, topic string) []byte {
	t.Helper()
	return testutil.Retained(t, url, topic, testutil.RetainedOptions{})[topic]
}

// TestSignedCatalogIgnoresForgeries: a real gateway signs what it publishes on a broker
// that anyone can write to (Mosquitto, anonymous). A consumer given the gateway's key
// (as `rollcall key` prints it) is fed every forgery of the catalog-truth report — a
// fake gateway with a live drive, an unsigned epoch-999 record in the real gateway's
// subtree, a real drive's id with its revision + 2^31 and another endpoint (unsigned,
// and signed with a key of the forger's), a forged "offline" status — and an old signed
// record of a drive played back after the drive died. After every change it must hold
// only what the gateway signed and never hand out a forged or dead instance; the
// gateway repairs its own topics on the broker, so consumers without keys and consumers
// that connect later see its records again.
func TestSignedCatalogIgnoresForgeries(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	const svc, gw = "servo-drive", "gw-sig"
	m := mosquitto.Start(t)
	r := newRig(t, map[int]string{1: "SIM-0001", 2: "SIM-0002"})
	r.GatewayID = gw
	r.RunGateway(m.URL(), gatewayYAML)
	trusted := r.TrustedKeys()
	c, _ := runClient(t, client.Options{Brokers: []string{m.URL()}, TrustedKeys: trusted})
	changes, cancel := c.Subscribe(1024)
	defer cancel()
	follow(t, c, changes, "two live drives", func() bool { return len(c.Live(svc)) == 2 })

	topics := contract.Topics{}
	d1, _ := instance(c, gw, simDrive1)
	d2, _ := instance(c, gw, simDrive2)
	d2Topic := topics.Instance(svc, gw, simDrive2)
	oldD2 := retainedOn(t, m.URL(), d2Topic) // a signed "passing" record, to play back later
	if _, err := trusted.Verify(gw, contract.KindInstance, oldD2); err != nil {
		t.Fatalf("the gateway's record of %s: %v", simDrive2, err)
	}

	// The forgeries.
	_, forgerKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	high := d1.Record
	high.Revision += 1 << 31
	high.Endpoint.Device = "/dev/forged"
	highSigned := instanceMsg(high)
	if highSigned.payload, err = contract.Sign(forgerKey, contract.KindInstance, highSigned.payload); err != nil {
		t.Fatal(err)
	}
	evil := drive(gw, 999, "evil", 9, contract.Passing, 1, 1)
	evil.ValidUntil = contract.Time{Time: time.Now().Add(time.Hour)}
	forged := time.Now()
	if err := publish(m.URL(),
		gatewayMsg("gw-fake", "online", 1), instanceMsg(drive("gw-fake", 1, "fake-1", 1, contract.Passing, 1, 1)),
		instanceMsg(evil), instanceMsg(high), highSigned, gatewayMsg(gw, "offline", d1.Epoch),
	); err != nil {
		t.Fatal(err)
	}
	// isForged reports anything of the forgeries in an instance the consumer holds.
	isForged := func(in client.Instance) bool {
		return in.Gateway == "gw-fake" || in.ID == "evil" || in.Endpoint.Device == "/dev/forged" ||
			in.Epoch == 999 || in.Revision >= high.Revision || (in.Gateway == gw && in.GatewayState != client.GatewayOnline)
	}
	st := testutil.EventuallyValue(t, waitFor, "the consumer to refuse the 5 unsigned and 1 wrongly signed forgeries",
		func() (client.Status, bool) { s := c.Status(); return s, s.Unsigned >= 5 && s.BadSignatures >= 1 })
	for drained := false; !drained; {
		select {
		case ch := <-changes:
			if isForged(ch.Instance) {
				t.Fatalf("a forgery reached a subscriber: %+v", ch.Instance)
			}
		default:
			drained = true
		}
	}
	for _, in := range c.Instances("") {
		if isForged(in) {
			t.Fatalf("the consumer holds a forgery: %+v", in)
		}
	}
	if live := c.Live(svc); len(live) != 2 {
		t.Fatalf("live after the forgeries: %v, want the 2 real drives", ids(live))
	}

	// The gateway repairs its own topics (it watches them): a consumer without keys
	// sees the real records again, and the forged one is gone.
	plain, _ := runClient(t, client.Options{Brokers: []string{m.URL()}})
	waitReady(t, plain)
	testutil.Eventually(t, waitFor, "the gateway's own topics repaired on the broker", func() bool {
		in, ok := instance(plain, gw, simDrive1)
		_, evilThere := instance(plain, gw, "evil")
		return ok && in.Revision < high.Revision && in.Endpoint.Device != "/dev/forged" && !evilThere && in.GatewayState == client.GatewayOnline
	})
	repaired := time.Since(forged)

	// Drive 2 dies; then its old signed "passing" record is played back.
	if err := r.Sim.SetFault("bus1", d2.Endpoint.Unit, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	follow(t, c, changes, simDrive2+" critical", statusIs(c, gw, simDrive2, contract.Critical))
	replayed := time.Now()
	if err := publish(m.URL(), retained{topic: d2Topic, payload: oldD2}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitFor, "the gateway to restore "+simDrive2+"'s critical record on the broker", func() bool {
		p := retainedOn(t, m.URL(), d2Topic)
		body, err := trusted.Verify(gw, contract.KindInstance, p)
		if err != nil {
			return false
		}
		rec, err := contract.DecodeRecord(body)
		return err == nil && rec != nil && rec.Status == contract.Critical
	})
	restored := time.Since(replayed)
	follow(t, c, changes, "the running consumer still refusing "+simDrive2, func() bool {
		in, ok := instance(c, gw, simDrive2)
		return ok && in.Status == contract.Critical
	})
	if _, err := c.Pick(svc, client.WithID(simDrive2)); err == nil {
		t.Fatalf("Pick returned %s after its old record was played back", simDrive2)
	}
	late, _ := runClient(t, client.Options{Brokers: []string{m.URL()}, TrustedKeys: trusted})
	waitReady(t, late)
	if in, err := late.Pick(svc, client.WithID(simDrive2)); err == nil {
		t.Fatalf("a consumer connecting after the repair picked the dead drive: %+v", in)
	}
	pickOnly(t, late, svc, simDrive1)
	st = c.Status()
	t.Logf("forgeries refused: %d unsigned, %d wrongly signed; the gateway repaired its topics %v after the forgeries and "+
		"restored the dead drive's record %v after the replay", st.Unsigned, st.BadSignatures,
		repaired.Round(time.Millisecond), restored.Round(time.Millisecond))
}

// TestReplayAfterDeregistration: a consumer that saw an instance deregistered does not
// take an older signed record of the same gateway run played back on its topic for a
// new registration while that record's lease could still be running; a newer record
// is taken as usual.
func TestReplayAfterDeregistration(t *testing.T) {
	m := mosquitto.Start(t)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ring := &contract.KeyRing{}
	ring.Add("gw", pub)
	sign := func(msg retained, kind contract.SignedKind) retained {
		var err error
		if msg.payload, err = contract.Sign(priv, kind, msg.payload); err != nil {
			t.Fatal(err)
		}
		return msg
	}
	leased := func(rev int64) retained {
		d := drive("gw", 2, "d", 1, contract.Passing, 1, rev)
		d.ValidUntil = contract.Time{Time: time.Now().Add(time.Minute)}
		return sign(instanceMsg(d), contract.KindInstance)
	}
	c, _ := runClient(t, client.Options{Brokers: []string{m.URL()}, TrustedKeys: ring})
	waitReady(t, c)
	changes, cancel := c.Subscribe(64)
	defer cancel()
	old := leased(5)
	if err := publish(m.URL(), sign(gatewayMsg("gw", "online", 2), contract.KindGateway), old); err != nil {
		t.Fatal(err)
	}
	nextChange(t, changes, func(ch client.Change) bool { return ch.Kind == client.Added && ch.Instance.ID == "d" })
	if err := publish(m.URL(), clearMsg("servo-drive", "gw", "d")); err != nil {
		t.Fatal(err)
	}
	nextChange(t, changes, func(ch client.Change) bool { return ch.Kind == client.Removed && ch.Instance.ID == "d" })
	// The replay, then a marker record of another instance: once the marker is in,
	// the replay was handled.
	marker := drive("gw", 2, "marker", 2, contract.Passing, 1, 1)
	if err := publish(m.URL(), old, sign(instanceMsg(marker), contract.KindInstance)); err != nil {
		t.Fatal(err)
	}
	nextChange(t, changes, func(ch client.Change) bool {
		if ch.Instance.ID == "d" {
			t.Fatalf("the played-back record was taken: %v %+v", ch.Kind, ch.Instance)
		}
		return ch.Instance.ID == "marker"
	})
	if err := publish(m.URL(), leased(6)); err != nil {
		t.Fatal(err)
	}
	nextChange(t, changes, func(ch client.Change) bool { return ch.Kind == client.Added && ch.Instance.ID == "d" })
	if in := mustPick(t, c, "servo-drive", client.WithID("d")); in.Revision != 2<<32+6 {
		t.Fatalf("revision %#x, want the new registration's", in.Revision)
	}
}
