package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/rollcall-edge/rollcall/gateway"
)

// reloadOnHangup reloads the gateway's config file (path, from --config) on every
// SIGHUP (`systemctl reload rollcall`, `kill -HUP`), until ctx ends or the returned stop
// is called; stop also waits for a reload in progress. A file with errors changes
// nothing (Gateway.ReloadFile logs them). Under systemd each reload is framed by
// RELOADING=1 and READY=1 (sd_notify; Type=notify-reload). Without --config there is
// nothing to reload: a SIGHUP is logged and ignored, never fatal. Call it before the
// gateway runs, so that a SIGHUP never takes the default action (terminate):
//
//	defer reloadOnHangup(ctx, g, *cfgPath, log)()
func reloadOnHangup(ctx context.Context, g *gateway.Gateway, path string, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer signal.Stop(hup)
		reloadOn(ctx, hup, g, path, log, sdNotify)
	}()
	return func() { cancel(); wg.Wait() }
}

// reloader is what reloadOn reloads: a *gateway.Gateway.
type reloader interface {
	Started() <-chan struct{}
	ReloadFile(path string) error
}

// reloadOn reloads g from path on every value of sig until ctx ends, telling the
// service manager through notify (sdNotify).
func reloadOn(ctx context.Context, sig <-chan os.Signal, g reloader, path string, log *slog.Logger, notify func(string) bool) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-sig:
			if path == "" {
				log.Warn("reload: the gateway runs without --config; nothing to reload", "signal", s.String())
				continue
			}
			// A SIGHUP during the start (e.g. while another gateway's status lease runs
			// out) is applied once the gateway has started: the file was edited for a
			// reason, and READY=1 must not reach systemd before the gateway is ready.
			select {
			case <-g.Started():
			case <-ctx.Done():
				return
			}
			log.Info("reload: reloading the config", "signal", s.String(), "file", path)
			notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d\nSTATUS=reloading %s", monotonicUsec(), path))
			status := "STATUS=running; config reloaded from " + path
			switch err := g.ReloadFile(path); {
			case errors.Is(err, gateway.ErrNotRunning):
				// Stopping: STOPPING=1 follows, not READY=1.
				log.Warn("reload: the gateway is stopping; ignored")
				continue
			case err != nil:
				// ReloadFile logged every error; the running config stays in force.
				status = "STATUS=running; reload of " + path + " rejected (see the log), previous config in force"
			}
			notify("READY=1\n" + status)
		}
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, as systemd wants it with
// RELOADING=1 (sd_notify(3), MONOTONIC_USEC).
func monotonicUsec() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return ts.Nano() / 1000
}
