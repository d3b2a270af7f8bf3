package gateway

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/gateway/config"
)

// TestReloadKeys: every reloadable key is a key of the config, and fixedChanges names
// exactly the other keys that differ (a list as a whole, an empty list as an absent
// one), in the order of the config.
func TestReloadKeys(t *testing.T) {
	keys := map[string]bool{}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || tag == "" || tag == "-" {
				continue
			}
			key := strings.TrimPrefix(prefix+"."+tag, ".")
			keys[key] = true
			if f.Type.Kind() == reflect.Struct {
				walk(key, f.Type)
			}
		}
	}
	walk("", reflect.TypeFor[config.Config]())
	for k := range reloadableKeys {
		if !keys[k] {
			t.Errorf("reloadable key %q is not a config key", k)
		}
	}

	cur, next := config.Default(), config.Default()
	next.MQTT.Broker = "tcp://10.0.0.1:1883"
	next.MQTT.EmbeddedAuth.Users = []config.EmbeddedUser{{Username: "u", PasswordEnv: "PW"}}
	next.HTTP.Listen = "127.0.0.1:9999"
	next.Health.FailuresBeforeCritical++
	next.Health.PollInterval = time.Second                     // reloadable
	next.Discovery.Serial = []config.SerialBus{{Name: "bus1"}} // reloadable
	next.Discovery.MDNS.InstancePatterns = []string{"^a"}      // reloadable
	next.Discovery.MDNS.Interfaces = []string{}                // empty as absent
	want := []string{"mqtt.broker", "mqtt.embedded_auth.users", "health.failures_before_critical", "http.listen"}
	if got := fixedChanges(cur, next); !slices.Equal(got, want) {
		t.Errorf("fixedChanges = %q, want %q", got, want)
	}
	eff := withReloadable(cur, next)
	if eff.MQTT.Broker != cur.MQTT.Broker || eff.Health.FailuresBeforeCritical != cur.Health.FailuresBeforeCritical ||
		eff.Health.PollInterval != time.Second || len(eff.Discovery.Serial) != 1 || len(eff.Discovery.MDNS.InstancePatterns) != 1 {
		t.Errorf("config in force after the reload: %+v", eff)
	}
	if got := fixedChanges(cur, eff); len(got) != 0 {
		t.Errorf("the config in force differs from the start config in fixed keys %q", got)
	}
}

// TestReloadSameUnits: a bus or target whose units are written another way ("1-3" as
// "1,2,3") sweeps the same units: not a change that restarts its master.
func TestReloadSameUnits(t *testing.T) {
	parse := func(units string) *config.Config {
		t.Helper()
		cfg, err := config.Parse("gw.yaml", []byte("discovery:\n  serial: [{name: bus1, device: /dev/null, units: \""+units+
			"\"}]\n  tcp: [{name: t1, address: \"127.0.0.1:502\", units: \""+units+"\"}]\n"))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	a, b, c := parse("1-3"), parse("1,2,3"), parse("1-2")
	if !sameBus(a.Discovery.Serial[0], b.Discovery.Serial[0]) || !sameTarget(a.Discovery.TCP[0], b.Discovery.TCP[0]) {
		t.Error(`units "1-3" and "1,2,3" taken as a change`)
	}
	if sameBus(a.Discovery.Serial[0], c.Discovery.Serial[0]) || sameTarget(a.Discovery.TCP[0], c.Discovery.TCP[0]) {
		t.Error(`units "1-3" and "1-2" taken as the same`)
	}
}
