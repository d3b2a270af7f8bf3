// Package gateway wires rollcall together: it loads profiles, keeps the epoch, starts the
// embedded broker when configured, runs one master per serial bus, feeds the registry and
// publishes the catalog over MQTT (docs/design.md, "Data flow").
package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/devices"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/gateway/dnsserver"
	"github.com/rollcall-edge/rollcall/gateway/edgenode"
	"github.com/rollcall-edge/rollcall/gateway/httpapi"
	"github.com/rollcall-edge/rollcall/gateway/metrics"
	"github.com/rollcall-edge/rollcall/gateway/router"
	"github.com/rollcall-edge/rollcall/protocols/mdns"
	"github.com/rollcall-edge/rollcall/protocols/mqtt"
	"github.com/rollcall-edge/rollcall/protocols/mqtt/embedded"
	"github.com/rollcall-edge/rollcall/registry"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// DefaultGCPercent is the GOGC a gateway process runs with (TuneGC) unless its
// environment sets GOGC: the heap may grow by 40 % of its live size between
// collections, not by all of it as with Go's default of 100. The gateway's live heap is
// small (about 10 KiB per Modbus TCP device: 30 MB at 3000 devices) and grows with the
// plant, so the headroom is what makes a device cost 15–16 KiB of RSS instead of 25;
// the price is collecting 2.5 times as often: the collector's CPU is proportional to
// what is allocated (mostly by MQTT publication and the embedded broker), about 8 µs per
// poll at 1000 devices polled at 1 Hz instead of about 3 (rollcall-bench tcp_scale).
const DefaultGCPercent = 40

// TuneGC applies the garbage collector settings of a gateway process; call it once,
// from main, before the gateway starts (not from a library or a test: they are the
// process's). It sets GOGC to DefaultGCPercent unless getenv("GOGC") (os.Getenv) is set;
// a soft memory limit (GOMEMLIMIT) is left to the environment, since the right one
// depends on the plant's size. It reports whether it set GOGC.
func TuneGC(getenv func(string) string) bool {
	if getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(DefaultGCPercent)
	return true
}

// Options configures a Gateway.
type Options struct {
	Config  *config.Config
	Logger  *slog.Logger // default slog.Default()
	Version string       // published in the gateway record
}

// Gateway is one rollcall gateway process's worth of work.
type Gateway struct {
	cfg      *config.Config
	base     *slog.Logger // as given, for components that add the gateway key themselves
	log      *slog.Logger
	version  string
	profiles *devices.Profiles

	started   chan struct{}
	brokerURL string
	epoch     int64
	reg       *registry.Registry
	endpoints atomic.Int32 // network endpoints polled (static TCP + mDNS candidates)
	httpAddr  string       // actual address of the HTTP listener; "" when off
	mbAddr    string       // actual address of the Modbus TCP server; "" when off
	dnsAddr   string       // actual address of the DNS interface (UDP and TCP); "" when off
	stopping  atomic.Bool  // Run's ctx ended: not ready any more

	reloads chan reloadRequest // Reload to run's loop
	stopped chan struct{}      // closed when run's loop takes no more reloads
}

// New validates what can be checked before running: profiles load and parse.
func New(o Options) (*Gateway, error) {
	if o.Config == nil {
		o.Config = config.Default()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	for _, w := range o.Config.Warnings() {
		o.Logger.Warn("config", "warning", w)
	}
	var ps *devices.Profiles
	var err error
	if len(o.Config.Profiles.Dirs) == 0 {
		ps, err = devices.BuiltinProfiles()
	} else {
		ps, err = devices.LoadProfiles(o.Config.Profiles.Dirs)
	}
	if err != nil {
		return nil, err
	}
	return &Gateway{
		cfg: o.Config, base: o.Logger, log: o.Logger.With("gateway", o.Config.Gateway.ID), version: o.Version,
		profiles: ps, started: make(chan struct{}), reloads: make(chan reloadRequest), stopped: make(chan struct{}),
	}, nil
}

// Started is closed once the broker (if embedded) listens, the epoch is bumped and the
// buses are being swept. BrokerURL, Epoch and Registry are valid after it.
func (g *Gateway) Started() <-chan struct{} { return g.started }

// BrokerURL is the URL the gateway publishes to (the embedded broker's actual address),
// or the comma-separated URLs of mqtt.brokers.
func (g *Gateway) BrokerURL() string { return g.brokerURL }

// HTTPAddr is the actual address (host:port) of the HTTP listener (http.listen; with
// port 0 the OS picks one), or "" when the listener is off. Valid after Started.
func (g *Gateway) HTTPAddr() string { return g.httpAddr }

// ModbusAddr is the actual address (host:port) of the routing Modbus TCP server
// (modbus_server.listen), or "" when it is off. Valid after Started.
func (g *Gateway) ModbusAddr() string { return g.mbAddr }

// DNSAddr is the actual address (host:port, UDP and TCP) of the DNS interface
// (dns.listen), or "" when it is off. Valid after Started.
func (g *Gateway) DNSAddr() string { return g.dnsAddr }

// Epoch is this run's gateway epoch.
func (g *Gateway) Epoch() int64 { return g.epoch }

// Endpoints is the number of network endpoints (static Modbus TCP targets and mDNS
// candidates) the gateway polls now; bounded by limits.max_endpoints for mDNS ones.
func (g *Gateway) Endpoints() int { return int(g.endpoints.Load()) }

// Registry is the live instance store.
func (g *Gateway) Registry() *registry.Registry { return g.reg }

// Run runs the gateway until ctx ends, then shuts down in order: buses stop polling
// (and the HTTP event streams end), the publisher publishes status offline and
// disconnects, the HTTP listener (if any) closes, the embedded broker closes. It
// returns an error only when startup fails (state dir, broker or HTTP listen, TLS
// files, password files, mDNS sockets); then no goroutine of it is left running.
//
// Lifecycle: everything that can fail is built first (build), and only then are the
// goroutines started (run), so a failed start never leaves work behind.
func (g *Gateway) Run(ctx context.Context) error {
	p, err := g.build()
	if err != nil {
		p.close()
		return err
	}
	defer p.close()
	if err := g.checkUnique(ctx, p); err != nil {
		return err
	}
	ctx, p.withdraw = context.WithCancelCause(ctx)
	defer p.withdraw(nil)
	g.run(ctx, p)
	if err := context.Cause(ctx); errors.Is(err, ErrDuplicateID) {
		return err
	}
	return nil
}

// ErrDuplicateID is wrapped by the error Run returns when another gateway is online
// under the same gateway.id: at start (its status lease is being renewed), or later
// (its live "online" status, from an earlier start than ours, arrives on our status
// topic). The gateway then publishes nothing more, not even "offline", so that it never
// overwrites the other's status or records.
var ErrDuplicateID = errors.New("another gateway is online under this gateway id")

// checkUnique refuses to start while another gateway is online under this id: a
// retained "online" status whose lease is renewed while we watch it. A status whose
// lease just runs out (a gateway that died without its will) is waited out (at most one
// status lease plus the clock-skew allowance). A broker that cannot be reached is no
// reason not to start (the check during the run covers it then).
func (g *Gateway) checkUnique(ctx context.Context, p *parts) error {
	lease := contract.Lease{}
	var seen *contract.GatewayRecord
	for {
		o := g.readBackOptions(p)
		o.StatusOnly = true
		res, err := mqtt.ReadBack(ctx, o)
		if err != nil {
			g.log.Warn("cannot check that no other gateway is online under this id; starting", "err", err)
			return nil
		}
		st := res.Status
		switch {
		case st == nil || st.State != contract.StateOnline || st.ValidUntil.IsZero():
			return nil
		case seen != nil && st.ValidUntil.After(seen.ValidUntil.Time):
			return fmt.Errorf("gateway %s: %w (its status lease is being renewed; epoch %d, started %s): give each gateway its own gateway.id",
				g.cfg.Gateway.ID, ErrDuplicateID, st.Epoch, st.Started.Format(time.RFC3339))
		case lease.Expired(st.ValidUntil, time.Now()):
			return nil
		}
		seen = st
		until, _ := lease.Expiry(st.ValidUntil)
		g.log.Info("this gateway id's status is still leased: waiting for the lease to run out or be renewed",
			"valid_until", st.ValidUntil, "epoch", st.Epoch)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(until) + 100*time.Millisecond):
		}
	}
}

// onForeignOnline handles another gateway's "online" status on our status topic: the
// gateway that started later withdraws (both, on a tie).
func (g *Gateway) onForeignOnline(p *parts, theirs contract.GatewayRecord) {
	ours := p.pubOpts.Gateway.Started.Time
	if theirs.Started.After(ours) {
		return // the newcomer withdraws
	}
	p.pub.Withdraw()
	g.log.Error("another gateway is online under this gateway id; withdrawing", "their_epoch", theirs.Epoch,
		"their_start", theirs.Started)
	p.withdraw(fmt.Errorf("gateway %s: %w (epoch %d, started %s): give each gateway its own gateway.id",
		g.cfg.Gateway.ID, ErrDuplicateID, theirs.Epoch, theirs.Started.Format(time.RFC3339)))
}

// parts is what build made and run starts: nothing in it runs yet, except the embedded
// broker, which must listen before the publisher can be built on its address.
type parts struct {
	broker  *embedded.Broker // nil unless mqtt.broker is "embedded"
	pubOpts mqtt.PublisherOptions
	pub     *mqtt.Publisher
	mx      *metrics.Metrics
	hub     *httpapi.Hub      // event stream of the dashboard; nil when HTTP is off
	httpLn  net.Listener      // nil when HTTP is off
	httpSrv *http.Server      // serves httpLn (an *httpapi.Listener); nil when HTTP is off
	browser *mdns.Browser     // nil when mDNS is off
	disc    *discovery        // nil without static TCP targets and mDNS
	shared  *sharedPoller     // runs disc's Modbus TCP masters; nil when disc is
	view    *client.Client    // the plant view's consumer (http.plant_view); nil when off
	mu      sync.Mutex        // guards masters once run started (reloads replace them)
	masters []*master         // one per serial bus
	ownKeys *contract.KeyRing // this gateway's public key: what its read-back accepts
	dir     *masterDir        // masters taking routed requests; nil when the Modbus TCP server is off
	router  *router.Router    // the Modbus TCP server; nil when off
	mbLn    net.Listener      // its listener until run hands it over
	dns     *dnsserver.Server // the DNS interface; nil when off
	dnsPC   net.PacketConn    // its UDP socket and TCP listener until run hands them over
	dnsLn   net.Listener
	self    *selfReg           // self-registrations (MQTT and HTTP)
	edge    *edgenode.EdgeNode // the Sparkplug B export; nil when off
	maint   *maintenance       // maintenance and its file
	// withdraw ends the run with a cause (set by Run before run starts); see
	// onForeignOnline.
	withdraw context.CancelCauseFunc
}

// close releases what build acquired (listeners, the embedded broker); safe on a
// partly built parts.
func (p *parts) close() {
	if p.httpLn != nil {
		_ = p.httpLn.Close()
	}
	if p.mbLn != nil {
		_ = p.mbLn.Close()
	}
	if p.dnsLn != nil {
		_ = p.dnsLn.Close()
	}
	if p.dnsPC != nil {
		_ = p.dnsPC.Close()
	}
	if p.broker != nil {
		_ = p.broker.Close()
	}
}

// build makes every part of the gateway that can fail — the epoch, the embedded broker,
// secrets and TLS, the publisher, the registry, the HTTP listener, the mDNS browser —
// without starting any goroutine of its own. On error the returned parts hold what must
// be closed.
func (g *Gateway) build() (*parts, error) {
	cfg := g.cfg
	p := &parts{}
	epoch, err := BumpEpoch(cfg.Gateway.StateDir)
	if err != nil {
		return p, err
	}
	g.epoch = epoch
	key, created, err := LoadOrCreateKey(cfg.Gateway.StateDir)
	if err != nil {
		return p, err
	}
	pubKey := key.Public().(ed25519.PublicKey)
	p.ownKeys = &contract.KeyRing{}
	p.ownKeys.Add(cfg.Gateway.ID, pubKey)
	if created {
		g.log.Warn("made a new signing key: consumers that check signatures must be given it (rollcall key)",
			"file", filepath.Join(cfg.Gateway.StateDir, KeyFile), "key", contract.FormatPublicKey(pubKey))
	}

	brokerURL := cfg.MQTT.Broker
	brokers := cfg.MQTT.Brokers // a cluster's nodes, or nil
	if len(brokers) > 0 {
		brokerURL = brokers[0]
	}
	var self embedded.User // the gateway's own account on the embedded broker
	if len(brokers) == 0 && brokerURL == "embedded" {
		access, me, err := embeddedAccess(cfg)
		if err != nil {
			return p, err
		}
		self = me
		// mochi logs a warning for every client with a keep-alive of 5 s or less (ours):
		// only its errors are worth a line.
		el := cfg.MQTT.EmbeddedLimits
		p.broker, err = embedded.Start(embedded.Options{Listen: cfg.MQTT.EmbeddedListen, Auth: access,
			Limits: embedded.Limits{MaxClients: el.MaxClients, MaxPacketBytes: el.MaxPacketBytes, MaxInflight: el.MaxInflight,
				MaxRetained: el.MaxRetained, MaxRetainedBytes: int64(el.MaxRetainedBytes),
				MaxRetainedPerAccount: el.MaxRetainedPerAccount, MaxRetainedBytesPerAccount: int64(el.MaxRetainedBytesPerAccount)},
			Logger: slog.New(minLevel{g.log.Handler(), slog.LevelError})})
		if err != nil {
			return p, fmt.Errorf("embedded broker: %w", err)
		}
		brokerURL = p.broker.URL()
	}
	g.brokerURL = brokerURL
	if len(brokers) > 1 {
		g.brokerURL = strings.Join(brokers, ",")
	}

	p.pubOpts = mqtt.PublisherOptions{
		BrokerURL: brokerURL,
		Brokers:   brokers,
		ClientID:  cfg.MQTT.ClientID,
		Topics:    contract.Topics{Prefix: cfg.MQTT.TopicPrefix},
		Gateway: contract.GatewayRecord{
			Gateway: cfg.Gateway.ID, Epoch: epoch, Started: contract.Time{Time: time.Now()}, Version: g.version,
			Key: contract.FormatPublicKey(pubKey),
		},
		SigningKey:  key,
		Username:    cfg.MQTT.Username,
		Logger:      g.base,
		HoldRecords: true, // until the first reconciliation (see reconcile)
		StatusLease: cfg.Health.StatusLease,
	}
	p.pubOpts.OnForeignOnline = func(theirs contract.GatewayRecord) { g.onForeignOnline(p, theirs) }
	p.self = &selfReg{gateway: cfg.Gateway.ID, topics: p.pubOpts.Topics, max: cfg.SelfRegistration.MaxInstances,
		tick: tickPeriod, log: g.log.With("component", "self-registration")}
	if p.pubOpts.Password, err = readSecret("mqtt", cfg.MQTT.PasswordFile, cfg.MQTT.PasswordEnv); err != nil {
		return p, err
	}
	if p.pubOpts.TLSConfig, err = tlsConfig(cfg.MQTT.TLS); err != nil {
		return p, err
	}
	if p.broker != nil {
		p.pubOpts.Username, p.pubOpts.Password = self.Username, self.Password
	}
	p.mx = metrics.New(metrics.Options{Gateway: cfg.Gateway.ID, Epoch: epoch, Version: g.version, PerUnit: perUnit(cfg.Metrics.PerUnit)})
	p.pubOpts.OnPublished = p.mx.PublishLatency
	if p.pub, err = mqtt.NewPublisher(p.pubOpts); err != nil {
		return p, err
	}
	p.mx.Publisher(p.pub.Stats, p.pub.Connected)
	if p.broker != nil {
		p.mx.EmbeddedBroker(p.broker.Stats)
	}
	if cfg.HTTP.Listen != "" {
		p.hub = httpapi.NewHub(0)
		p.mx.EventStream(p.hub.Clients, p.hub.Resyncs)
	}
	g.reg = g.newRegistry(p)
	p.self.reg = g.reg
	p.maint = &maintenance{reg: g.reg, path: maintenancePath(cfg.Gateway.StateDir), log: g.log}
	if err := p.maint.load(time.Now()); err != nil {
		return p, err
	}
	admin, err := g.admin(p)
	if err != nil {
		return p, err
	}
	if err := g.buildEdgeNode(p); err != nil {
		return p, err
	}

	if cfg.HTTP.Listen != "" {
		ln, err := net.Listen("tcp", cfg.HTTP.Listen)
		if err != nil {
			return p, fmt.Errorf("http.listen: %w", err)
		}
		g.httpAddr = ln.Addr().String()
		gwRec := p.pubOpts.Gateway
		gwRec.State = contract.StateOnline
		var plant func() []httpapi.PlantInstance
		if cfg.HTTP.PlantView {
			if p.view, err = g.newPlantView(p); err != nil {
				return p, err
			}
			plant = func() []httpapi.PlantInstance { return plantInstances(p.view) }
		}
		p.httpSrv, p.httpLn = httpapi.NewServer(httpapi.Options{
			Plant:           plant,
			Catalog:         g.reg.Snapshot,
			Instance:        g.reg.Get,
			Gateway:         func() contract.GatewayRecord { return gwRec },
			Ready:           func() error { return g.ready(p) },
			Metrics:         promhttp.HandlerFor(p.mx.Registry(), promhttp.HandlerOpts{}),
			Events:          p.hub,
			Admin:           admin,
			MaxConnections:  cfg.HTTP.MaxConnections,
			MaxEventStreams: cfg.HTTP.MaxEventStreams,
		}, ln)
	}

	cat := &catalog{reg: g.reg}
	if err := g.buildRouter(p, cat); err != nil {
		return p, err
	}
	for _, bc := range cfg.Discovery.Serial {
		p.masters = append(p.masters, g.newBusMaster(p, bc))
	}
	if md := cfg.Discovery.MDNS; md.Enabled {
		p.browser, err = mdns.NewBrowser(mdns.BrowserOptions{
			ServiceTypes: md.ServiceTypes, Interfaces: md.Interfaces, Window: md.Window, Every: md.Every,
			Logger: g.log.With("component", "mdns"),
		})
		if err != nil {
			return p, fmt.Errorf("discovery.mdns: %w", err)
		}
	}
	if len(cfg.Discovery.TCP) > 0 || p.browser != nil {
		g.buildDiscovery(p, cfg)
	}
	if err := g.buildDNS(p, cat); err != nil {
		return p, err
	}
	return p, nil
}

// buildDiscovery makes the network discovery of cfg (p.disc; static targets and mDNS
// candidates) and the shared poller of its Modbus TCP masters (p.shared).
func (g *Gateway) buildDiscovery(p *parts, cfg *config.Config) {
	p.disc = newDiscovery(cfg, g.profiles, g.reg, p.mx, g.log, &g.endpoints)
	p.shared = newSharedPoller()
	p.disc.shared = p.shared
	p.disc.dir = p.dir
}

// buildEdgeNode makes the Sparkplug B edge node (sparkplug), on the gateway's brokers
// with its credentials, when configured.
func (g *Gateway) buildEdgeNode(p *parts) error {
	sp := g.cfg.Sparkplug
	if sp.GroupID == "" {
		return nil
	}
	po := p.pubOpts
	brokers := po.Brokers
	if len(brokers) == 0 {
		brokers = []string{po.BrokerURL}
	}
	e, err := edgenode.New(edgenode.Options{
		Group: sp.GroupID, Node: sp.EdgeNodeID, PrimaryHost: sp.PrimaryHostID,
		Brokers: brokers, ClientID: po.ClientID + "-sparkplug", Username: po.Username, Password: po.Password, TLSConfig: po.TLSConfig,
		StateDir: g.cfg.Gateway.StateDir, Snapshot: g.reg.Snapshot, Epoch: g.epoch, Version: g.version,
		Logger: g.log.With("component", "sparkplug"),
	})
	if err != nil {
		return err
	}
	p.edge = e
	return nil
}

// admin is the HTTP API's write side (http.admin_token_file): maintenance, and
// self-registration with self_registration.http; nil without a token.
func (g *Gateway) admin(p *parts) (*httpapi.Admin, error) {
	cfg := g.cfg
	if cfg.HTTP.AdminTokenFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(cfg.HTTP.AdminTokenFile)
	if err != nil {
		return nil, fmt.Errorf("http.admin_token_file: %w", err)
	}
	token, _, _ := strings.Cut(strings.TrimRight(string(b), "\r\n"), "\n")
	if token = strings.TrimSpace(token); len(token) < 16 {
		return nil, fmt.Errorf("http.admin_token_file: %s: the token (its first line) has %d characters; at least 16 are needed", cfg.HTTP.AdminTokenFile, len(token))
	}
	a := &httpapi.Admin{Token: token, Maintenance: p.maint.set}
	if cfg.SelfRegistration.HTTP {
		p.self.admin(a)
	}
	return a, nil
}

// buildRouter makes the routing Modbus TCP server and its listener (modbus_server),
// when configured.
func (g *Gateway) buildRouter(p *parts, cat *catalog) error {
	ms := g.cfg.ModbusServer
	if ms.Listen == "" {
		return nil
	}
	p.dir = newMasterDir()
	cat.dir = p.dir
	routes := routerRoutes(ms.Routes)
	var rt *router.Router
	obs := p.mx.Routes(routes, func() router.Stats { return rt.Stats() })
	rt, err := router.New(router.Options{
		Routes: routes, Catalog: cat, Observer: obs,
		MaxConnections: ms.MaxConnections, MaxClientConnections: ms.MaxClientConnections, MaxInFlight: ms.MaxInFlight,
		RequestTimeout: ms.RequestTimeout, IdleTimeout: ms.IdleTimeout,
		Logger: g.log.With("component", "modbus-server"),
	})
	if err != nil {
		return fmt.Errorf("modbus_server: %w", err)
	}
	ln, err := net.Listen("tcp", ms.Listen)
	if err != nil {
		return fmt.Errorf("modbus_server.listen: %w", err)
	}
	p.router, p.mbLn, g.mbAddr = rt, ln, ln.Addr().String()
	return nil
}

// buildDNS makes the DNS interface and its sockets (dns), when configured. RTU
// instances are answered with the Modbus TCP server's advertised host and actual port.
func (g *Gateway) buildDNS(p *parts, cat *catalog) error {
	cfg := g.cfg
	if cfg.DNS.Listen == "" {
		return nil
	}
	var advertise string
	var port int
	if g.mbAddr != "" {
		host, ps, _ := net.SplitHostPort(g.mbAddr)
		port, _ = strconv.Atoi(ps)
		advertise = cfg.ModbusServer.Advertise
		if advertise == "" {
			advertise = host
		}
	}
	routes := cfg.ModbusServer.Routes
	if g.mbAddr == "" {
		routes = nil
	}
	srv, err := dnsserver.New(dnsserver.Options{
		Domain: cfg.DNS.Domain, TTL: cfg.DNS.TTL, Logger: g.log.With("component", "dns"),
		Instances: func() []dnsserver.Instance { return cat.dnsInstances(routes, advertise, port) },
	})
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	pc, ln, err := dnsserver.Listen(cfg.DNS.Listen)
	if err != nil {
		return fmt.Errorf("dns.listen: %w", err)
	}
	p.dns, p.dnsPC, p.dnsLn, g.dnsAddr = srv, pc, ln, ln.Addr().String()
	p.mx.DNS(func() metrics.DNSStats {
		s := srv.Stats()
		return metrics.DNSStats{Queries: s.Queries, Answered: s.Answered, NoData: s.NoData, NXDomain: s.NXDomain,
			Refused: s.Refused, FormErr: s.FormErr, NotImp: s.NotImp, Truncated: s.Truncated}
	})
	return nil
}

// perUnit maps config metrics.per_unit (auto, true, false) to metrics.PerUnit.
func perUnit(v string) metrics.PerUnit {
	switch v {
	case "true":
		return metrics.PerUnitOn
	case "false":
		return metrics.PerUnitOff
	}
	return metrics.PerUnitAuto
}

// newPlantView makes the plant view's consumer (http.plant_view): a registry/client on
// the gateway's brokers with its credentials, trusting the gateway's own key and those of
// http.trusted_keys.
func (g *Gateway) newPlantView(p *parts) (*client.Client, error) {
	cfg, po := g.cfg, p.pubOpts
	ring := &contract.KeyRing{}
	if cfg.HTTP.TrustedKeys != "" {
		var err error
		if ring, err = contract.ReadKeyRingFile(cfg.HTTP.TrustedKeys); err != nil {
			return nil, fmt.Errorf("http.trusted_keys: %w", err)
		}
	}
	ring.Add(po.Gateway.Gateway, po.SigningKey.Public().(ed25519.PublicKey))
	brokers := po.Brokers
	if len(brokers) == 0 {
		brokers = []string{po.BrokerURL}
	}
	return client.New(client.Options{
		Brokers: brokers, ClientID: plantViewClientID(cfg.Gateway.ID), Topics: po.Topics,
		Username: po.Username, Password: po.Password, TLSConfig: po.TLSConfig,
		TrustedKeys: ring, Logger: g.log.With("component", "plant-view"),
	})
}

// plantViewClientID is the MQTT client id of the plant view's consumer.
func plantViewClientID(gateway string) string { return "rollcall-" + contract.Slug(gateway) + "-view" }

// plantInstances is the plant view served at /v1/plant: every live instance of every
// service, merged by device (client.MergeByID), sorted by id.
func plantInstances(view *client.Client) []httpapi.PlantInstance {
	services := map[string]bool{}
	for _, in := range view.Instances("") {
		services[in.Service] = true
	}
	var out []httpapi.PlantInstance
	for svc := range services {
		for _, in := range view.Live(svc) {
			out = append(out, httpapi.PlantInstance{Record: in.Record, SeenBy: in.SeenBy})
		}
	}
	slices.SortFunc(out, func(a, b httpapi.PlantInstance) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// newRegistry makes the registry with the configured health policy; its events go to
// the publisher, the metrics, the dashboard's event stream and the log.
func (g *Gateway) newRegistry(p *parts) *registry.Registry {
	cfg := g.cfg
	policy := registry.Policy{
		FailuresBeforeCritical:  cfg.Health.FailuresBeforeCritical,
		SuccessesBeforePassing:  cfg.Health.SuccessesBeforePassing,
		DeregisterCriticalAfter: cfg.Health.DeregisterCriticalAfter,
		RefreshInterval:         cfg.Health.RefreshInterval,
		InstanceLease:           cfg.Health.InstanceLease,
		SlowRTT:                 cfg.Health.SlowRTT,
		RestartGrace:            cfg.Health.RestartGrace,
		PublishBurst:            cfg.Health.PublishBurst,
		PublishEvery:            cfg.Health.PublishEvery,
	}
	return registry.New(registry.Options{
		Gateway: cfg.Gateway.ID, Epoch: g.epoch, Policy: policy,
		Sink: func(ev registry.Event) {
			switch ev.Kind {
			case registry.Upsert:
				p.pub.Publish(ev.Record)
			case registry.Deregister:
				p.pub.Deregister(ev.Record.Service, ev.Record.ID)
			}
			p.mx.Event(ev)
			p.hub.Publish(ev)
			if p.edge != nil {
				p.edge.Event(ev)
			}
			if ev.Transition {
				status := string(ev.Record.Status)
				if ev.Kind == registry.Deregister {
					status = "deregistered"
				}
				g.log.Info("instance status", "instance", ev.Record.ID, "service", ev.Record.Service,
					"status", status, "revision", ev.Record.Revision)
			}
		},
		MaxInstances:   cfg.Limits.MaxInstances,
		MaxRecordBytes: cfg.Limits.MaxRecordBytes,
		Observed:       p.hub.Observe, // the dashboard's round trips (a nil hub does nothing)
		OnLimit: func(id string) {
			g.log.Warn("publication limit engaged: instance is flapping, holding back records",
				"instance", id, "burst", policy.PublishBurst, "every", policy.PublishEvery)
		},
	})
}

// run starts every part built by build and waits until ctx ends and all have stopped.
func (g *Gateway) run(ctx context.Context, p *parts) {
	cfg := g.cfg
	var httpWG sync.WaitGroup
	var srv *http.Server
	if p.httpLn != nil {
		// Timeouts, caps and ConnState are set by httpapi.NewServer.
		srv = p.httpSrv
		srv.BaseContext = func(net.Listener) context.Context { return ctx } // event streams end with ctx
		srv.ErrorLog = slog.NewLogLogger(g.log.Handler(), slog.LevelWarn)
		ln := p.httpLn
		p.httpLn = nil // the server owns it now
		httpWG.Add(1)
		go func() {
			defer httpWG.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				g.log.Error("http server stopped", "err", err)
			}
		}()
	}

	g.log.Info("gateway starting", "epoch", g.epoch, "broker", g.brokerURL, "buses", len(cfg.Discovery.Serial), "version", g.version,
		"http", g.httpAddr, "modbus_server", g.mbAddr, "dns", g.dnsAddr)

	// The publisher outlives the buses so their last changes and the offline status get out.
	pubCtx, stopPub := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPub()
	var pubWG sync.WaitGroup
	pubWG.Add(1)
	go func() {
		defer pubWG.Done()
		if err := p.pub.Run(pubCtx); err != nil {
			g.log.Error("publisher", "err", err)
		}
	}()

	var busWG sync.WaitGroup
	busWG.Add(2)
	go func() { defer busWG.Done(); g.reconcile(ctx, p) }()
	if p.view != nil {
		busWG.Add(1)
		go func() { defer busWG.Done(); _ = p.view.Run(ctx) }()
	}
	go func() { defer busWG.Done(); g.tick(ctx) }()
	// The serial buses, the static targets' checks and the network discovery; a
	// reload (serveReloads) changes them while they run.
	lv := g.startLive(ctx, p, &busWG)
	if p.router != nil {
		ln := p.mbLn
		p.mbLn = nil // the router owns it now
		busWG.Add(1)
		go func() {
			defer busWG.Done()
			if err := p.router.Serve(ctx, ln); err != nil {
				g.log.Error("modbus server stopped", "err", err)
			}
		}()
	}
	if p.dns != nil {
		pc, ln := p.dnsPC, p.dnsLn
		p.dnsPC, p.dnsLn = nil, nil // the DNS server owns them now
		busWG.Add(1)
		go func() {
			defer busWG.Done()
			if err := p.dns.Serve(ctx, pc, ln); err != nil {
				g.log.Error("dns server stopped", "err", err)
			}
		}()
	}
	if p.edge != nil {
		busWG.Add(1)
		go func() { defer busWG.Done(); _ = p.edge.Run(ctx) }()
	}
	if cfg.SelfRegistration.MQTT {
		busWG.Add(1)
		go func() { defer busWG.Done(); p.self.runMQTT(ctx, p.pubOpts) }()
	}
	close(g.started)

	g.serveReloads(ctx, p, lv) // until ctx ends
	g.stopping.Store(true)
	busWG.Wait()
	stopPub()
	pubWG.Wait()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		if srv.Shutdown(sctx) != nil {
			_ = srv.Close()
		}
		cancel()
		httpWG.Wait()
	}
	g.log.Info("gateway stopped", "epoch", g.epoch)
}

// reconcile reads back the gateway's retained subtree after every connection of the
// publisher (the first one included; the publisher holds the records until then) and
// reconciles it with the registry (registry.Reconcile): records of instances it
// deregistered, and malformed, misplaced or unsigned records (or records signed with
// another key: a forgery, or a key lost with the state directory) are cleared at once;
// records it signed but does not know are adopted and taken through critical to
// deregistration unless a poller finds their device again. So a broker restored from
// old state, a lost state directory or a forger never leaves a record behind that the
// gateway does not vouch for. A failed read-back is retried (1 s, doubling up to 10 s)
// while the connection lasts.
func (g *Gateway) reconcile(ctx context.Context, p *parts) {
	var done uint64 // connection generation last reconciled
	retry, next := time.Second, time.Time{}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if gen := p.pub.Connections(); gen != done && p.pub.Connected() && !time.Now().Before(next) {
			err := g.readBack(ctx, p)
			// Records are held until the first read-back was tried: it must see what an
			// earlier run left before this run's records replace it. A broker that
			// refuses the read-back does not stop the catalog.
			p.pub.Release()
			if err == nil {
				done, retry = gen, time.Second
			} else if ctx.Err() == nil {
				g.log.Warn("cannot read back retained records, retrying", "retry_in", retry, "err", err)
				next = time.Now().Add(retry)
				retry = min(2*retry, 10*time.Second)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readBackOptions are the options of a read-back of this gateway's subtree.
func (g *Gateway) readBackOptions(p *parts) mqtt.ReadBackOptions {
	po := p.pubOpts
	return mqtt.ReadBackOptions{
		BrokerURL: po.BrokerURL, Brokers: po.Brokers, Topics: po.Topics, Gateway: po.Gateway.Gateway,
		Username: po.Username, Password: po.Password, TLSConfig: po.TLSConfig, Logger: g.base,
		Keys: p.ownKeys,
	}
}

// readBack reads the retained subtree once and applies it (see reconcile).
func (g *Gateway) readBack(ctx context.Context, p *parts) error {
	po := p.pubOpts
	res, err := mqtt.ReadBack(ctx, g.readBackOptions(p))
	if err != nil {
		return err
	}
	retained := res.Records
	recs := make([]contract.Record, 0, len(retained))
	var unverified []contract.Record
	malformed := 0
	for _, r := range retained {
		if r.Unverified != nil {
			unverified = append(unverified, *r.Unverified)
		}
		if r.Err != nil {
			if p.pub.Clear(r.Topic) {
				malformed++
				g.log.Warn("clearing a record in the gateway's subtree that it did not write (malformed, or not signed with its key)",
					"topic", r.Topic, "err", r.Err)
			}
			continue
		}
		recs = append(recs, *r.Record)
	}
	g.reg.Floor(unverified, time.Now())
	adopted, clear := g.reg.Reconcile(recs, time.Now())
	p.mx.Adopted(adopted)
	for _, rec := range clear {
		p.pub.Clear(po.Topics.Instance(rec.Service, rec.Gateway, rec.ID))
	}
	g.log.Info("reconciled the retained records of the gateway's subtree", "records", len(retained),
		"adopted", len(adopted), "cleared_stale", len(clear), "cleared_malformed", malformed)
	return nil
}

// ready is nil when the gateway is ready (/readyz): started, not stopping, and the
// publisher connected to the broker; else the reason.
func (g *Gateway) ready(p *parts) error {
	pub := p.pub
	select {
	case <-g.started:
	default:
		return errors.New("gateway starting")
	}
	if g.stopping.Load() {
		return errors.New("gateway stopping")
	}
	if !pub.Connected() {
		return errors.New("MQTT publisher not connected to the broker")
	}
	p.mu.Lock()
	masters := p.masters
	p.mu.Unlock()
	for _, m := range masters {
		if err := m.openError(); err != nil {
			return fmt.Errorf("bus %s: cannot open its serial port: %w", m.cfg.Name, err)
		}
	}
	return nil
}

// tick drives the registry's time-based transitions (restart grace, held-back records).
// tickPeriod is how often the registry's time-driven transitions run (Registry.Tick):
// a self-registered instance is critical at most this long after its TTL ran out.
const tickPeriod = 100 * time.Millisecond

func (g *Gateway) tick(ctx context.Context) {
	t := time.NewTicker(tickPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			g.reg.Tick(now)
		}
	}
}

// readSecret returns a password from file (its first line, without the line end) or
// from the environment variable env; "" when neither is set. Errors name the config key
// (key + ".password_file" / ".password_env"), never the secret.
func readSecret(key, file, env string) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s.password_file: %w", key, err)
		}
		pw, _, _ := strings.Cut(strings.TrimRight(string(b), "\r\n"), "\n")
		return pw, nil
	case env != "":
		pw, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("%s.password_env: environment variable %s is not set", key, env)
		}
		return pw, nil
	}
	return "", nil
}

// embeddedAccess builds the embedded broker's access hook from mqtt.embedded_auth, plus
// the gateway's own account: a random password made at each start, reading and writing
// only its subtree (<prefix>/catalog/+/<gateway>/#, <prefix>/gateways/<gateway>/#).
func embeddedAccess(cfg *config.Config) (*embedded.Access, embedded.User, error) {
	topics := contract.Topics{Prefix: cfg.MQTT.TopicPrefix}
	gw := contract.Slug(cfg.Gateway.ID)
	pw := make([]byte, 16)
	if _, err := rand.Read(pw); err != nil {
		return nil, embedded.User{}, err
	}
	own := topics.GatewayACL(cfg.Gateway.ID)
	// Consumers write only their own sync topic (contract.Topics.ConsumerSyncTopic).
	ownSync := topics.Root() + "/consumers/" + embedded.ClientIDPattern + "/#"
	// The gateway's own account writes its subtree and, for the plant view, its
	// consumer's sync topic; it may read everything.
	self := embedded.User{Username: "rollcall-gateway-" + gw, Password: hex.EncodeToString(pw),
		Read: append(slices.Clone(own), topics.ReadAllFilter()), Write: append(slices.Clone(own), ownSync), Unlimited: true}
	// The Sparkplug B edge node (sparkplug): it writes its node's topics (births, data,
	// deaths, its will) and reads its commands and the primary host's STATE; configured
	// users (host applications) may read all of Sparkplug and send commands and STATE.
	var spRead, spWrite []string
	if sp := cfg.Sparkplug; sp.GroupID != "" {
		node := func(t string) string { return "spBv1.0/" + sp.GroupID + "/" + t + "/" + sp.EdgeNodeID }
		self.Write = append(self.Write, "spBv1.0/"+sp.GroupID+"/+/"+sp.EdgeNodeID, "spBv1.0/"+sp.GroupID+"/+/"+sp.EdgeNodeID+"/+")
		self.Read = append(self.Read, node("NCMD"), "spBv1.0/STATE/+")
		spRead, spWrite = []string{"spBv1.0/#"}, []string{node("NCMD"), "spBv1.0/" + sp.GroupID + "/DCMD/" + sp.EdgeNodeID + "/+", "spBv1.0/STATE/+"}
	}
	o := embedded.AccessOptions{Users: []embedded.User{self}}
	for i, u := range cfg.MQTT.EmbeddedAuth.Users {
		pass, err := readSecret(fmt.Sprintf("mqtt.embedded_auth.users[%d]", i), u.PasswordFile, u.PasswordEnv)
		if err != nil {
			return nil, self, err
		}
		eu := embedded.User{Username: u.Username, Password: pass, Read: u.Read, Write: u.Write}
		if eu.Read == nil {
			eu.Read = append([]string{topics.ReadAllFilter()}, spRead...)
		}
		if eu.Write == nil {
			eu.Write = []string{ownSync}
			eu.Write = append(eu.Write, spWrite...)
			if cfg.SelfRegistration.MQTT {
				// Its own register topic: the client id level is the owner of what it registers.
				eu.Write = append(eu.Write, strings.TrimSuffix(topics.RegisterFilter(cfg.Gateway.ID), "+")+embedded.ClientIDPattern)
			}
		}
		o.Users = append(o.Users, eu)
	}
	if cfg.MQTT.EmbeddedAuth.AllowAnonymous {
		// Read only: anonymous clients store nothing (no retained message, no retained
		// will) and write nowhere but their own sync topic.
		o.Anonymous = &embedded.User{Read: []string{topics.ReadAllFilter()}, Write: []string{ownSync}, NoRetain: true}
	}
	return embedded.NewAccess(o), self, nil
}

// minLevel passes on only records at or above min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}
func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}
func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.min} }

// tlsConfig builds the MQTT TLS client config; nil when no TLS file is configured.
func tlsConfig(t config.TLS) (*tls.Config, error) {
	if t.CAFile == "" && t.CertFile == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt.tls.ca_file %s: no PEM certificate found", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.tls cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
