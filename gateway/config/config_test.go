package config

import (
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
		"baud-type.bad.yml":     `testdata/baud-type.bad.yml:6: discovery.serial[0].baud: expected an integer, got str "fast"`,
		"unknown-key.bad.yml":   `testdata/unknown-key.bad.yml:6: discovery.serial[0].unit: unknown key "unit"`,
		"units-range.bad.yml":   `testdata/units-range.bad.yml:6: discovery.serial[0].units: unit IDs must be 1–247 in ascending ranges, got "0-300"`,
		"gateway-id.bad.yml":    `testdata/gateway-id.bad.yml:1: gateway.id: expected 1–64 characters [a-z0-9._-] (it is an MQTT topic level), got "Cell 2/gw"`,
		"dup-bus.bad.yml":       `testdata/dup-bus.bad.yml:4: discovery.serial[1].name: bus name "bus1" is already used by discovery.serial[0]`,
		"broker-scheme.bad.yml": `testdata/broker-scheme.bad.yml:2: mqtt.broker: unsupported URL scheme "http" (tcp, ssl, ws, wss)`,
		"duration.bad.yml":      `testdata/duration.bad.yml:2: health.poll_interval: expected a duration such as "250ms" or "30s", got str "soon"`,
		"parity.bad.yml":        `testdata/parity.bad.yml:3: discovery.serial[0].parity: expected "none", "even" or "odd", got "mark"`,
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
