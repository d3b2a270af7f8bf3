package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/internal/yamlx"
)

// Config texts with one line to fill (%s), and where that line's key is.
const (
	inHealth = "health:\n  %s\n"                                                                                                                       // 2:3
	inSerial = "discovery:\n  serial:\n    - name: b\n      device: /dev/x\n      %s\n"                                                                // 5:7
	inTCP    = "discovery:\n  tcp:\n    - name: t\n      address: h:502\n      %s\n"                                                                   // 5:7
	inTCPA   = "discovery:\n  tcp:\n    - name: t\n      %s\n"                                                                                         // 4:7
	inMDNS   = "discovery:\n  mdns:\n    %s\n"                                                                                                         // 3:5
	inCheck  = "discovery:\n  mdns:\n    service_types: [_http._tcp]\n    checks:\n      - service_type: _http._tcp\n        type: http\n        %s\n" // 7:9
	inLimits = "limits:\n  %s\n"                                                                                                                       // 2:3
	inHTTP   = "http:\n  %s\n"                                                                                                                         // 2:3
	inMQTT   = "mqtt:\n  %s\n"                                                                                                                         // 2:3
)

// TestRangesRefused: every count and duration out of its range is refused, naming the
// file, line, column and key, the range, and the reason of the bound crossed.
func TestRangesRefused(t *testing.T) {
	tests := []struct {
		in, line string
		want     string // the whole message
	}{
		{inHealth, "failures_before_critical: 0", "gw.yaml:2:3: health.failures_before_critical: expected an integer from 1 to 1000, got 0: at least 1 (it is how many polls in a row without an answer make a device critical)"},
		{inHealth, "failures_before_critical: 1001", "gw.yaml:2:3: health.failures_before_critical: expected an integer from 1 to 1000, got 1001: at most 1000 (more would keep a silent device listed as alive for over 1000 polls)"},
		{inHealth, "failures_before_critical: 99999999999", "gw.yaml:2:3: health.failures_before_critical: expected an integer from 1 to 1000, got 99999999999: at most 1000 (more would keep a silent device listed as alive for over 1000 polls)"},
		{inHealth, "successes_before_passing: 0", "gw.yaml:2:3: health.successes_before_passing: expected an integer from 1 to 1000, got 0: at least 1 (it is how many good polls in a row bring a device back)"},
		{inHealth, "successes_before_passing: 5000", "gw.yaml:2:3: health.successes_before_passing: expected an integer from 1 to 1000, got 5000: at most 1000 (more would keep a device that answers again critical for over 1000 polls)"},
		{inHealth, "publish_burst: 0", "gw.yaml:2:3: health.publish_burst: expected -1 (no limit) or an integer from 1 to 1000, got 0: at least 1 (0 would hold back every publication but deaths; -1 is no limit)"},
		{inHealth, "publish_burst: -2", "gw.yaml:2:3: health.publish_burst: expected -1 (no limit) or an integer from 1 to 1000, got -2: at least 1 (0 would hold back every publication but deaths; -1 is no limit)"},
		{inHealth, "publish_burst: 1001", "gw.yaml:2:3: health.publish_burst: expected -1 (no limit) or an integer from 1 to 1000, got 1001: at most 1000 (more is no limit in practice: write -1)"},
		{inHealth, "poll_interval: 0s", "gw.yaml:2:3: health.poll_interval: expected a duration from 1ms to 10m0s, got 0s: at least 1ms (a device is polled at most once a millisecond)"},
		{inHealth, "poll_interval: 11m", "gw.yaml:2:3: health.poll_interval: expected a duration from 1ms to 10m0s, got 11m0s: at most 10m0s (a slower heartbeat leaves a dead device listed as alive for over 10 minutes)"},
		{inHealth, "deregister_critical_after: 500ms", "gw.yaml:2:3: health.deregister_critical_after: expected a duration from 1s to 168h0m0s, got 500ms: at least 1s (consumers must get to see the critical record before it is removed)"},
		{inHealth, "deregister_critical_after: 200h", "gw.yaml:2:3: health.deregister_critical_after: expected a duration from 1s to 168h0m0s, got 200h0m0s: at most 168h0m0s (a dead device would stay in the catalog for over a week)"},
		{inHealth, "refresh_interval: 100ms", "gw.yaml:2:3: health.refresh_interval: expected a duration from 1s to 1h0m0s, got 100ms: at least 1s (every unchanged record would be republished more than once a second, flooding the broker)"},
		{inHealth, "refresh_interval: 2h", "gw.yaml:2:3: health.refresh_interval: expected a duration from 1s to 1h0m0s, got 2h0m0s: at most 1h0m0s (consumers would see last_seen over an hour old)"},
		{inHealth, "slow_rtt: -1ms", "gw.yaml:2:3: health.slow_rtt: expected 0s (off) or a duration from 1ms to 1m0s, got -1ms: at least 1ms (a round trip is measured in milliseconds)"},
		{inHealth, "slow_rtt: 2m", "gw.yaml:2:3: health.slow_rtt: expected 0s (off) or a duration from 1ms to 1m0s, got 2m0s: at most 1m0s (a reply that slow has timed out long before)"},
		{inHealth, "restart_grace: 0s", "gw.yaml:2:3: health.restart_grace: expected a duration from 1s to 1h0m0s, got 0s: at least 1s (after a restart, pollers need time to claim the devices they find again)"},
		{inHealth, "restart_grace: 2h", "gw.yaml:2:3: health.restart_grace: expected a duration from 1s to 1h0m0s, got 2h0m0s: at most 1h0m0s (devices gone while the gateway was down would stay listed for over an hour)"},
		{inHealth, "publish_every: 1ms", "gw.yaml:2:3: health.publish_every: expected a duration from 10ms to 1h0m0s, got 1ms: at least 10ms (faster is no limit in practice: write publish_burst: -1)"},
		{inHealth, "publish_every: 2h", "gw.yaml:2:3: health.publish_every: expected a duration from 10ms to 1h0m0s, got 2h0m0s: at most 1h0m0s (the latest state of a flapping device would wait over an hour)"},
		{inHealth, "status_lease: 500ms", "gw.yaml:2:3: health.status_lease: expected a duration from 1s to 1h0m0s, got 500ms: at least 1s (it is renewed every third of it)"},
		{inHealth, "status_lease: 2h", "gw.yaml:2:3: health.status_lease: expected a duration from 1s to 1h0m0s, got 2h0m0s: at most 1h0m0s (consumers would take over an hour to drop the instances of a dead gateway)"},
		{inHealth, "instance_lease: 5s", "gw.yaml:2:3: health.instance_lease: expected more than refresh_interval (10s), which renews it, got 5s"},
		{inHealth, "instance_lease: 25h", "gw.yaml:2:3: health.instance_lease: expected a duration more than refresh_interval and at most 24h0m0s, got 25h0m0s: at most 24h0m0s (a record of a dead gateway would stay valid for over a day)"},

		{inSerial, "baud: 0", "gw.yaml:5:7: discovery.serial[0].baud: expected a baud rate between 300 and 4000000, got 0"},
		{inSerial, "timeout: 0s", "gw.yaml:5:7: discovery.serial[0].timeout: expected a duration from 1ms to 10s, got 0s: at least 1ms (a reply takes at least the wire time of its bytes)"},
		{inSerial, "timeout: 11s", "gw.yaml:5:7: discovery.serial[0].timeout: expected a duration from 1ms to 10s, got 11s: at most 10s (while it waits, the master polls no other device of the bus)"},
		{inSerial, "poll_interval: 0s", "gw.yaml:5:7: discovery.serial[0].poll_interval: expected a duration from 1ms to 10m0s, got 0s: at least 1ms (a device is polled at most once a millisecond)"},
		{inSerial, "turnaround: -1ms", "gw.yaml:5:7: discovery.serial[0].turnaround: expected a duration from 0s to 1s, got -1ms: at least 0s (a device cannot answer before it is asked)"},
		{inSerial, "turnaround: 2s", "gw.yaml:5:7: discovery.serial[0].turnaround: expected a duration from 0s to 1s, got 2s: at most 1s (probes of absent unit IDs would each wait that long; no Modbus device takes a second to start its reply)"},
		{inSerial, "frame_gap: 1ms", "gw.yaml:5:7: discovery.serial[0].frame_gap: expected 0s (the default) or a duration from 2.005208ms to 1s, got 1ms: at least 2.005208ms (t3.5 at 19200 baud: Modbus over Serial Line V1.02 §2.5.1.1 separates frames by 3.5 character times)"},
		{inSerial, "frame_gap: 2s", "gw.yaml:5:7: discovery.serial[0].frame_gap: expected 0s (the default) or a duration from 2.005208ms to 1s, got 2s: at most 1s (the master waits this long after every reply)"},
		{inSerial, "probe_share: .nan", "gw.yaml:5:7: discovery.serial[0].probe_share: expected a share 0 < share ≤ 1, got NaN"},
		{inSerial, "probe_share: 0", "gw.yaml:5:7: discovery.serial[0].probe_share: expected a share 0 < share ≤ 1, got 0"},
		{inSerial, "stop_bits: 0", "gw.yaml:5:7: discovery.serial[0].stop_bits: expected 1 or 2, got 0"},

		{inTCP, "timeout: 0s", "gw.yaml:5:7: discovery.tcp[0].timeout: expected a duration from 1ms to 30s, got 0s: at least 1ms (a reply takes at least a network round trip)"},
		{inTCP, "timeout: 31s", "gw.yaml:5:7: discovery.tcp[0].timeout: expected a duration from 1ms to 30s, got 31s: at most 30s (while it waits, the master polls no other unit of the endpoint)"},
		{inTCP, "poll_interval: 11m", "gw.yaml:5:7: discovery.tcp[0].poll_interval: expected a duration from 1ms to 10m0s, got 11m0s: at most 10m0s (a slower heartbeat leaves a dead device listed as alive for over 10 minutes)"},
		{inTCP, "devices: [{unit: 256}]", "gw.yaml:5:18: discovery.tcp[0].devices[0].unit: expected a unit ID 0–255 (the MBAP unit identifier is one byte, Modbus Messaging on TCP/IP Implementation Guide V1.0b §3.1.3), got 256"},
		{inTCPA, "address: h:0", `gw.yaml:4:7: discovery.tcp[0].address: expected a port from 1 to 65535 (502 is the Modbus TCP port), got "0"`},
		{inTCPA, "address: h:70000", `gw.yaml:4:7: discovery.tcp[0].address: expected a port from 1 to 65535 (502 is the Modbus TCP port), got "70000"`},

		{inMDNS, "window: 50ms", "gw.yaml:3:5: discovery.mdns.window: expected a duration from 120ms to 1m0s, got 50ms: at least 120ms (RFC 6762 §6: a responder may wait up to 120 ms before answering)"},
		{inMDNS, "window: 2m", "gw.yaml:3:5: discovery.mdns.window: expected a duration from 120ms to 1m0s, got 2m0s: at most 1m0s (a device announced would wait over a minute to be seen)"},
		{inMDNS, "every: 0s", "gw.yaml:3:5: discovery.mdns.every: expected a duration from 100ms to 1h0m0s, got 0s: at least 100ms (windows back to back would query the network without pause)"},
		{inMDNS, "every: 2h", "gw.yaml:3:5: discovery.mdns.every: expected a duration from 100ms to 1h0m0s, got 2h0m0s: at most 1h0m0s (a device announced would wait over an hour to be found)"},
		{inMDNS, "timeout: 0s", "gw.yaml:3:5: discovery.mdns.timeout: expected a duration from 1ms to 30s, got 0s: at least 1ms (a reply takes at least a network round trip)"},
		{inCheck, "timeout: -1s", "gw.yaml:7:9: discovery.mdns.checks[0].timeout: expected a duration from 1ms to 30s, got -1s: at least 1ms (a check takes at least a network round trip)"},
		{inCheck, "timeout: 1m", "gw.yaml:7:9: discovery.mdns.checks[0].timeout: expected a duration from 1ms to 30s, got 1m0s: at most 30s (a module that slow to answer is as good as down)"},

		{inLimits, "max_instances: 0", "gw.yaml:2:3: limits.max_instances: expected an integer from 1 to 100000, got 0: at least 1 (0 would admit no device)"},
		{inLimits, "max_instances: 100001", "gw.yaml:2:3: limits.max_instances: expected an integer from 1 to 100000, got 100001: at most 100000 (a gateway polls a few thousand devices; a larger cap only lets a rogue network fill the memory)"},
		{inLimits, "max_record_bytes: 2000000", "gw.yaml:2:3: limits.max_record_bytes: expected an integer from 1024 to 1048576, got 2000000: at most 1048576 (a record is well under 1 KiB; a larger cap only lets a device bloat the catalog)"},
		{inLimits, "max_endpoints: 0", "gw.yaml:2:3: limits.max_endpoints: expected an integer from 1 to 10000, got 0: at least 1 (0 would admit no mDNS candidate)"},
		{inLimits, "max_endpoints: 10001", "gw.yaml:2:3: limits.max_endpoints: expected an integer from 1 to 10000, got 10001: at most 10000 (each endpoint is a TCP connection polled on its own; a larger cap only lets a rogue network exhaust the sockets)"},

		{inHTTP, "max_connections: 0", "gw.yaml:2:3: http.max_connections: expected an integer from 1 to 65535, got 0: at least 1 (0 would refuse every client)"},
		{inHTTP, "max_connections: 65536", "gw.yaml:2:3: http.max_connections: expected an integer from 1 to 65535, got 65536: at most 65535 (one listener cannot have more connections than TCP has ports)"},
		{inHTTP, "max_event_streams: 0", "gw.yaml:2:3: http.max_event_streams: expected an integer from 1 to 4096, got 0: at least 1 (0 would refuse every /v1/events client)"},
		{inHTTP, "max_event_streams: 4097", "gw.yaml:2:3: http.max_event_streams: expected an integer from 1 to 4096, got 4097: at most 4096 (each stream holds a connection and a goroutine for as long as it lasts)"},
		{inHTTP, `listen: ":9180"`, `gw.yaml:2:3: http.listen: ":9180" has no host, which listens on every interface without saying so: write 0.0.0.0:9180 or [::]:9180 if every interface is meant, or 127.0.0.1:9180 for this host only`},
		{inHTTP, `listen: ":0"`, `gw.yaml:2:3: http.listen: ":0" has no host, which listens on every interface without saying so: write 0.0.0.0:0 or [::]:0 if every interface is meant, or 127.0.0.1:0 for this host only`},
		{inHTTP, "listen: 127.0.0.1:70000", `gw.yaml:2:3: http.listen: expected a port from 0 to 65535 (0: any free port), got "70000"`},
		{inHTTP, "listen: localhost:http", `gw.yaml:2:3: http.listen: expected a port from 0 to 65535 (0: any free port), got "http"`},
		{inMQTT, "embedded_listen: 127.0.0.1:99999", `gw.yaml:2:3: mqtt.embedded_listen: expected a port from 0 to 65535 (0: any free port), got "99999"`},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			_, err := Parse("gw.yaml", []byte(fmt.Sprintf(tc.in, tc.line)))
			if err == nil {
				t.Fatal("accepted")
			}
			if got := err.Error(); got != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
			if strings.Contains(err.Error(), "negative") {
				t.Errorf("a rule about negative durations applied: %v", err)
			}
			var ye *yamlx.Error
			if !errors.As(err, &ye) || ye.File != "gw.yaml" {
				t.Errorf("%T is not a *yamlx.Error naming the file", err)
			}
		})
	}
}

// TestRangesAccepted: the bounds themselves, and the values that mean "off" or "no
// limit", are accepted and kept as written (an explicit 0 is not replaced by a default).
func TestRangesAccepted(t *testing.T) {
	tests := []struct {
		in, line string
		check    func(c *Config) bool
	}{
		{inHealth, "failures_before_critical: 1", func(c *Config) bool { return c.Health.FailuresBeforeCritical == 1 }},
		{inHealth, "failures_before_critical: 1000", func(c *Config) bool { return c.Health.FailuresBeforeCritical == 1000 }},
		{inHealth, "successes_before_passing: 1000", func(c *Config) bool { return c.Health.SuccessesBeforePassing == 1000 }},
		{inHealth, "publish_burst: -1", func(c *Config) bool { return c.Health.PublishBurst == -1 }},
		{inHealth, "publish_burst: 1000", func(c *Config) bool { return c.Health.PublishBurst == 1000 }},
		{inHealth, "poll_interval: 1ms", func(c *Config) bool { return c.Health.PollInterval == time.Millisecond }},
		{inHealth, "poll_interval: 10m", func(c *Config) bool { return c.Health.PollInterval == 10*time.Minute }},
		{inHealth, "deregister_critical_after: 168h", func(c *Config) bool { return c.Health.DeregisterCriticalAfter == 168*time.Hour }},
		{inHealth, "refresh_interval: 1h", func(c *Config) bool { return c.Health.InstanceLease == 3*time.Hour }},
		{inHealth, "slow_rtt: 0s", func(c *Config) bool { return c.Health.SlowRTT == 0 }},
		{inHealth, "slow_rtt: 1m", func(c *Config) bool { return c.Health.SlowRTT == time.Minute }},
		{inHealth, "restart_grace: 1s", func(c *Config) bool { return c.Health.RestartGrace == time.Second }},
		{inHealth, "publish_every: 10ms", func(c *Config) bool { return c.Health.PublishEvery == 10*time.Millisecond }},
		{inHealth, "status_lease: 1h", func(c *Config) bool { return c.Health.StatusLease == time.Hour }},
		{inHealth, "instance_lease: 24h", func(c *Config) bool { return c.Health.InstanceLease == 24*time.Hour }},
		{inSerial, "turnaround: 0s", func(c *Config) bool { return c.Discovery.Serial[0].Turnaround == 0 }},
		{inSerial, "frame_gap: 0s", func(c *Config) bool { return c.Discovery.Serial[0].FrameGap == 0 }},
		{inSerial, "frame_gap: 1s", func(c *Config) bool { return c.Discovery.Serial[0].FrameGap == time.Second }},
		{inSerial, "timeout: 10s", func(c *Config) bool { return c.Discovery.Serial[0].Timeout == 10*time.Second }},
		{inTCP, "timeout: 30s", func(c *Config) bool { return c.Discovery.TCP[0].Timeout == 30*time.Second }},
		{inTCP, "devices: [{unit: 0}, {unit: 255}]", func(c *Config) bool { return len(c.Discovery.TCP[0].Devices) == 2 }},
		{inTCPA, "address: h:65535", func(c *Config) bool { return c.Discovery.TCP[0].Address == "h:65535" }},
		{inMDNS, "window: 120ms", func(c *Config) bool { return c.Discovery.MDNS.Window == 120*time.Millisecond }},
		{inMDNS, "every: 100ms", func(c *Config) bool { return c.Discovery.MDNS.Every == 100*time.Millisecond }},
		{inLimits, "max_instances: 100000", func(c *Config) bool { return c.Limits.MaxInstances == 100000 }},
		{inLimits, "max_record_bytes: 1048576", func(c *Config) bool { return c.Limits.MaxRecordBytes == 1<<20 }},
		{inHTTP, "max_connections: 65535", func(c *Config) bool { return c.HTTP.MaxConnections == 65535 }},
		{inHTTP, "max_event_streams: 4096", func(c *Config) bool { return c.HTTP.MaxEventStreams == 4096 }},
		{inHTTP, "listen: 127.0.0.1:0", func(c *Config) bool { return c.HTTP.Listen == "127.0.0.1:0" && c.Warnings() == nil }},
		{inHTTP, `listen: "[::1]:0"`, func(c *Config) bool { return c.HTTP.Listen == "[::1]:0" && c.Warnings() == nil }},
		{inHTTP, "listen: localhost:9180", func(c *Config) bool { return c.Warnings() == nil }},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			c, err := Parse("gw.yaml", []byte(fmt.Sprintf(tc.in, tc.line)))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Fatalf("not kept as written: %+v", c)
			}
		})
	}
}

// TestDefaultsWhenLeftOut: a key left out, or written without a value, takes its
// default; an explicit zero does not (TestRangesRefused).
func TestDefaultsWhenLeftOut(t *testing.T) {
	c, err := Parse("gw.yaml", []byte("health:\n  failures_before_critical:\n  poll_interval: ~\ndiscovery:\n  serial: [{name: b, device: /dev/x, baud: 9600}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := c.Health
	if h.FailuresBeforeCritical != 3 || h.PollInterval != 250*time.Millisecond || h.SuccessesBeforePassing != 2 || h.PublishBurst != 5 ||
		h.InstanceLease != 30*time.Second {
		t.Errorf("health defaults: %+v", h)
	}
	if b := c.Discovery.Serial[0]; b.Timeout != 200*time.Millisecond || !b.AdaptiveTimeout || b.Turnaround != 2*time.Millisecond || b.PollInterval != h.PollInterval ||
		b.ProbeShare != 0.2 || b.StopBits != 1 {
		t.Errorf("bus defaults: %+v", b)
	}
	for _, c := range []*Config{c, Default()} {
		if c.HTTP.MaxConnections != 256 || c.HTTP.MaxEventStreams != 64 {
			t.Errorf("http defaults: %+v", c.HTTP)
		}
		if w := c.Warnings(); w != nil {
			t.Errorf("warnings %q", w)
		}
	}
	c, err = Parse("gw.yaml", []byte("http: {listen: 127.0.0.1:9180, max_connections: 10, max_event_streams: 2}\n"))
	if err != nil || c.HTTP.MaxConnections != 10 || c.HTTP.MaxEventStreams != 2 {
		t.Fatalf("%+v %v", c, err)
	}
}

// TestHTTPListenWildcard: an explicit wildcard host is accepted with a warning that
// names the place, like the errors; Warnings returns a copy.
func TestHTTPListenWildcard(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:9180", "[::]:9180", "0.0.0.0:0"} {
		t.Run(addr, func(t *testing.T) {
			c, err := Parse("gw.yaml", []byte("gateway: {id: gw}\nhttp:\n  listen: \""+addr+"\"\n"))
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"gw.yaml:3:3: http.listen: " + addr + " listens on every interface: the HTTP API (catalog, events, dashboard, " +
				"metrics) has no authentication; keep it on loopback or behind a proxy or firewall unless every network it reaches may read the catalog"}
			if w := c.Warnings(); !slices.Equal(w, want) {
				t.Fatalf("warnings\n%q\nwant\n%q", w, want)
			}
			c.Warnings()[0] = "changed"
			if c.Warnings()[0] == "changed" {
				t.Error("Warnings returns the config's own slice")
			}
		})
	}
}

// TestSameDeviceSymlinks: two buses on one device are refused, also through symbolic
// links (relative, chained) and for paths that do not exist (compared cleaned); the
// message names both buses and the first one's line.
func TestSameDeviceSymlinks(t *testing.T) {
	dir := t.TempDir()
	tty, other := filepath.Join(dir, "tty"), filepath.Join(dir, "other")
	for _, f := range []string{tty, other} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link1, link2 := filepath.Join(dir, "link1"), filepath.Join(dir, "link2")
	if err := os.Symlink(tty, link1); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("link1", link2); err != nil { // relative, to a link
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(tty) // the temp dir may itself be behind a link
	if err != nil {
		t.Fatal(err)
	}
	bus := func(name, dev string) string { return fmt.Sprintf("    - name: %s\n      device: %q\n", name, dev) }
	text := "discovery:\n  serial:\n" + bus("bus1", tty) + bus("bus2", other) + bus("bus3", link1) + bus("bus4", link2)
	_, err = Parse("gw.yaml", []byte(text))
	rule := ": one RS-485 line takes one master (Modbus over Serial Line V1.02 §2.1); give each bus its own device"
	want := fmt.Sprintf("gw.yaml:8:7: discovery.serial[2].device: bus \"bus3\" and bus \"bus1\" (discovery.serial[0], line 4) both use device %s (written %q and %q)%s\n"+
		"gw.yaml:10:7: discovery.serial[3].device: bus \"bus4\" and bus \"bus1\" (discovery.serial[0], line 4) both use device %s (written %q and %q)%s",
		real, link1, tty, rule, real, link2, tty, rule)
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}

	if _, err := Parse("gw.yaml", []byte("discovery:\n  serial:\n"+bus("bus1", tty)+bus("bus2", other))); err != nil {
		t.Errorf("two devices: %v", err)
	}
	_, err = Parse("gw.yaml", []byte("discovery:\n  serial:\n"+bus("bus1", "/nonexistent-rollcall/ttyX")+bus("bus2", "/nonexistent-rollcall/./ttyX/")))
	want = `gw.yaml:6:7: discovery.serial[1].device: bus "bus2" and bus "bus1" (discovery.serial[0], line 4) both use device /nonexistent-rollcall/ttyX (written "/nonexistent-rollcall/./ttyX/" and "/nonexistent-rollcall/ttyX")` + rule
	if err == nil || err.Error() != want {
		t.Fatalf("paths that do not exist: got\n%v\nwant\n%s", err, want)
	}
}

// TestSizeLimit: a config over MaxConfigBytes is refused from its size alone — not
// read, so refusing even 5 MiB takes no memory and well under the 1 s budget — naming
// the file, its size and the limit; a config of exactly MaxConfigBytes loads.
func TestSizeLimit(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, genComments(5<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := Load(big)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	t.Logf("5 MiB config refused in %v, %d bytes allocated", took, after.TotalAlloc-before.TotalAlloc)
	want := big + ": the file is 5242880 bytes (5.0 MiB); a gateway config is at most 1048576 bytes (1.0 MiB) (is this the right file?)"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	var ye *yamlx.Error
	if !errors.As(err, &ye) || ye.File != big {
		t.Errorf("%T is not a *yamlx.Error naming the file", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 256<<10 {
		t.Errorf("refusing a 5 MiB file allocated %d bytes: it was read", n)
	}
	if took > time.Second {
		t.Errorf("refusing a 5 MiB file took %v, over the 1 s budget", took)
	}

	at := filepath.Join(dir, "at-limit.yaml")
	if err := os.WriteFile(at, genConfig(MaxConfigBytes), 0o644); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	c, err := Load(at)
	if err != nil {
		t.Fatalf("a config of MaxConfigBytes: %.500v", err)
	}
	t.Logf("config of %d bytes (%d buses) loaded in %v", MaxConfigBytes, len(c.Discovery.Serial), time.Since(start))

	over := filepath.Join(dir, "over.yaml")
	if err := os.WriteFile(over, genConfig(MaxConfigBytes+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(over); err == nil || !strings.Contains(err.Error(), "the file is 1048577 bytes (1.0 MiB); a gateway config is at most 1048576 bytes") {
		t.Errorf("one byte over: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "nope.yaml")); !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "config: ") {
		t.Errorf("missing file: %v", err)
	}
}

// TestParseLinear: the memory a parse allocates grows linearly with the size of the
// text, for every shape (it grew with the square of the keys of one mapping, and of
// merge chains): 8 × the text, at most 12 × the allocations. Allocation, unlike time,
// does not depend on what else the machine runs.
func TestParseLinear(t *testing.T) {
	const small = 64 << 10
	for _, s := range shapes {
		t.Run(s.name, func(t *testing.T) {
			alloc := func(size int) uint64 {
				data := s.gen(size)
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				_, err := Parse("gw.yaml", data)
				runtime.ReadMemStats(&after)
				if (err == nil) != s.valid {
					t.Fatalf("%d bytes: error %.300v", size, err)
				}
				return after.TotalAlloc - before.TotalAlloc
			}
			a, b := alloc(small), alloc(8*small)
			t.Logf("%d KiB: %d bytes allocated; %d KiB: %d (× %.1f)", small>>10, a, 8*small>>10, b, float64(b)/float64(a))
			if b > 12*a {
				t.Errorf("8 × the text allocated %.1f × the memory", float64(b)/float64(a))
			}
		})
	}
}

// TestEmbeddedLimits: the embedded broker's limits default when left out, are kept as
// written, and are refused out of range with the rule.
func TestEmbeddedLimits(t *testing.T) {
	cfg, err := Parse("gw.yaml", []byte("gateway: {id: gw}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if el := cfg.MQTT.EmbeddedLimits; el.MaxClients != 1024 || el.MaxPacketBytes != 256<<10 || el.MaxRetainedPerAccount != 4096 {
		t.Fatalf("defaults %+v", el)
	}
	cfg, err = Parse("gw.yaml", []byte("gateway: {id: gw}\nmqtt: {embedded_limits: {max_retained: 10, max_retained_bytes_per_account: 2048}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if el := cfg.MQTT.EmbeddedLimits; el.MaxRetained != 10 || el.MaxRetainedBytesPerAccount != 2048 {
		t.Fatalf("as written %+v", el)
	}
	_, err = Parse("gw.yaml", []byte("gateway: {id: gw}\nmqtt:\n  embedded_limits: {max_packet_bytes: 1000, max_clients: 0}\n"))
	for _, want := range []string{
		"gw.yaml:3:21: mqtt.embedded_limits.max_packet_bytes: expected an integer from 69632 to 16777216, got 1000: at least 69632 bytes (a signed record may be 64 KiB",
		"mqtt.embedded_limits.max_clients: expected an integer from 1 to 100000, got 0",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nlacks %q", err, want)
		}
	}
}

// TestAdaptiveTimeoutDefault: a bus without timeout gets adaptive timeouts; a timeout set
// makes it fixed, unless adaptive_timeout says otherwise (then timeout is the ceiling).
func TestAdaptiveTimeoutDefault(t *testing.T) {
	for _, c := range []struct {
		bus  string
		want bool
	}{
		{`{name: b, device: /dev/x, baud: 115200}`, true},
		{`{name: b, device: /dev/x, baud: 115200, timeout: 20ms}`, false},
		{`{name: b, device: /dev/x, baud: 115200, timeout: 20ms, adaptive_timeout: true}`, true},
		{`{name: b, device: /dev/x, baud: 115200, adaptive_timeout: false}`, false},
	} {
		cfg, err := Parse("gw.yaml", []byte("discovery:\n  serial: ["+c.bus+"]\n"))
		if err != nil {
			t.Fatalf("%s: %v", c.bus, err)
		}
		if got := cfg.Discovery.Serial[0].AdaptiveTimeout; got != c.want {
			t.Errorf("%s: adaptive_timeout %v, want %v", c.bus, got, c.want)
		}
	}
}
