package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/gateway/scriptcheck"
	"github.com/rollcall-edge/rollcall/registry"
)

// runTargetCheck runs one check every ck.Interval (the first at once) until ctx ends.
func runTargetCheck(ctx context.Context, reg *registry.Registry, owner string, ck config.TargetCheck, log *slog.Logger) {
	client := &http.Client{Timeout: ck.Timeout}
	defer client.CloseIdleConnections()
	t := time.NewTicker(ck.Interval)
	defer t.Stop()
	last := contract.Status("")
	for {
		status, note := targetCheckOnce(ctx, client, ck)
		if ctx.Err() != nil {
			return
		}
		if status != last {
			log.Info("check status", "status", status, "note", note)
			last = status
		}
		reg.ObserveCheck(owner, ck.Name, ck.Type, status, note, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// targetCheckOnce runs ck once: a script (scriptcheck.Run: exit 0 passing, 1 warning,
// else critical), an HTTP GET (2xx passing, 429 warning, else critical) or a TCP connect
// (passing or critical), within ck.Timeout, and returns the status and a note.
func targetCheckOnce(ctx context.Context, client *http.Client, ck config.TargetCheck) (contract.Status, string) {
	switch ck.Type {
	case "script":
		res := scriptcheck.Run(ctx, ck.Command, ck.Timeout, nil)
		return res.Status, res.Note
	case "http":
		ctx, cancel := context.WithTimeout(ctx, ck.Timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ck.URL, nil)
		if err != nil {
			return contract.Critical, err.Error()
		}
		resp, err := client.Do(req)
		if err != nil {
			return contract.Critical, err.Error()
		}
		resp.Body.Close()
		note := fmt.Sprintf("GET %s: %s", ck.URL, resp.Status)
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode <= 299:
			return contract.Passing, note
		case resp.StatusCode == http.StatusTooManyRequests:
			return contract.Warning, note
		}
		return contract.Critical, note
	default: // tcp
		ctx, cancel := context.WithTimeout(ctx, ck.Timeout)
		defer cancel()
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", ck.Address)
		if err != nil {
			return contract.Critical, err.Error()
		}
		c.Close()
		return contract.Passing, "connected to " + ck.Address
	}
}
