package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway/config"
)

// cmdMaint puts an instance into maintenance, or ends it, through the gateway's HTTP API
// (PUT or DELETE /v1/instances/<id>/maintenance with the admin token): rollcall maint ID
// --reason TEXT [--until TIME] | --off.
func cmdMaint(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("maint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: rollcall maint ID --reason TEXT [--until TIME] [--gateway URL] [--token-file FILE]
       rollcall maint ID --off [--gateway URL] [--token-file FILE]

Puts the instance ID into maintenance: it stays listed with the reason, is never
picked, routed or resolved, and its failures do not count; --off ends it. It survives
a gateway restart (kept in the gateway's state directory). --until ends it by itself:
RFC 3339 (2026-12-01T06:00:00Z) or a duration from now (90m).

Examples:
  rollcall maint rollcall-firmware-sim-sim-0002 --reason "encoder replaced" --until 2h --token-file /etc/rollcall/admin.token
  rollcall maint rollcall-firmware-sim-sim-0002 --off --token-file /etc/rollcall/admin.token

Flags:
`)
		fs.PrintDefaults()
	}
	reason := fs.String("reason", "", "why the instance is in maintenance (required unless --off)")
	until := fs.String("until", "", "when maintenance ends by itself: RFC 3339 time or a duration from now")
	off := fs.Bool("off", false, "end maintenance")
	gw := fs.String("gateway", "http://"+config.DefaultHTTPListen, "the gateway's HTTP API")
	tokenFile := fs.String("token-file", "", "file holding the admin token (the gateway's http.admin_token_file)")
	id, rest := "", args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, rest = args[0], args[1:]
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if id == "" && fs.NArg() > 0 {
		id = fs.Arg(0)
	}
	switch {
	case id == "":
		return fmt.Errorf("maint: an instance id is required: %w", errUsage)
	case *off && (*reason != "" || *until != ""):
		return fmt.Errorf("maint: --off takes no --reason or --until: %w", errUsage)
	case !*off && strings.TrimSpace(*reason) == "":
		return fmt.Errorf("maint: --reason is required (or --off): %w", errUsage)
	case *tokenFile == "":
		return fmt.Errorf("maint: --token-file is required (the gateway's http.admin_token_file): %w", errUsage)
	}
	b, err := os.ReadFile(*tokenFile)
	if err != nil {
		return fmt.Errorf("maint: --token-file: %w", err)
	}
	token, _, _ := strings.Cut(strings.TrimRight(string(b), "\r\n"), "\n")
	body := map[string]any{"reason": *reason}
	if *until != "" {
		t, err := parseUntil(*until, time.Now())
		if err != nil {
			return fmt.Errorf("maint: --until: %w: %w", err, errUsage)
		}
		body["until"] = contract.Time{Time: t}
	}
	method, payload := http.MethodPut, []byte(nil)
	if *off {
		method = http.MethodDelete
	} else if payload, err = json.Marshal(body); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	url := strings.TrimRight(*gw, "/") + "/v1/instances/" + id + "/maintenance"
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("maint: --gateway: %w: %w", err, errUsage)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(token))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("maint: %w: %w", err, errUsage)
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
		return fmt.Errorf("maint: %s", resp.Status)
	}
	if *off {
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
