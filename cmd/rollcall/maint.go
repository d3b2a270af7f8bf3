package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"strings"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
)

// maintCmd is `rollcall maint ID --reason TEXT [--until TIME] | --off`.
type maintCmd struct {
	ID        string `arg:"" name:"id" help:"The instance's id, full or short as the tables show it (sim-0002 for rollcall-firmware-sim-sim-0002)."`
	Reason    string `placeholder:"TEXT" help:"Why the instance is in maintenance (required unless --off)."`
	Until     string `placeholder:"TIME" help:"When maintenance ends by itself: RFC 3339 time or a duration from now."`
	Off       bool   `help:"End maintenance."`
	Gateway   string `default:"http://${http_listen}" placeholder:"URL" help:"The gateway's HTTP API (default ${default})."`
	TokenFile string `name:"token-file" placeholder:"FILE" help:"File holding the admin token (the gateway's http.admin_token_file); required."`

	until time.Time // Until, parsed by Validate
}

// Help is the text of `rollcall maint --help`.
func (maintCmd) Help() string {
	return `Puts the instance ID into maintenance: it stays listed with the reason, is never picked, routed or resolved, and its failures do not count; --off ends it. It survives a gateway restart (kept in the gateway's state directory). --until ends it by itself: RFC 3339 (2026-12-01T06:00:00Z) or a duration from now (90m). ID may be the short id the tables show (rollcall watch, the demo): it is looked up in the gateway's catalog. Exit status 0 done, 1 refused by the gateway (its message shown), 2 usage error.

Examples:

    rollcall maint rollcall-firmware-sim-sim-0002 --reason "encoder replaced" --until 2h --token-file /etc/rollcall/admin.token
    rollcall maint sim-0002 --off --token-file /etc/rollcall/admin.token
    rollcall maint rollcall-firmware-sim-sim-0002 --off --gateway http://box-a:9180 --token-file admin.token`
}

// Validate checks the flags together and parses --until (kong calls it after parsing).
func (c *maintCmd) Validate() error {
	switch {
	case c.ID == "":
		return errors.New("an instance id is required, e.g. rollcall maint rollcall-firmware-sim-sim-0002 --off --token-file FILE")
	case c.Off && (c.Reason != "" || c.Until != ""):
		return errors.New("--off takes no --reason or --until")
	case !c.Off && strings.TrimSpace(c.Reason) == "":
		return errors.New("--reason is required (or --off)")
	case c.TokenFile == "":
		return errors.New("--token-file is required (the gateway's http.admin_token_file)")
	}
	if c.Until != "" {
		var err error
		if c.until, err = parseUntil(c.Until, time.Now()); err != nil {
			return fmt.Errorf("--until: %w", err)
		}
	}
	return nil
}

// Run puts the instance into maintenance, or ends it, through the gateway's HTTP API
// (PUT or DELETE /v1/instances/<id>/maintenance with the admin token).
func (c *maintCmd) Run(ctx context.Context, s *streams) error {
	id, stdout := c.ID, s.stdout
	b, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return fmt.Errorf("maint: --token-file: %w", err)
	}
	token, _, _ := strings.Cut(strings.TrimRight(string(b), "\r\n"), "\n")
	body := map[string]any{"reason": c.Reason}
	if c.Until != "" {
		body["until"] = contract.Time{Time: c.until}
	}
	method, payload := http.MethodPut, []byte(nil)
	if c.Off {
		method = http.MethodDelete
	} else if payload, err = json.Marshal(body); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	id = c.fullID(ctx, id)
	url := strings.TrimRight(c.Gateway, "/") + "/v1/instances/" + neturl.PathEscape(id) + "/maintenance"
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(payload))
	if err != nil {
		return usagef("maint: --gateway: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(token))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return usagef("maint: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(msg, &e) == nil && e.Error != "" {
			return fmt.Errorf("maint: %s: %s", resp.Status, e.Error)
		}
		if resp.StatusCode == http.StatusNotFound {
			// No such route: the gateway serves no write endpoints (the demo's does not).
			return fmt.Errorf("maint: %s: %s has no maintenance endpoint: the gateway needs http.admin_token_file in its config", resp.Status, c.Gateway)
		}
		return fmt.Errorf("maint: %s", resp.Status)
	}
	if c.Off {
		fmt.Fprintf(stdout, "%s: maintenance ended\n", id)
		return nil
	}
	var rec contract.Record
	if err := json.Unmarshal(msg, &rec); err == nil && rec.Maintenance != nil {
		line := fmt.Sprintf("%s: %s (%s)", id, rec.Status, rec.Maintenance.Reason)
		if !rec.Maintenance.Until.IsZero() {
			line += " until " + rec.Maintenance.Until.UTC().Format(time.RFC3339)
		}
		fmt.Fprintln(stdout, line)
	}
	return nil
}

// fullID is the full id of the instance typed (full, or short as the tables show it:
// shortID) among the gateway's catalog (GET /v1/catalog); typed as it is when the
// catalog cannot be read or names no such instance (the gateway then says 404).
func (c *maintCmd) fullID(ctx context.Context, typed string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.Gateway, "/")+"/v1/catalog", nil)
	if err != nil {
		return typed
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return typed
	}
	defer resp.Body.Close()
	var recs []*contract.Record
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&recs) != nil {
		return typed
	}
	if id, ok := resolveID(typed, recs); ok {
		return id
	}
	return typed
}

// parseUntil reads --until: an RFC 3339 time, or a duration from now.
func parseUntil(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("%q: a duration must be positive", s)
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: expected an RFC 3339 time (2026-12-01T06:00:00Z) or a duration (90m)", s)
	}
	return t, nil
}
