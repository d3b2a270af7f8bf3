package config

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/internal/testutil"
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

// TestBadConfigs checks each testdata/*.bad.yml against the messages it must produce
// (file:line:column, key, what is expected), as Prometheus's config/testdata corpus
// does: every problem of a file in one run, in order of line.
func TestBadConfigs(t *testing.T) {
	want := map[string][]string{
		"baud-type.bad.yml":     {`testdata/baud-type.bad.yml:6:13: discovery.serial[0].baud: expected an integer, got "fast"`},
		"broker-scheme.bad.yml": {`testdata/broker-scheme.bad.yml:2:3: mqtt.broker: unsupported URL scheme "http" (tcp, ssl, ws, wss)`},
		"check-type.bad.yml":    {`testdata/check-type.bad.yml:4:36: discovery.mdns.checks[0].type: expected "tcp" or "http", got "ping"`},
		"dup-bus.bad.yml":       {`testdata/dup-bus.bad.yml:4:8: discovery.serial[1].name: bus name "bus1" is already used by discovery.serial[0]`},
		"duration.bad.yml":      {`testdata/duration.bad.yml:2:18: health.poll_interval: expected a duration such as "250ms" or "30s", got "soon"`},
		"embedded-user.bad.yml": {`testdata/embedded-user.bad.yml:4:9: mqtt.embedded_auth.users[0]: give exactly one of password_file or password_env`},
		"failures.bad.yml":      {`testdata/failures.bad.yml:2:3: health.failures_before_critical: expected an integer from 1 to 1000, got -1: at least 1 (it is how many polls in a row without an answer make a device critical)`},
		"failures-zero.bad.yml": {`testdata/failures-zero.bad.yml:2:3: health.failures_before_critical: expected an integer from 1 to 1000, got 0: at least 1 (it is how many polls in a row without an answer make a device critical)`},
		"counts-absurd.bad.yml": {
			`testdata/counts-absurd.bad.yml:2:3: health.failures_before_critical: expected an integer from 1 to 1000, got 99999999999: at most 1000 (more would keep a silent device listed as alive for over 1000 polls)`,
			`testdata/counts-absurd.bad.yml:3:3: health.successes_before_passing: expected an integer from 1 to 1000, got 0: at least 1 (it is how many good polls in a row bring a device back)`,
			`testdata/counts-absurd.bad.yml:4:3: health.publish_burst: expected -1 (no limit) or an integer from 1 to 1000, got 0: at least 1 (0 would hold back every publication but deaths; -1 is no limit)`,
		},
		"http-listen-no-host.bad.yml": {`testdata/http-listen-no-host.bad.yml:3:3: http.listen: ":0" has no host, which listens on every interface without saying so: write 0.0.0.0:0 or [::]:0 if every interface is meant, or 127.0.0.1:0 for this host only`},
		"checks.bad.yml": {
			`testdata/checks.bad.yml:7:12: discovery.tcp[0].checks[0].name: expected a name of 1–64 characters [a-z0-9._-], not poll or ttl (the heartbeat's), got "poll"`,
			`testdata/checks.bad.yml:8:35: discovery.tcp[0].checks[1].url: expected an http:// or https:// URL, got "ftp://x"`,
			`testdata/checks.bad.yml:9:12: discovery.tcp[0].checks[2].name: check "web" is already defined by discovery.tcp[0].checks[1]`,
			`testdata/checks.bad.yml:9:23: discovery.tcp[0].checks[2].type: expected script, http or tcp, got "ping"`,
			`testdata/checks.bad.yml:10:38: discovery.tcp[0].checks[3].command: scriptcheck: "./check.sh" is a relative path; use an absolute path or a name found in PATH`,
			`testdata/checks.bad.yml:10:75: discovery.tcp[0].checks[3].timeout: 5s is longer than the interval 1s: runs would overlap`,
			`testdata/checks.bad.yml:11:21: self_registration.http: needs http.admin_token_file: the registration endpoints take its token`,
			`testdata/checks.bad.yml:11:21: self_registration.http: needs http.listen: there is no HTTP API to register with`,
			`testdata/checks.bad.yml:11:33: self_registration.max_instances: expected an integer from 1 to 10000, got 0: at least 1 (0 would refuse every registration)`,
		},
		"routes.bad.yml": {
			`testdata/routes.bad.yml:2:1: modbus_server.advertise: expected the address clients reach the Modbus TCP server at: it listens on every interface (0.0.0.0:1502), so DNS answers cannot name one`,
			`testdata/routes.bad.yml:4:3: modbus_server.bus_share: expected a share 0 < share ≤ 1, got 0`,
			`testdata/routes.bad.yml:5:3: modbus_server.max_in_flight: expected an integer from 1 to 64, got 0: at least 1 (0 would answer nothing)`,
			`testdata/routes.bad.yml:8:8: modbus_server.routes[1].unit: unit 1 is routed already by modbus_server.routes[0]`,
			`testdata/routes.bad.yml:8:17: modbus_server.routes[1].service: expected a service name of 1–64 characters [a-z0-9._-], got "Servo Drive"`,
			`testdata/routes.bad.yml:8:39: modbus_server.routes[1].strategy: expected sticky, round-robin, lowest-rtt or random, got "fastest"`,
			`testdata/routes.bad.yml:9:8: modbus_server.routes[2].unit: expected a virtual unit ID 1–255 (0 is the serial broadcast address), got 0`,
			`testdata/routes.bad.yml:12:3: dns.domain: label "plant_1" has a character outside [a-z0-9-]`,
			`testdata/routes.bad.yml:13:3: dns.ttl: expected 0s or 1s, got 5s: a longer TTL keeps a dead instance in clients' caches`,
		},
		"same-device.bad.yml":        {`testdata/same-device.bad.yml:6:7: discovery.serial[1].device: bus "bus2" and bus "bus1" (discovery.serial[0], line 4) both use device /dev/ttyUSB0 (written "/dev/../dev/ttyUSB0" and "/dev/ttyUSB0"): one RS-485 line takes one master (Modbus over Serial Line V1.02 §2.1); give each bus its own device`},
		"flow-mapping.bad.yml":       {`testdata/flow-mapping.bad.yml:2:64: discovery.serial[0].baud: expected an integer, got "fast"`},
		"gateway-id.bad.yml":         {`testdata/gateway-id.bad.yml:1:11: gateway.id: expected 1–64 characters [a-z0-9._-] (it is an MQTT topic level), got "Cell 2/gw"`},
		"instance-pattern.bad.yml":   {"testdata/instance-pattern.bad.yml:3:25: discovery.mdns.instance_patterns[0]: expected a regular expression: error parsing regexp: missing closing ]: `[`"},
		"limits.bad.yml":             {`testdata/limits.bad.yml:2:3: limits.max_record_bytes: expected an integer from 1024 to 1048576, got 100: at least 1024 bytes (a record with its meta and identity needs that much room)`},
		"mdns-check-missing.bad.yml": {`testdata/mdns-check-missing.bad.yml:4:21: discovery.mdns.service_types[0]: _http._tcp is not Modbus: add a discovery.mdns.checks entry (type tcp or http) for it`},
		"many-mistakes.bad.yml": {
			`testdata/many-mistakes.bad.yml:2:11: gateway.id: expected 1–64 characters [a-z0-9._-] (it is an MQTT topic level), got "Cell2"`,
			`testdata/many-mistakes.bad.yml:3:1: mqtt.username: a password is configured but no username`,
			`testdata/many-mistakes.bad.yml:5:3: mqtt.usename: unknown key "usename" (expected one of: broker, brokers, embedded_listen, embedded_auth, embedded_limits, topic_prefix, client_id, username, password_file, password_env, tls)`,
			`testdata/many-mistakes.bad.yml:12:7: discovery.serial[0].parity: expected "none", "even" or "odd", got "mark"`,
			`testdata/many-mistakes.bad.yml:13:7: discovery.serial[0].units: unit IDs must be 1–247 in ascending ranges, got "1-300"`,
			`testdata/many-mistakes.bad.yml:14:8: discovery.serial[1].name: bus name "bus1" is already used by discovery.serial[0]`,
			`testdata/many-mistakes.bad.yml:14:53: discovery.serial[1].stop_bits: expected an integer, got "two"`,
			`testdata/many-mistakes.bad.yml:16:21: discovery.tcp[0].address: expected host:port, e.g. 192.168.1.20:502, got "10.0.0.5"`,
			`testdata/many-mistakes.bad.yml:16:49: discovery.tcp[0].timeout: expected a duration such as "250ms" or "30s", got 1`,
			`testdata/many-mistakes.bad.yml:18:3: health.poll_interval: expected a duration from 1ms to 10m0s, got -5ms: at least 1ms (a device is polled at most once a millisecond)`,
			`testdata/many-mistakes.bad.yml:19:3: health.failures_before_critical: expected an integer from 1 to 1000, got -1: at least 1 (it is how many polls in a row without an answer make a device critical)`,
		},
		"parity.bad.yml":           {`testdata/parity.bad.yml:3:36: discovery.serial[0].parity: expected "none", "even" or "odd", got "mark"`},
		"password-both.bad.yml":    {`testdata/password-both.bad.yml:4:3: mqtt.password_env: give password_file or password_env, not both`},
		"password-no-user.bad.yml": {`testdata/password-no-user.bad.yml:1:1: mqtt.username: a password is configured but no username`},
		"probe-share.bad.yml":      {`testdata/probe-share.bad.yml:3:36: discovery.serial[0].probe_share: expected a share 0 < share ≤ 1, got 1.5`},
		"service-type.bad.yml":     {`testdata/service-type.bad.yml:4:35: discovery.mdns.service_types[1]: expected a DNS-SD service type such as "_modbus._tcp", got "_--._tcp": hyphen at either end or two in a row`},
		"stop-bits.bad.yml":        {`testdata/stop-bits.bad.yml:3:36: discovery.serial[0].stop_bits: expected 1 or 2, got 3`},
		"tcp-address.bad.yml":      {`testdata/tcp-address.bad.yml:3:21: discovery.tcp[0].address: expected host:port, e.g. 192.168.1.20:502, got "10.0.0.5"`},
		"tls-pair.bad.yml":         {`testdata/tls-pair.bad.yml:2:3: mqtt.tls: cert_file and key_file go together`},
		"two-docs.bad.yml":         {`testdata/two-docs.bad.yml:2:1: only one YAML document is allowed`},
		"units-range.bad.yml":      {`testdata/units-range.bad.yml:6:7: discovery.serial[0].units: unit IDs must be 1–247 in ascending ranges, got "0-300"`},
		"unknown-key.bad.yml":      {`testdata/unknown-key.bad.yml:6:7: discovery.serial[0].unit: unknown key "unit" (expected one of: name, device, baud, parity, stop_bits, units, timeout, adaptive_timeout, poll_interval, turnaround, frame_gap, probe_share, meta, devices)`},
		"unknown-top.bad.yml":      {`testdata/unknown-top.bad.yml:5:3: discovery.serial_buses: unknown key "serial_buses" (expected one of: serial, tcp, mdns)`},
	}
	testutil.BadConfigs(t, want, func(path string) error {
		_, err := Load(path)
		return err
	})
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

// TestMDNSServiceTypes: service types follow mdns.ValidServiceType, compare without
// regard to case and are kept lower-cased, as the browser reports them.
func TestMDNSServiceTypes(t *testing.T) {
	tests := []struct {
		name, in    string
		wantErr     string // substring; "" = valid
		wantTypes   []string
		wantService string // of checks[0]
	}{
		{"case-insensitive", "discovery:\n  mdns:\n    service_types: [_Modbus._TCP, _HTTP._tcp]\n    checks: [{service_type: _http._TCP, type: http}]\n",
			"", []string{"_modbus._tcp", "_http._tcp"}, "http"},
		{"double hyphen", "discovery: {mdns: {service_types: [_--._tcp]}}\n",
			`gw.yaml:1:36: discovery.mdns.service_types[0]: expected a DNS-SD service type such as "_modbus._tcp", got "_--._tcp": hyphen at either end or two in a row`, nil, ""},
		{"digits only", "discovery: {mdns: {service_types: [_502._tcp]}}\n", "got \"_502._tcp\": service name needs a letter", nil, ""},
		{"check service type", "discovery: {mdns: {checks: [{service_type: _a_b._tcp, type: tcp}]}}\n",
			`discovery.mdns.checks[0].service_type: expected a DNS-SD service type such as "_http._tcp", got "_a_b._tcp": invalid character '_'`, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("gw.yaml", []byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if md := c.Discovery.MDNS; !slices.Equal(md.ServiceTypes, tc.wantTypes) || md.Checks[0].Service != tc.wantService ||
				md.Checks[0].ServiceType != strings.ToLower(md.Checks[0].ServiceType) {
				t.Fatalf("mdns %+v", md)
			}
		})
	}
}
