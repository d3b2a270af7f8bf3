package config

import (
	"strings"
	"testing"
)

// TestMetricsPerUnit: metrics.per_unit takes auto (the default), true or false, written
// as YAML booleans or strings; anything else is refused with its position.
func TestMetricsPerUnit(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"gateway: {id: gw}\n", "auto"},
		{"metrics: {per_unit: auto}\n", "auto"},
		{"metrics: {per_unit: true}\n", "true"},
		{"metrics: {per_unit: false}\n", "false"},
		{"metrics: {per_unit: \"false\"}\n", "false"},
	} {
		cfg, err := Parse("m.yml", []byte(c.yaml))
		if err != nil {
			t.Errorf("%q: %v", c.yaml, err)
			continue
		}
		if cfg.Metrics.PerUnit != c.want {
			t.Errorf("%q: per_unit %q, want %q", c.yaml, cfg.Metrics.PerUnit, c.want)
		}
	}
	if Default().Metrics.PerUnit != "auto" {
		t.Errorf("default per_unit %q, want auto", Default().Metrics.PerUnit)
	}
	for _, bad := range []string{"metrics: {per_unit: sometimes}\n", "metrics: {per_unit: \"\"}\n", "metrics: {per_unit: 1}\n"} {
		_, err := Parse("m.yml", []byte(bad))
		if err == nil || !strings.Contains(err.Error(), "m.yml:1:") || !strings.Contains(err.Error(), "metrics.per_unit: expected auto, true or false") {
			t.Errorf("%q: err = %v, want a metrics.per_unit error with its position", bad, err)
		}
	}
}
