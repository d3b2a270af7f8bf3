package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/internal/testutil/tcpproxy"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// regMsg is one self-registration message seen on the broker, with when it arrived.
type regMsg struct {
	contract.SelfRegistration
	at time.Time
}

// listenRegister subscribes a plain paho client (QoS 1) to topic on url and returns
// the self-registrations published there, in arrival order.
func listenRegister(t *testing.T, url, topic string) <-chan regMsg {
	t.Helper()
	ch := make(chan regMsg, 4096)
	var overflow atomic.Bool
	pc := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(testutil.Unique(t, "reg-listener")).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
	if tok := pc.Connect(); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("listener connect: %v", tok.Error())
	}
	t.Cleanup(func() {
		pc.Disconnect(100)
		if overflow.Load() {
			t.Error("listener buffer overflowed")
		}
	})
	tok := pc.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
		var r contract.SelfRegistration
		if err := json.Unmarshal(m.Payload(), &r); err != nil {
			t.Errorf("malformed self-registration %q: %v", m.Payload(), err)
			return
		}
		if m.Retained() {
			t.Errorf("self-registration published retained: %s", m.Payload())
		}
		select {
		case ch <- regMsg{SelfRegistration: r, at: time.Now()}:
		default:
			overflow.Store(true)
		}
	})
	if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("listener subscribe: %v", tok.Error())
	}
	return ch
}

// nextReg returns the next message with op, skipping others, failing the test when none
// comes within d.
func nextReg(t *testing.T, ch <-chan regMsg, op string, d time.Duration) regMsg {
	t.Helper()
	return waitReg(t, ch, d, op+" message", func(m regMsg) bool { return m.Op == op })
}

// waitReg returns the first message for which match is true, skipping others, failing
// the test when none comes within d.
func waitReg(t *testing.T, ch <-chan regMsg, d time.Duration, what string, match func(regMsg) bool) regMsg {
	t.Helper()
	deadline := timer(t, d)
	for {
		select {
		case m := <-ch:
			if match(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s within %v", what, d)
		}
	}
}

// startRegister runs c.Register(ctx, r) in a goroutine; the channel gets its result.
func startRegister(t *testing.T, c *client.Client, r client.Registration) (context.CancelFunc, <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); errc <- c.Register(ctx, r) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return cancel, errc
}

// TestRegister: the client registers a module with a gateway over its own connection:
// register first (every field), renewals every TTL/3 with Renew's status and note,
// register again after a reconnection and after the gateway restarted, deregister when
// the context ends.
func TestRegister(t *testing.T) {
	m := mosquitto.Start(t)
	proxy := tcpproxy.Start(t, m.Addr())
	const gw, clientID = "gw-cell2", "cell2-vision"
	if err := publish(m.URL(), gatewayMsg(gw, "online", 1)); err != nil {
		t.Fatal(err)
	}
	msgs := listenRegister(t, m.URL(), contract.Topics{}.Register(gw, clientID))
	c, _ := runClient(t, client.Options{Brokers: []string{proxy.URL()}, ClientID: clientID,
		KeepAlive: time.Second, MaxReconnectInterval: 100 * time.Millisecond})

	var health atomic.Value
	health.Store([2]string{"", ""})
	reg := client.Registration{
		Gateway: gw, Name: "vision", Service: "vision-server",
		Endpoint: contract.Endpoint{Transport: "tcp", Host: "10.0.2.20", Port: 9000},
		Meta:     map[string]string{"cell": "2"},
		Identity: contract.Identity{Vendor: "acme", Model: "V-1", Serial: "V1-0042"},
		TTL:      time.Second,
		Renew:    func() (string, string) { h := health.Load().([2]string); return h[0], h[1] },
	}
	cancel, errc := startRegister(t, c, reg)

	first := nextReg(t, msgs, contract.OpRegister, waitFor)
	want := contract.SelfRegistration{Op: "register", Name: "vision", Service: "vision-server", Endpoint: reg.Endpoint,
		Meta: reg.Meta, Identity: reg.Identity, TTLMS: 1000, Status: "pass"}
	if !maps.Equal(first.Meta, want.Meta) || first.Endpoint != want.Endpoint || first.Identity != want.Identity ||
		first.Op != want.Op || first.Name != want.Name || first.Service != want.Service || first.TTLMS != want.TTLMS ||
		first.Status != want.Status || first.Note != "" {
		t.Fatalf("register message %+v, want %+v", first.SelfRegistration, want)
	}
	if err := first.Check(); err != nil {
		t.Errorf("register message fails the contract's check: %v", err)
	}

	// Renewals every TTL/3: at least 2 within 1 s of the registration.
	health.Store([2]string{contract.TTLWarn, "fan\x00 hot"})
	deadline := timer(t, time.Until(first.at.Add(time.Second)))
	var renewals []regMsg
collect:
	for {
		select {
		case m := <-msgs:
			if m.Op != contract.OpRenew {
				t.Fatalf("unexpected %+v", m.SelfRegistration)
			}
			renewals = append(renewals, m)
		case <-deadline:
			break collect
		}
	}
	if len(renewals) < 2 {
		t.Fatalf("%d renewals within 1 s of the registration (TTL 1 s), want ≥ 2", len(renewals))
	}
	prev := first.at
	for _, r := range renewals {
		if gap := r.at.Sub(prev); gap < 100*time.Millisecond {
			t.Errorf("renewal %v after the previous message, want about TTL/3", gap)
		}
		prev = r.at
		// Every message carries the whole description: a gateway that does not know the
		// instance registers it from a renewal, under the same id (identity).
		if r.Name != "vision" || r.Service != "vision-server" || r.TTLMS != 1000 || r.Identity.Serial != "V1-0042" {
			t.Errorf("renewal %+v: want the whole description", r.SelfRegistration)
		}
	}
	// Renew's status and (cleaned) note, once it changed.
	waitReg(t, msgs, waitFor, "a warn renewal", func(r regMsg) bool {
		return r.Op == contract.OpRenew && r.Status == "warn" && r.Note == "fan\uFFFD hot"
	})
	// An invalid status from Renew is sent as fail, saying so.
	health.Store([2]string{"bogus", "x"})
	waitReg(t, msgs, waitFor, "a fail renewal", func(r regMsg) bool {
		return r.Op == contract.OpRenew && r.Status == "fail" && strings.Contains(r.Note, `invalid status "bogus"`)
	})
	health.Store([2]string{"", ""})

	// The client's connection is cut: it registers again on the new one.
	if n := proxy.Cut(); n != 1 {
		t.Fatalf("cut %d links, want 1", n)
	}
	again := nextReg(t, msgs, contract.OpRegister, waitFor)
	if again.TTLMS != 1000 || again.Service != "vision-server" || again.Status != "pass" {
		t.Errorf("register after reconnection: %+v", again.SelfRegistration)
	}
	testutil.Eventually(t, waitFor, "resynchronised", func() bool { s := c.Status(); return s.Connected && s.Synced })

	// The gateway restarts (a new epoch): it forgot the registration, which is sent again.
	if err := publish(m.URL(), gatewayMsg(gw, "online", 2)); err != nil {
		t.Fatal(err)
	}
	nextReg(t, msgs, contract.OpRegister, waitFor)

	// The context ends: deregister, and Register returns nil.
	cancel()
	bye := nextReg(t, msgs, contract.OpDeregister, waitFor)
	if bye.Name != "vision" || bye.Identity.Serial != "V1-0042" || bye.Status != "" {
		t.Errorf("deregister message %+v", bye.SelfRegistration)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Register returned %v, want nil", err)
		}
	case <-timer(t, waitFor):
		t.Fatal("Register did not return after its context ended")
	}
}

// TestRegisterSharedContext: with one context for Run and Register, ending it still
// sends the deregistration before Run disconnects.
func TestRegisterSharedContext(t *testing.T) {
	m := mosquitto.Start(t)
	const gw, clientID = "gw-1", "module-7"
	msgs := listenRegister(t, m.URL(), contract.Topics{}.Register(gw, clientID))
	c, err := client.New(client.Options{Brokers: []string{m.URL()}, ClientID: clientID, Logger: testutil.Logger(t, 0)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr, regErr := make(chan error, 1), make(chan error, 1)
	go func() { runErr <- c.Run(ctx) }()
	go func() {
		regErr <- c.Register(ctx, client.Registration{Gateway: gw, Name: "io", Service: "io-module",
			Endpoint: contract.Endpoint{Transport: "http", Host: "10.0.0.7", Port: 80, URL: "http://10.0.0.7/health"}, TTL: 5 * time.Second})
	}()
	nextReg(t, msgs, contract.OpRegister, waitFor)
	cancel()
	for _, ch := range []chan error{runErr, regErr} {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("returned %v", err)
			}
		case <-timer(t, waitFor):
			t.Fatal("Run or Register did not return")
		}
	}
	nextReg(t, msgs, contract.OpDeregister, waitFor)
	// After Run returned, Register refuses at once.
	err = c.Register(context.Background(), client.Registration{Gateway: gw, Name: "io", Service: "io-module",
		Endpoint: contract.Endpoint{Transport: "tcp", Host: "h", Port: 1}, TTL: time.Second})
	if !errors.Is(err, client.ErrStopped) {
		t.Errorf("Register after Run: %v, want ErrStopped", err)
	}
}

// TestRegisterInvalid: invalid registrations are refused at once, before anything is
// sent.
func TestRegisterInvalid(t *testing.T) {
	c, err := client.New(client.Options{Brokers: []string{unreachableBroker}})
	if err != nil {
		t.Fatal(err)
	}
	good := client.Registration{Gateway: "gw", Name: "vision", Service: "vision-server",
		Endpoint: contract.Endpoint{Transport: "tcp", Host: "10.0.0.1", Port: 9000}, TTL: 3 * time.Second}
	for name, mod := range map[string]func(*client.Registration){
		"no gateway":    func(r *client.Registration) { r.Gateway = "" },
		"name not slug": func(r *client.Registration) { r.Name = "Vision Server" },
		"no name":       func(r *client.Registration) { r.Name = "" },
		"service":       func(r *client.Registration) { r.Service = "" },
		"ttl zero":      func(r *client.Registration) { r.TTL = 0 },
		"ttl too short": func(r *client.Registration) { r.TTL = 999 * time.Millisecond },
		"ttl too long":  func(r *client.Registration) { r.TTL = 2 * time.Hour },
		"no transport":  func(r *client.Registration) { r.Endpoint.Transport = "" },
	} {
		r := good
		mod(&r)
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // Register must not wait for it: the error comes first
		if err := c.Register(ctx, r); !errors.Is(err, contract.ErrBadRegistration) {
			t.Errorf("%s: %v, want ErrBadRegistration", name, err)
		}
	}
	// A valid one whose context already ended: nil, nothing sent (Run never ran).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Register(ctx, good); err != nil {
		t.Errorf("valid registration with an ended context: %v", err)
	}
}
