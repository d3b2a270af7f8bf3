// Package sim is firmware-sim's runtime: it turns a Config into simulated servo drives
// (package drive) on simulated RS-485 buses — one pseudo-terminal per bus, served by a
// Modbus RTU server (package slave) and reachable through a symlink — and serves the
// fault-injection control API (DESIGN.md, "Commands").
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

	"github.com/rollcall-edge/rollcall/firmware-sim/drive"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
)

// ErrUnknownDevice is returned (wrapped, naming the bus or listener and the unit) by
// SetFault for a bus, listener or unit that is not configured.
var ErrUnknownDevice = errors.New("unknown device")

// Sim is a running simulator. Create it with New, then Start it; Wait for it to end.
// Its methods are safe for concurrent use.
type Sim struct {
	cfg    *Config
	log    *slog.Logger
	buses  []*simBus
	byName map[string]*simBus

	faultMu sync.Mutex // serialises SetFault: drive fault transitions + server fault

	mu          sync.Mutex
	started     bool
	controlAddr string
	done        chan struct{} // closed when every goroutine has ended and cleanup is done
	err         error         // first fatal error; read after done is closed
}

// simBus is one configured bus and its runtime.
type simBus struct {
	cfg     Bus
	server  *slave.RTUServer
	drives  map[int]*drive.Drive
	enabled map[int]bool // drive starts (and returns after a cleared fault to) operation enabled
	term    *terminal    // set by Start before Serve begins
}

// New builds the drives and bus servers of cfg (no OS resources yet). It returns the
// Validate error of cfg, or a *ConfigError "tcp listeners are not implemented yet" when
// cfg.TCP is not empty. logger nil discards logs.
func New(cfg *Config, logger *slog.Logger) (*Sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.TCP) > 0 {
		return nil, &ConfigError{File: cfg.File, Line: cfg.line("tcp"), Key: "tcp", Msg: "tcp listeners are not implemented yet"}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Sim{cfg: cfg, log: logger, byName: make(map[string]*simBus), done: make(chan struct{})}
	for _, bc := range cfg.Buses {
		b := &simBus{cfg: bc, drives: make(map[int]*drive.Drive), enabled: make(map[int]bool)}
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
		for _, dc := range bc.Drives {
			d, err := drive.New(drive.Options{Serial: dc.Serial, Model: dc.Model, Revision: dc.Revision, Enabled: !dc.Disabled})
			if err != nil {
				return nil, fmt.Errorf("firmware-sim: bus %s: unit %d: %w", bc.Name, dc.Unit, err)
			}
			if err := srv.AddUnit(byte(dc.Unit), d); err != nil {
				return nil, fmt.Errorf("firmware-sim: %w", err)
			}
			b.drives[dc.Unit] = d
			b.enabled[dc.Unit] = !dc.Disabled
		}
		s.buses = append(s.buses, b)
		s.byName[bc.Name] = b
	}
	return s, nil
}

// Start opens a raw pseudo-terminal per bus, points each bus's link at it (creating the
// link's parent directory; an existing symlink is replaced atomically, any other file
// is an error), starts the control API when configured, and returns once all of it is
// ready. The buses are served until ctx is cancelled or one fails; then everything is
// torn down (see Wait). On error nothing stays open. Start may be called once.
func (s *Sim) Start(ctx context.Context) (err error) {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("firmware-sim: already started")
	}
	s.started = true
	s.mu.Unlock()

	runCtx, cancel := context.WithCancel(ctx)
	var (
		terms []*terminal
		links []link
		ln    net.Listener
	)
	defer func() {
		if err == nil {
			return
		}
		cancel()
		if ln != nil {
			_ = ln.Close()
		}
		s.cleanup(terms, links)
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
			"baud", b.cfg.Baud, "units", len(b.drives))
	}
	go func() {
		wg.Wait()
		cancel()
		s.cleanup(terms, links)
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

// Wait blocks until, after ctx of Start was cancelled (or a bus failed), every goroutine
// has ended, the symlinks are removed and the pseudo-terminals closed. It returns the
// first bus or control API failure (nil after a plain cancellation), or the Start error.
// Without a Start it returns nil at once.
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

// Drive returns the drive at unit on the named bus, or nil when there is none.
func (s *Sim) Drive(bus string, unit int) *drive.Drive {
	b := s.byName[bus]
	if b == nil {
		return nil
	}
	return b.drives[unit]
}

// Links returns the configured link path of each bus, by bus name (a new map).
func (s *Sim) Links() map[string]string {
	out := make(map[string]string, len(s.buses))
	for _, b := range s.buses {
		out[b.cfg.Name] = b.cfg.Link
	}
	return out
}

// SetFault injects fault f into unit unit of the named bus (or, later, TCP listener),
// effective from the next request. Mode slave.FaultDevice puts the drive in CiA 402
// fault; leaving that mode performs a fault reset and, for a drive configured enabled,
// enables it again. Errors: ErrUnknownDevice (wrapped, naming the bus or listener and
// unit), or an invalid fault (slave.Fault.Validate).
func (s *Sim) SetFault(busOrListener string, unit int, f slave.Fault) error {
	b := s.byName[busOrListener]
	if b == nil {
		return fmt.Errorf("firmware-sim: bus or listener %q: %w", busOrListener, ErrUnknownDevice)
	}
	d := b.drives[unit]
	if d == nil {
		return fmt.Errorf("firmware-sim: bus %s: unit %d: %w", busOrListener, unit, ErrUnknownDevice)
	}
	if err := f.Validate(); err != nil {
		return fmt.Errorf("firmware-sim: bus %s: unit %d: %w", busOrListener, unit, err)
	}
	f = f.Normalize()
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	prev, err := b.server.Fault(byte(unit))
	if err != nil {
		return fmt.Errorf("firmware-sim: %w", err)
	}
	if err := b.server.SetFault(byte(unit), f); err != nil {
		return fmt.Errorf("firmware-sim: %w", err)
	}
	switch {
	case f.Mode == slave.FaultDevice:
		d.SetFault(true)
	case prev.Mode == slave.FaultDevice && d.State() == drive.Fault:
		d.SetFault(false)
		if b.enabled[unit] {
			d.Enable()
		}
	}
	s.log.Info("fault set", "bus", busOrListener, "unit", unit, "fault", f.String())
	return nil
}

// DeviceInfo describes one simulated device for GET /v1/devices.
type DeviceInfo struct {
	Bus        string    `json:"bus"`        // bus (or listener) name
	Transport  string    `json:"transport"`  // "modbus-rtu"
	Link       string    `json:"link"`       // the bus's symlink path
	Baud       int       `json:"baud"`       // bits/s
	Unit       int       `json:"unit"`       // Modbus unit ID
	Serial     string    `json:"serial"`     // serial number
	Model      string    `json:"model"`      // object 0x05
	Revision   string    `json:"revision"`   // object 0x02
	Fault      FaultJSON `json:"fault"`      // injected fault
	CiA402     string    `json:"cia402"`     // CiA 402 state, e.g. "operation_enabled"
	Statusword uint16    `json:"statusword"` // 0x6041
	ErrorCode  uint16    `json:"error_code"` // 0x603F
	Requests   uint64    `json:"requests"`   // requests received with a good CRC
	Replies    uint64    `json:"replies"`    // replies written
}

// FaultJSON is a fault as the control API reads and writes it:
// {"mode":"slow","delay":"200ms"}, {"mode":"exception","code":4}.
type FaultJSON struct {
	Mode  string `json:"mode"`            // none|silent|slow|exception|garbage|fault
	Delay string `json:"delay,omitempty"` // Go duration, mode slow only
	Code  int    `json:"code,omitempty"`  // exception code 1–255, mode exception only (default 4)
}

// Devices lists every simulated device, buses in config order, units in config order.
func (s *Sim) Devices() []DeviceInfo {
	var out []DeviceInfo
	for _, b := range s.buses {
		for _, dc := range b.cfg.Drives {
			d := b.drives[dc.Unit]
			st := d.Status()
			f, _ := b.server.Fault(byte(dc.Unit))
			stats, _ := b.server.Stats(byte(dc.Unit))
			fj := FaultJSON{Mode: string(f.Mode), Code: int(f.Code)}
			if f.Mode == slave.FaultSlow {
				fj.Delay = f.Delay.String()
			}
			out = append(out, DeviceInfo{
				Bus: b.cfg.Name, Transport: "modbus-rtu", Link: b.cfg.Link, Baud: b.cfg.Baud,
				Unit: dc.Unit, Serial: d.Serial(), Model: d.Model(), Revision: d.Revision(),
				Fault: fj, CiA402: st.State.String(), Statusword: st.Statusword, ErrorCode: st.ErrorCode,
				Requests: stats.Requests, Replies: stats.Replies,
			})
		}
	}
	return out
}
