// Package sim is firmware-sim's runtime: it turns a Config into simulated servo drives
// (package drive) on simulated RS-485 buses — one pseudo-terminal per bus, served by a
// Modbus RTU server (package slave) and reachable through a symlink — and on Modbus TCP
// listeners (optionally advertised over mDNS/DNS-SD), runs the scripted fault schedules
// and serves the fault-injection control API (docs/design.md, "Commands").
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/grandcat/zeroconf"

	"github.com/rollcall-edge/rollcall/firmware-sim/drive"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
)

// ErrUnknownDevice is returned (wrapped, naming the bus or listener and the unit) by
// SetFault and Fault for a bus, listener or unit that is not configured.
var ErrUnknownDevice = errors.New("unknown device")

// ErrUnknownListener is returned (wrapped, naming the listener) by RestartListener for
// a name that is not a configured TCP listener.
var ErrUnknownListener = errors.New("unknown tcp listener")

// ErrNotRunning is returned (wrapped, naming the listener) by RestartListener before
// Start, or after the simulator stopped.
var ErrNotRunning = errors.New("simulator not running")

// Sim is a running simulator. Create it with New, then Start it; Wait for it to end.
// Its methods are safe for concurrent use.
type Sim struct {
	cfg       *Config
	log       *slog.Logger
	buses     []*simBus
	listeners []*simListener
	groups    map[string]*group // buses and listeners by name

	faultMu sync.Mutex // serialises fault changes: drive fault transitions + server fault

	mu          sync.Mutex
	started     bool
	controlAddr string
	runDone     <-chan struct{} // closed when the simulator stops; set by Start
	probeUntil  time.Time       // zeroconf announcement goroutines may run until then
	done        chan struct{}   // closed when every goroutine has ended and cleanup is done
	err         error           // first fatal error; read after done is closed
}

// unitServer is the fault and counter side shared by slave.RTUServer and
// slave.TCPServer.
type unitServer interface {
	SetFault(id byte, f slave.Fault) error
	Fault(id byte) (slave.Fault, error)
	Stats(id byte) (slave.UnitStats, error)
}

// group is the drives of one bus or listener.
type group struct {
	kind    string // "bus" or "listener": log key and error wording
	name    string
	drives  []Drive // config order
	byUnit  map[int]*drive.Drive
	enabled map[int]bool // drive starts (and returns after a cleared fault to) operation enabled
	server  unitServer
}

// simBus is one configured bus and its runtime.
type simBus struct {
	group
	cfg    Bus
	server *slave.RTUServer
	term   *terminal // set by Start before Serve begins
}

// simListener is one configured TCP listener and its runtime.
type simListener struct {
	group
	cfg     TCPListener
	server  *slave.TCPServer
	mdns    *MDNS           // defaulted copy of cfg.MDNS; nil when not advertised
	restart chan restartReq // RestartListener → runListener

	mu   sync.Mutex
	addr string // bound address while listening, else ""
}

// restartReq asks a listener's supervisor to move to listen; the answer goes to reply
// (buffered, capacity 1).
type restartReq struct {
	listen string
	reply  chan restartResult
}

type restartResult struct {
	addr string
	err  error
}

func (l *simListener) setAddr(addr string) {
	l.mu.Lock()
	l.addr = addr
	l.mu.Unlock()
}

func (l *simListener) getAddr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addr
}

// newGroup builds the drives of a bus or listener and adds each to the server.
func newGroup(kind, name string, drives []Drive, server unitServer, add func(id byte, dev slave.Device) error) (group, error) {
	g := group{kind: kind, name: name, drives: drives, byUnit: make(map[int]*drive.Drive), enabled: make(map[int]bool), server: server}
	for _, dc := range drives {
		d, err := drive.New(drive.Options{Serial: dc.Serial, Model: dc.Model, Revision: dc.Revision, Enabled: !dc.Disabled})
		if err != nil {
			return g, fmt.Errorf("firmware-sim: %s %s: unit %d: %w", kind, name, dc.Unit, err)
		}
		if err := add(byte(dc.Unit), d); err != nil {
			return g, fmt.Errorf("firmware-sim: %w", err)
		}
		g.byUnit[dc.Unit] = d
		g.enabled[dc.Unit] = !dc.Disabled
	}
	return g, nil
}

// New builds the drives, bus servers and TCP servers of cfg (no OS resources yet). It
// returns the Validate error of cfg. logger nil discards logs.
func New(cfg *Config, logger *slog.Logger) (*Sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Sim{cfg: cfg, log: logger, groups: make(map[string]*group), done: make(chan struct{})}
	for _, bc := range cfg.Buses {
		b := &simBus{cfg: bc}
		srv, err := slave.NewRTUServer(slave.RTUConfig{
			Bus:        bc.Name,
			Baud:       bc.Baud,
			Turnaround: bc.Turnaround,
			PDU:        slave.Options{DevIDMaxReply: bc.DevIDMaxReply},
			Logger:     logger,
			OnWriteTimeout: func() error {
				return b.term.flushInput()
			},
		})
		if err != nil {
			return nil, fmt.Errorf("firmware-sim: %w", err)
		}
		b.server = srv
		if b.group, err = newGroup("bus", bc.Name, bc.Drives, srv, srv.AddUnit); err != nil {
			return nil, err
		}
		s.buses = append(s.buses, b)
		s.groups[bc.Name] = &b.group
	}
	for _, tc := range cfg.TCP {
		l := &simListener{cfg: tc, restart: make(chan restartReq)}
		srv, err := slave.NewTCPServer(slave.TCPConfig{Listener: tc.Name, Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("firmware-sim: %w", err)
		}
		l.server = srv
		if l.group, err = newGroup("listener", tc.Name, tc.Drives, srv, srv.AddUnit); err != nil {
			return nil, err
		}
		if tc.MDNS != nil {
			m := tc.MDNS.withDefaults(tc.Name)
			l.mdns = &m
		}
		s.listeners = append(s.listeners, l)
		s.groups[tc.Name] = &l.group
	}
	return s, nil
}

// Start opens a raw pseudo-terminal per bus and points each bus's link at it (creating
// the link's parent directory; an existing symlink is replaced atomically, any other
// file is an error), listens on each TCP listener's address and advertises it over
// mDNS when configured, starts the control API when configured, and returns once all
// of it is ready. Then the fault schedules start: their offsets count from this
// moment. Everything is served until ctx is cancelled or a bus or listener fails;
// then everything is torn down (see Wait). On error nothing stays open. Start may be
// called once.
func (s *Sim) Start(ctx context.Context) (err error) {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("firmware-sim: already started")
	}
	s.started = true
	s.mu.Unlock()

	runCtx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.runDone = runCtx.Done()
	s.mu.Unlock()
	var (
		terms []*terminal
		links []link
		ln    net.Listener
		tcpLn = make([]net.Listener, len(s.listeners))
		advs  = make([]*zeroconf.Server, len(s.listeners))
	)
	defer func() {
		if err == nil {
			return
		}
		cancel()
		if ln != nil {
			_ = ln.Close()
		}
		for i := range s.listeners {
			if advs[i] != nil {
				advs[i].Shutdown()
			}
			if tcpLn[i] != nil {
				_ = tcpLn[i].Close()
			}
			s.listeners[i].setAddr("")
		}
		s.cleanup(terms, links)
		s.waitAnnouncements()
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.done)
	}()
	for _, b := range s.buses {
		t, err := openTerminal()
		if err != nil {
			return fmt.Errorf("firmware-sim: bus %s: %w", b.cfg.Name, err)
		}
		terms = append(terms, t)
		b.term = t
		if err := replaceSymlink(t.name, b.cfg.Link); err != nil {
			return fmt.Errorf("firmware-sim: bus %s: %w", b.cfg.Name, err)
		}
		links = append(links, link{path: b.cfg.Link, target: t.name})
	}
	for i, l := range s.listeners {
		tl, err := listenTCP(runCtx, l.cfg.Name, l.cfg.Listen)
		if err != nil {
			return err
		}
		tcpLn[i] = tl
		l.setAddr(tl.Addr().String())
		if l.mdns != nil {
			if advs[i], err = s.advertise(l, tl.Addr()); err != nil {
				return err
			}
		}
	}
	if s.cfg.Control.Listen != "" {
		var lc net.ListenConfig
		ln, err = lc.Listen(ctx, "tcp", s.cfg.Control.Listen)
		if err != nil {
			return fmt.Errorf("firmware-sim: control API: %w", err)
		}
		s.mu.Lock()
		s.controlAddr = ln.Addr().String()
		s.mu.Unlock()
	}

	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
		cancel()
	}
	for _, b := range s.buses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.server.Serve(runCtx, b.term.master); err != nil {
				s.log.Error("bus failed", "bus", b.cfg.Name, "err", err)
				fail(err)
			}
		}()
	}
	for i, l := range s.listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.runListener(runCtx, l, tcpLn[i], advs[i]); err != nil {
				s.log.Error("listener failed", "listener", l.cfg.Name, "err", err)
				fail(err)
			}
		}()
	}
	if ln != nil {
		srv := &http.Server{
			Handler:           s.controlHandler(),
			ReadHeaderTimeout: 5 * time.Second,
			BaseContext:       func(net.Listener) context.Context { return runCtx },
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fail(fmt.Errorf("firmware-sim: control API: %w", err))
			}
		}()
		go func() {
			defer wg.Done()
			<-runCtx.Done()
			shutCtx, cancelShut := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancelShut()
			if err := srv.Shutdown(shutCtx); err != nil {
				_ = srv.Close()
			}
		}()
		s.log.Info("control API listening", "addr", ln.Addr().String())
	}
	for _, b := range s.buses {
		s.log.Info("bus ready", "bus", b.cfg.Name, "link", b.cfg.Link, "pts", b.term.name,
			"baud", b.cfg.Baud, "units", len(b.byUnit))
	}
	for i, l := range s.listeners {
		// The address bound above, not l.getAddr(): the listener's goroutine may already
		// be tearing down (and clearing it) if ctx ended during Start.
		s.log.Info("listener ready", "listener", l.cfg.Name, "addr", tcpLn[i].Addr().String(), "units", len(l.byUnit))
	}
	base := time.Now()
	for _, g := range s.allGroups() {
		for _, dc := range g.drives {
			if len(dc.Schedule) == 0 {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.runSchedule(runCtx, g, dc, base)
			}()
		}
	}
	go func() {
		wg.Wait()
		cancel()
		s.cleanup(terms, links)
		s.waitAnnouncements()
		errMu.Lock()
		err := firstErr
		errMu.Unlock()
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.done)
	}()
	return nil
}

// allGroups returns the buses' then the listeners' groups, in config order.
func (s *Sim) allGroups() []*group {
	out := make([]*group, 0, len(s.buses)+len(s.listeners))
	for _, b := range s.buses {
		out = append(out, &b.group)
	}
	for _, l := range s.listeners {
		out = append(out, &l.group)
	}
	return out
}

// listenTCP listens on addr for listener name.
func listenTCP(ctx context.Context, name, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("firmware-sim: listener %s: %w", name, err)
	}
	return ln, nil
}

// runListener serves listener l on ln (advertised by adv, nil when not advertised)
// until ctx ends (returns nil) or serving fails (returns the error), and carries out
// RestartListener requests. It owns the Serve goroutine and the advertisement: both
// have ended when it returns.
func (s *Sim) runListener(ctx context.Context, l *simListener, ln net.Listener, adv *zeroconf.Server) error {
	var (
		served    chan error // Serve's result; nil while not listening
		stopServe context.CancelFunc
	)
	serve := func(ln net.Listener) {
		var serveCtx context.Context
		serveCtx, stopServe = context.WithCancel(ctx)
		served = make(chan error, 1)
		go func() { served <- l.server.Serve(serveCtx, ln) }()
		l.setAddr(ln.Addr().String())
	}
	halt := func() { // close the listener and its connections, withdraw the advertisement
		if served != nil {
			stopServe()
			<-served
			served = nil
		}
		if adv != nil {
			adv.Shutdown()
			adv = nil
		}
		l.setAddr("")
	}
	defer halt()
	serve(ln)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-served:
			served = nil
			stopServe()
			if err == nil { // Serve returns nil only when ctx ended
				return nil
			}
			return fmt.Errorf("firmware-sim: %w", err)
		case req := <-l.restart:
			halt()
			nl, err := listenTCP(ctx, l.cfg.Name, req.listen)
			if err != nil {
				s.log.Warn("listener not restarted: it stays closed", "listener", l.cfg.Name, "listen", req.listen, "err", err)
				req.reply <- restartResult{err: err}
				continue
			}
			serve(nl)
			addr := nl.Addr().String()
			s.log.Info("listener restarted", "listener", l.cfg.Name, "addr", addr)
			if l.mdns != nil {
				if adv, err = s.advertise(l, nl.Addr()); err != nil {
					s.log.Warn("listener restarted without mDNS advertisement", "listener", l.cfg.Name, "err", err)
					req.reply <- restartResult{addr: addr, err: err}
					continue
				}
			}
			req.reply <- restartResult{addr: addr}
		}
	}
}

// RestartListener moves the named TCP listener, as a restarted device would: it closes
// the listener and every client connection, withdraws the mDNS advertisement (goodbye
// packets), listens at newListen (host:port; port 0 picks a free port) and advertises
// again with the new port and addresses. Drive state, faults, schedules and counters
// are kept. It returns the new bound address (host:port).
//
// Errors (wrapped, naming the listener): ErrUnknownListener; ErrNotRunning before
// Start or after the simulator stopped; a newListen that is not host:port; a listen
// failure — the listener then stays closed (ListenerAddr returns "") until a later
// RestartListener succeeds; an mDNS failure — then addr is set: the listener serves
// but is not advertised.
func (s *Sim) RestartListener(name, newListen string) (addr string, err error) {
	var l *simListener
	for _, c := range s.listeners {
		if c.cfg.Name == name {
			l = c
		}
	}
	if l == nil {
		return "", fmt.Errorf("firmware-sim: listener %q: %w", name, ErrUnknownListener)
	}
	if _, _, err := net.SplitHostPort(newListen); err != nil {
		return "", fmt.Errorf("firmware-sim: listener %s: new address must be host:port, got %q: %w", name, newListen, err)
	}
	s.mu.Lock()
	runDone := s.runDone
	s.mu.Unlock()
	if runDone == nil {
		return "", fmt.Errorf("firmware-sim: listener %s: %w", name, ErrNotRunning)
	}
	req := restartReq{listen: newListen, reply: make(chan restartResult, 1)}
	select {
	case l.restart <- req:
	case <-runDone:
		return "", fmt.Errorf("firmware-sim: listener %s: %w", name, ErrNotRunning)
	}
	res := <-req.reply // runListener answers every request it takes
	return res.addr, res.err
}

// ListenerAddr returns the named TCP listener's bound address (host:port, e.g.
// "127.0.0.1:40123" for a configured "127.0.0.1:0"), or "" when there is no such
// listener or it is not listening (before Start, after the simulator stopped, or after
// a failed RestartListener).
func (s *Sim) ListenerAddr(name string) string {
	for _, l := range s.listeners {
		if l.cfg.Name == name {
			return l.getAddr()
		}
	}
	return ""
}

// Wait blocks until, after ctx of Start was cancelled (or a bus or listener failed),
// every goroutine has ended, the symlinks are removed, the pseudo-terminals, TCP
// listeners and connections are closed and the mDNS advertisements withdrawn. It
// returns the first bus, listener or control API failure (nil after a plain
// cancellation), or the Start error. Without a Start it returns nil at once.
//
// grandcat/zeroconf v1.0.0 announces a registration from a goroutine that sleeps
// about 3.5 s in total and that Shutdown cannot stop; so that no goroutine outlives
// Wait, Wait returns no earlier than 4 s after the latest mDNS registration.
func (s *Sim) Wait() error {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		return nil
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// link is a symlink created by Start.
type link struct{ path, target string }

// cleanup removes the links that still point at our terminals and closes the terminals.
func (s *Sim) cleanup(terms []*terminal, links []link) {
	for _, l := range links {
		if got, err := os.Readlink(l.path); err == nil && got == l.target {
			if err := os.Remove(l.path); err != nil {
				s.log.Warn("removing link failed", "link", l.path, "err", err)
			}
		}
	}
	for _, t := range terms {
		if err := t.close(); err != nil {
			s.log.Warn("closing pseudo-terminal failed", "pts", t.name, "err", err)
		}
	}
}

// replaceSymlink makes link a symlink to target, atomically (symlink under a temporary
// name in the same directory, then rename). It creates link's parent directory, and
// refuses to replace anything but a symlink.
func replaceSymlink(target, link string) error {
	dir := filepath.Dir(link)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("link %s: %w", link, err)
	}
	if fi, err := os.Lstat(link); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("link %s: exists and is not a symlink; not replacing it", link)
	}
	for attempt := 0; ; attempt++ {
		tmp := filepath.Join(dir, "."+filepath.Base(link)+".tmp-"+strconv.FormatUint(rand.Uint64(), 36))
		err := os.Symlink(target, tmp)
		if errors.Is(err, os.ErrExist) && attempt < 10 {
			continue
		}
		if err != nil {
			return fmt.Errorf("link %s: %w", link, err)
		}
		if err := os.Rename(tmp, link); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("link %s: %w", link, err)
		}
		return nil
	}
}

// ControlAddr returns the control API's actual listen address (host:port), or "" when
// the API is off or the simulator has not started.
func (s *Sim) ControlAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.controlAddr
}

// Drive returns the drive at unit on the named bus or TCP listener, or nil when there
// is none.
func (s *Sim) Drive(busOrListener string, unit int) *drive.Drive {
	g := s.groups[busOrListener]
	if g == nil {
		return nil
	}
	return g.byUnit[unit]
}

// Links returns the configured link path of each bus, by bus name (a new map).
func (s *Sim) Links() map[string]string {
	out := make(map[string]string, len(s.buses))
	for _, b := range s.buses {
		out[b.cfg.Name] = b.cfg.Link
	}
	return out
}

// SetFault injects fault f into unit unit of the named bus or TCP listener, effective
// from the next request (see slave.RTUServer and slave.TCPServer for what each mode
// does on the wire). Mode slave.FaultDevice puts the drive in CiA 402 fault; leaving
// that mode performs a fault reset and, for a drive configured enabled, enables it
// again. A fault schedule of the drive keeps running and overrides f at its next step.
// Errors: ErrUnknownDevice (wrapped, naming the bus or listener and unit), or an
// invalid fault (slave.Fault.Validate).
func (s *Sim) SetFault(busOrListener string, unit int, f slave.Fault) error {
	return s.setFault(busOrListener, unit, f, "source", "api")
}

// setFault is SetFault with extra log attributes.
func (s *Sim) setFault(name string, unit int, f slave.Fault, logAttrs ...any) error {
	g := s.groups[name]
	if g == nil {
		return fmt.Errorf("firmware-sim: bus or listener %q: %w", name, ErrUnknownDevice)
	}
	d := g.byUnit[unit]
	if d == nil {
		return fmt.Errorf("firmware-sim: %s %s: unit %d: %w", g.kind, name, unit, ErrUnknownDevice)
	}
	if err := f.Validate(); err != nil {
		return fmt.Errorf("firmware-sim: %s %s: unit %d: %w", g.kind, name, unit, err)
	}
	f = f.Normalize()
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	prev, err := g.server.Fault(byte(unit))
	if err != nil {
		return fmt.Errorf("firmware-sim: %w", err)
	}
	if err := g.server.SetFault(byte(unit), f); err != nil {
		return fmt.Errorf("firmware-sim: %w", err)
	}
	switch {
	case f.Mode == slave.FaultDevice:
		d.SetFault(true)
	case prev.Mode == slave.FaultDevice && d.State() == drive.Fault:
		d.SetFault(false)
		if g.enabled[unit] {
			d.Enable()
		}
	}
	s.log.Info("fault set", append([]any{g.kind, name, "unit", unit, "fault", f.String()}, logAttrs...)...)
	return nil
}

// Fault returns the fault injected into unit unit of the named bus or TCP listener
// (normalised: Mode never ""), or ErrUnknownDevice (wrapped, naming the bus or
// listener and unit).
func (s *Sim) Fault(busOrListener string, unit int) (slave.Fault, error) {
	g := s.groups[busOrListener]
	if g == nil {
		return slave.Fault{}, fmt.Errorf("firmware-sim: bus or listener %q: %w", busOrListener, ErrUnknownDevice)
	}
	if g.byUnit[unit] == nil {
		return slave.Fault{}, fmt.Errorf("firmware-sim: %s %s: unit %d: %w", g.kind, busOrListener, unit, ErrUnknownDevice)
	}
	f, err := g.server.Fault(byte(unit))
	if err != nil {
		return slave.Fault{}, fmt.Errorf("firmware-sim: %w", err)
	}
	return f, nil
}

// DeviceInfo describes one simulated device for GET /v1/devices.
type DeviceInfo struct {
	Bus        string    `json:"bus"`               // bus or TCP listener name
	Transport  string    `json:"transport"`         // "modbus-rtu" or "modbus-tcp"
	Link       string    `json:"link,omitempty"`    // RTU: the bus's symlink path
	Baud       int       `json:"baud,omitempty"`    // RTU: bits/s
	Address    string    `json:"address,omitempty"` // TCP: the listener's bound host:port ("" while closed)
	MDNS       string    `json:"mdns,omitempty"`    // TCP: the advertised DNS-SD instance name
	Unit       int       `json:"unit"`              // Modbus unit ID
	Serial     string    `json:"serial"`            // serial number
	Model      string    `json:"model"`             // object 0x05
	Revision   string    `json:"revision"`          // object 0x02
	Fault      FaultJSON `json:"fault"`             // injected fault
	CiA402     string    `json:"cia402"`            // CiA 402 state, e.g. "operation_enabled"
	Statusword uint16    `json:"statusword"`        // 0x6041
	ErrorCode  uint16    `json:"error_code"`        // 0x603F
	Requests   uint64    `json:"requests"`          // requests received (RTU: with a good CRC; TCP: well framed)
	Replies    uint64    `json:"replies"`           // replies written
}

// FaultJSON is a fault as the control API reads and writes it:
// {"mode":"slow","delay":"200ms"}, {"mode":"exception","code":4},
// {"mode":"noisy","rate":0.05,"seed":7}.
type FaultJSON struct {
	Mode  string   `json:"mode"`            // none|silent|slow|exception|garbage|fault|noisy
	Delay string   `json:"delay,omitempty"` // Go duration, mode slow only
	Code  int      `json:"code,omitempty"`  // exception code 1–255, mode exception only (default 4)
	Rate  *float64 `json:"rate,omitempty"`  // probability 0–1 per reply of a corrupted reply and of a noise burst, mode noisy only (required there)
	Seed  uint64   `json:"seed,omitempty"`  // seed of the noise sequence, mode noisy only; 0 or absent: random
}

// Devices lists every simulated device: buses, then TCP listeners, each in config
// order, units in config order.
func (s *Sim) Devices() []DeviceInfo {
	var out []DeviceInfo
	info := func(g *group, dc Drive) DeviceInfo {
		d := g.byUnit[dc.Unit]
		st := d.Status()
		f, _ := g.server.Fault(byte(dc.Unit))
		stats, _ := g.server.Stats(byte(dc.Unit))
		fj := FaultJSON{Mode: string(f.Mode), Code: int(f.Code)}
		switch f.Mode {
		case slave.FaultSlow:
			fj.Delay = f.Delay.String()
		case slave.FaultNoisy:
			fj.Rate, fj.Seed = &f.Rate, f.Seed
		}
		return DeviceInfo{
			Bus: g.name, Unit: dc.Unit, Serial: d.Serial(), Model: d.Model(), Revision: d.Revision(),
			Fault: fj, CiA402: st.State.String(), Statusword: st.Statusword, ErrorCode: st.ErrorCode,
			Requests: stats.Requests, Replies: stats.Replies,
		}
	}
	for _, b := range s.buses {
		for _, dc := range b.drives {
			di := info(&b.group, dc)
			di.Transport, di.Link, di.Baud = "modbus-rtu", b.cfg.Link, b.cfg.Baud
			out = append(out, di)
		}
	}
	for _, l := range s.listeners {
		addr := l.getAddr()
		for _, dc := range l.drives {
			di := info(&l.group, dc)
			di.Transport, di.Address = "modbus-tcp", addr
			if l.mdns != nil {
				di.MDNS = l.mdns.Instance
			}
			out = append(out, di)
		}
	}
	return out
}
