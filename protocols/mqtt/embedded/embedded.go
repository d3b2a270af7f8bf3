// Package embedded runs rollcall's in-process MQTT broker (docs/design.md, "Real
// components in tests and deployment": embedded by default in `rollcall gateway` and `rollcall demo`),
// built on github.com/mochi-mqtt/server/v2 v2.7.9, with one TCP listener.
package embedded

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// DefaultListen is the listen address used when Options.Listen is empty
// (docs/design.md, "Commands": the default without --config).
const DefaultListen = "127.0.0.1:1883"

// Options configures the embedded broker.
type Options struct {
	// Listen is the TCP address to listen on, host:port; default DefaultListen.
	// Port 0 picks a free port: read it back with Broker.Addr.
	Listen string
	// Logger receives mochi's logs. Default slog.Default().
	Logger *slog.Logger
	// Auth is the authentication/ACL hook. nil installs mochi's allow-all hook
	// (auth.AllowHook): every client may connect, publish and subscribe anywhere.
	// This is the seam for the broker auth/ACL configuration: pass an *auth.Hook with
	// a ledger (users, and ACLs such as <prefix>/catalog/+/<gateway>/# per gateway).
	// Without any auth hook mochi denies everything.
	Auth mochi.Hook
	// AuthConfig is passed with Auth to mochi's AddHook (e.g. *auth.Options).
	AuthConfig any
	// Limits bound clients, packet sizes, in-flight messages and retained messages;
	// zero fields take the defaults (see Limits). With an *Access as Auth, its
	// User.Unlimited accounts are exempt from the retained quotas.
	Limits Limits
}

// Broker is a running embedded broker. Close it when done.
type Broker struct {
	srv    *mochi.Server
	ln     *trackedListener
	quota  *quotaHook
	refuse *refusals
	closed sync.Once
	err    error
}

// Stats returns the broker's counters now.
func (b *Broker) Stats() Stats {
	n, bytes := b.quota.usage()
	return Stats{Clients: b.srv.Clients.Len(), Retained: n, RetainedBytes: bytes, Refused: b.refuse.n.Load()}
}

// Start starts the broker and returns once it is listening. Retained messages never
// expire (Capabilities.MaximumMessageExpiryInterval = 0; mochi's default would drop
// them after 24 h in mochi v2.7.9; docs/libraries.md). Errors: the hook could not be added, or the address
// could not be listened on.
func Start(o Options) (*Broker, error) {
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	lim := o.Limits.withDefaults()
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumMessageExpiryInterval = 0 // retained records must not expire
	caps.MaximumClients = int64(lim.MaxClients)
	caps.MaximumPacketSize = uint32(lim.MaxPacketBytes)
	caps.ReceiveMaximum = uint16(min(lim.MaxInflight, 65535))
	caps.MaximumInflight = uint16(min(lim.MaxInflight, 65535))
	srv := mochi.New(&mochi.Options{
		Capabilities: caps,
		Logger:       o.Logger.With("component", "mqtt-broker"),
	})
	refuse := &refusals{log: o.Logger, logged: map[string]bool{}}
	quota := &quotaHook{lim: lim, log: refuse, topics: map[string]retainedMsg{}, accounts: map[string]*usage{}}
	hook, cfg := o.Auth, o.AuthConfig
	if hook == nil {
		hook, cfg = new(auth.AllowHook), nil
	}
	if a, ok := hook.(*Access); ok {
		a.log, quota.unlimited = refuse, a.unlimited
	}
	// Order matters: the access and quota hooks may drop a retained publish or will,
	// so they run before the consistency hook, which locks the retained index for
	// every retained message it sees until it is stored.
	if err := srv.AddHook(hook, cfg); err != nil {
		return nil, fmt.Errorf("embedded broker: auth hook %s: %w", hook.ID(), err)
	}
	if err := srv.AddHook(quota, nil); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	if err := srv.AddHook(new(consistencyHook), nil); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	ln := &trackedListener{TCP: listeners.NewTCP(listeners.Config{ID: "tcp", Address: o.Listen}), served: make(chan struct{})}
	if err := srv.AddListener(ln); err != nil { // Init: binds the address
		return nil, fmt.Errorf("embedded broker: listen on %s: %w", o.Listen, err)
	}
	if err := srv.Serve(); err != nil { // starts the accept loop in a goroutine
		_ = srv.Close()
		return nil, fmt.Errorf("embedded broker: serve: %w", err)
	}
	return &Broker{srv: srv, ln: ln, quota: quota, refuse: refuse}, nil
}

// Addr returns the bound listen address, host:port (the real port when Listen had
// port 0).
func (b *Broker) Addr() string { return b.ln.Address() }

// URL returns the broker URL for clients: "tcp://" + Addr().
func (b *Broker) URL() string { return "tcp://" + b.Addr() }

// Close stops accepting connections, disconnects every client, waits for the accept
// loop and every client goroutine to end, and stops the server. mochi's housekeeping
// goroutine is told to stop but cannot be waited for (mochi offers no handle); it ends
// promptly. Close is idempotent and returns nil.
//
// It does not leave the client disconnection to mochi's Server.Close: in v2.7.9 that
// path (closeListenerClients → Clients.GetByListener) takes the clients' read lock
// twice, and deadlocks when a client leaves (Clients.Delete) in between.
func (b *Broker) Close() error {
	b.closed.Do(func() {
		b.ln.Close(func(string) {}) // stop accepting; mochi's later Close skips its client sweep
		<-b.ln.served
		clientsDone := make(chan struct{})
		go func() { // ends once every client goroutine ended, which the loop below brings about
			b.srv.Listeners.ClientsWg.Wait()
			close(clientsDone)
		}()
		tick := time.NewTicker(20 * time.Millisecond) // repeat for clients still attaching
		defer tick.Stop()
		for done := false; !done; {
			for _, cl := range b.srv.Clients.GetAll() {
				if !cl.Net.Inline && !cl.Closed() {
					_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
				}
			}
			select {
			case <-clientsDone:
				done = true
			case <-tick.C:
			}
		}
		b.err = b.srv.Close()
	})
	return b.err
}

// WriteTimeout bounds one write to a client's connection: a client that stops reading
// (its TCP window full) is disconnected after it instead of stalling the broker's work
// done on its behalf (a SUBSCRIBE's retained delivery holds the retained-index read lock,
// see consistencyHook).
const WriteTimeout = 10 * time.Second

// trackedListener is mochi's TCP listener plus a signal when its accept loop ended,
// which mochi does not wait for itself; it gives every connection a write deadline.
type trackedListener struct {
	*listeners.TCP
	served chan struct{}
	once   sync.Once
}

// Serve runs the accept loop and signals when it returned.
func (l *trackedListener) Serve(establish listeners.EstablishFn) {
	defer l.once.Do(func() { close(l.served) })
	l.TCP.Serve(func(id string, c net.Conn) error {
		return establish(id, deadlineConn{Conn: c})
	})
}

var _ listeners.Listener = (*trackedListener)(nil)

// deadlineConn sets a write deadline of WriteTimeout before every write.
type deadlineConn struct{ net.Conn }

// Write implements net.Conn.
func (c deadlineConn) Write(b []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(WriteTimeout))
	return c.Conn.Write(b)
}

// consistencyHook works around two behaviours of mochi v2.7.9 that break the MQTT
// contract's guarantees (docs/contract.md, "Health semantics"; docs/libraries.md,
// "mochi-mqtt/server v2.7.9").
//
// Retained index (upstream issue #200, a data race): TopicsIndex.scanMessages, run when
// a client subscribes with a wildcard, reads each topic particle's retainPath without a
// lock, while RetainMessage (a retained publish or a retained will) writes it under the
// particle's lock only. The hook puts the two under one sync.RWMutex: a SUBSCRIBE holds
// it shared from OnSubscribe until OnPacketProcessed (its retained scan and delivery
// happen in between), a retained write holds it exclusively from OnPublish (or OnWill)
// until OnRetainMessage, which mochi calls right after storing it. The hook is added
// after the auth hook, so no later hook can reject a publication it has locked for.
// Holders are tracked per client, so an unlock never happens without its lock (a
// delayed MQTT 5 will, stored without OnWill, is left unordered). WriteTimeout bounds how
// long a client that stops reading can keep the shared lock.
//
// Wills of taken-over sessions: when a client reconnects with the same client id
// before the broker noticed its old connection died, mochi disconnects the old
// connection and publishes its will from the old connection's goroutine, which can
// land after the new connection's first messages: a gateway that is online would be
// left with a retained "offline". Mosquitto does not publish the will of a
// taken-over session; this hook does the same, by remembering the newest connection
// per client id (OnSessionEstablish runs before mochi disconnects the old one) and
// blanking the will of any older one (an empty topic reaches no subscriber and is not
// retained).
type consistencyHook struct {
	mochi.HookBase
	retained sync.RWMutex // the retained index: shared for scans, exclusive for writes

	mu       sync.Mutex               // guards the maps below
	newest   map[string]*mochi.Client // client id → newest connection
	scanning map[*mochi.Client]bool   // holds retained shared (a SUBSCRIBE in progress)
	writing  map[*mochi.Client]bool   // holds retained exclusively (a retained write)
}

// ID implements mochi.Hook.
func (h *consistencyHook) ID() string { return "rollcall-consistency" }

// Provides implements mochi.Hook.
func (h *consistencyHook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mochi.OnSubscribe, mochi.OnPacketProcessed, mochi.OnPublish, mochi.OnWill, mochi.OnRetainMessage,
		mochi.OnSessionEstablish, mochi.OnDisconnect,
	}, []byte{b})
}

// hold records that cl holds the retained lock (in m); false if it already did.
func (h *consistencyHook) hold(m *map[*mochi.Client]bool, cl *mochi.Client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if *m == nil {
		*m = map[*mochi.Client]bool{}
	}
	if (*m)[cl] {
		return false
	}
	(*m)[cl] = true
	return true
}

// release forgets that cl holds the retained lock (in m) and reports whether it did.
func (h *consistencyHook) release(m map[*mochi.Client]bool, cl *mochi.Client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	held := m[cl]
	delete(m, cl)
	return held
}

// OnSubscribe implements mochi.Hook: a SUBSCRIBE's retained scan is about to run.
func (h *consistencyHook) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	if !cl.Net.Inline && h.hold(&h.scanning, cl) { // the inline client has no OnPacketProcessed
		h.retained.RLock()
	}
	return pk
}

// OnPacketProcessed implements mochi.Hook: after a SUBSCRIBE, its retained scan is done.
func (h *consistencyHook) OnPacketProcessed(cl *mochi.Client, pk packets.Packet, _ error) {
	if pk.FixedHeader.Type == packets.Subscribe && h.release(h.scanning, cl) {
		h.retained.RUnlock()
	}
}

// OnPublish implements mochi.Hook: a retained publish is about to be stored.
func (h *consistencyHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Retain && h.hold(&h.writing, cl) {
		h.retained.Lock()
	}
	return pk, nil
}

// OnRetainMessage implements mochi.Hook: the retained write is done.
func (h *consistencyHook) OnRetainMessage(cl *mochi.Client, _ packets.Packet, _ int64) {
	if h.release(h.writing, cl) {
		h.retained.Unlock()
	}
}

// OnSessionEstablish implements mochi.Hook: cl is now the newest connection of its id.
func (h *consistencyHook) OnSessionEstablish(cl *mochi.Client, _ packets.Packet) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.newest == nil {
		h.newest = map[string]*mochi.Client{}
	}
	h.newest[cl.ID] = cl
}

// OnDisconnect implements mochi.Hook: forget a connection that was the newest.
func (h *consistencyHook) OnDisconnect(cl *mochi.Client, _ error, _ bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.newest[cl.ID] == cl {
		delete(h.newest, cl.ID)
	}
}

// OnWill implements mochi.Hook: blank the will of a taken-over connection; a retained
// will sent now (not delayed) is about to be stored, under the exclusive retained lock.
func (h *consistencyHook) OnWill(cl *mochi.Client, will mochi.Will) (mochi.Will, error) {
	h.mu.Lock()
	if n, ok := h.newest[cl.ID]; ok && n != cl {
		h.mu.Unlock()
		return mochi.Will{}, nil
	}
	h.mu.Unlock()
	if will.Retain && will.WillDelayInterval == 0 && cl.Properties.Will.WillDelayInterval == 0 && h.hold(&h.writing, cl) {
		h.retained.Lock()
	}
	return will, nil
}
