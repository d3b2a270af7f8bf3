package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGoodConfig(t *testing.T) {
	c, err := Load("testdata/good.yml")
	if err != nil {
		t.Fatal(err)
	}
	b := c.Discovery.Serial[0]
	if len(b.UnitList) != 16 || b.UnitList[15] != 16 || b.Timeout != 20*time.Millisecond || b.PollInterval != 100*time.Millisecond {
		t.Fatalf("bus %+v", b)
	}
	if b.Parity != "none" || b.StopBits != 1 || b.ProbeShare != 0.2 || c.MQTT.ClientID != "rollcall-cell2-gw" {
		t.Fatalf("defaults not applied: %+v %+v", b, c.MQTT)
	}
	if c.Health.DeregisterCriticalAfter != 5*time.Second || c.Health.RefreshInterval != 10*time.Second {
		t.Fatalf("health %+v", c.Health)
	}
}

// TestBadConfigs checks each testdata/*.bad.yml against the message it must produce
// (file, line, key, what is expected), as Prometheus's config/testdata corpus does.
func TestBadConfigs(t *testing.T) {
	want := map[string]string{
		"baud-type.bad.yml":          "testdata/baud-type.bad.yml:6: discovery.serial[0].baud: expected an integer, got str \"fast\"",
		"broker-scheme.bad.yml":      "testdata/broker-scheme.bad.yml:2: mqtt.broker: unsupported URL scheme \"http\" (tcp, ssl, ws, wss)",
		"check-type.bad.yml":         "testdata/check-type.bad.yml:4: discovery.mdns.checks[0].type: expected \"tcp\" or \"http\", got \"ping\"",
		"dup-bus.bad.yml":            "testdata/dup-bus.bad.yml:4: discovery.serial[1].name: bus name \"bus1\" is already used by discovery.serial[0]",
		"duration.bad.yml":           "testdata/duration.bad.yml:2: health.poll_interval: expected a duration such as \"250ms\" or \"30s\", got str \"soon\"",
		"embedded-user.bad.yml":      "testdata/embedded-user.bad.yml:4: mqtt.embedded_auth.users[0]: give exactly one of password_file or password_env",
		"failures.bad.yml":           "testdata/failures.bad.yml:2: health.failures_before_critical: expected an integer ≥ 1, got -1",
		"gateway-id.bad.yml":         "testdata/gateway-id.bad.yml:1: gateway.id: expected 1–64 characters [a-z0-9._-] (it is an MQTT topic level), got \"Cell 2/gw\"",
		"instance-pattern.bad.yml":   "testdata/instance-pattern.bad.yml:3: discovery.mdns.instance_patterns[0]: expected a regular expression: error parsing regexp: missing closing ]: `[`",
		"limits.bad.yml":             "testdata/limits.bad.yml:2: limits.max_record_bytes: expected at least 1024 bytes, got 100",
		"mdns-check-missing.bad.yml": "testdata/mdns-check-missing.bad.yml:4: discovery.mdns.service_types[0]: _http._tcp is not Modbus: add a discovery.mdns.checks entry (type tcp or http) for it",
		"parity.bad.yml":             "testdata/parity.bad.yml:3: discovery.serial[0].parity: expected \"none\", \"even\" or \"odd\", got \"mark\"",
		"password-both.bad.yml":      "testdata/password-both.bad.yml:4: mqtt.password_env: give password_file or password_env, not both",
		"password-no-user.bad.yml":   "testdata/password-no-user.bad.yml:1: mqtt.username: a password is configured but no username",
		"probe-share.bad.yml":        "testdata/probe-share.bad.yml:3: discovery.serial[0].probe_share: expected a share 0 < share ≤ 1, got 1.5",
		"stop-bits.bad.yml":          "testdata/stop-bits.bad.yml:3: discovery.serial[0].stop_bits: expected 1 or 2, got 3",
		"tcp-address.bad.yml":        "testdata/tcp-address.bad.yml:3: discovery.tcp[0].address: expected host:port, e.g. 192.168.1.20:502, got \"10.0.0.5\"",
		"tls-pair.bad.yml":           "testdata/tls-pair.bad.yml:2: mqtt.tls: cert_file and key_file go together",
		"two-docs.bad.yml":           "testdata/two-docs.bad.yml:2: only one YAML document is allowed",
		"units-range.bad.yml":        "testdata/units-range.bad.yml:6: discovery.serial[0].units: unit IDs must be 1–247 in ascending ranges, got \"0-300\"",
		"unknown-key.bad.yml":        "testdata/unknown-key.bad.yml:6: discovery.serial[0].unit: unknown key \"unit\"",
		"unknown-top.bad.yml":        "testdata/unknown-top.bad.yml:5: discovery.serial_buses: unknown key \"serial_buses\"",
	}
	files, _ := filepath.Glob("testdata/*.bad.yml")
	if len(files) != len(want) {
		t.Errorf("%d bad configs in testdata, %d expected messages: every file needs one", len(files), len(want))
	}
	for file, msg := range want {
		t.Run(file, func(t *testing.T) {
			_, err := Load("testdata/" + file)
			if err == nil || err.Error() != msg {
				t.Fatalf("got  %v\nwant %s", err, msg)
			}
		})
	}
}

func TestParseUnits(t *testing.T) {
	u, err := ParseUnits("5-7, 1,3,6")
	if err != nil || len(u) != 5 || u[0] != 1 || u[4] != 7 {
		t.Fatalf("%v %v", u, err)
	}
	for _, bad := range []string{"", "a", "3-1", "0", "248", "1-", ","} {
		if _, err := ParseUnits(bad); err == nil {
			t.Errorf("ParseUnits(%q) accepted", bad)
		}
	}
}

// TestShippedConfigs: the sample configs in configs/ load.
func TestShippedConfigs(t *testing.T) {
	for _, f := range []string{"../../configs/gateway.yaml", "../../configs/edge-box.yaml"} {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// http.listen: off unless configured in a file; loopback:9180 without --config.
func TestHTTPListenDefaults(t *testing.T) {
	c, err := Parse("gw.yaml", []byte("gateway: {id: gw}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Listen != "" {
		t.Errorf("config file without http: listen %q, want off", c.HTTP.Listen)
	}
	if l := Default().HTTP.Listen; l != "127.0.0.1:9180" {
		t.Errorf("default config: listen %q, want 127.0.0.1:9180", l)
	}
	if _, err := Parse("gw.yaml", []byte("http: {listen: nowhere}\n")); err == nil || !strings.Contains(err.Error(), "http.listen") {
		t.Errorf("bad http.listen: %v", err)
	}
}
