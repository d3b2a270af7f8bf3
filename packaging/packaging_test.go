package packaging

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

const (
	rulesFile     = "prometheus/rollcall.rules.yml"
	dashboardFile = "grafana/rollcall.json"
	metricsDir    = "../gateway/metrics"
)

var (
	// stringRE matches PromQL string literals (label values), left out of the search.
	stringRE = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	// identRE matches PromQL identifiers: metric, label and function names, and recorded
	// names (with colons).
	identRE = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	// nameRE is a rollcall metric name as the expressions must spell it.
	nameRE = regexp.MustCompile(`^rollcall_[a-z0-9_]+$`)
	// literalRE is a metric name as a Go string literal in gateway/metrics.
	literalRE = regexp.MustCompile(`"(rollcall_[a-z0-9_]+)"`)
	// seriesSuffixRE is what Prometheus appends to a histogram's or summary's name.
	seriesSuffixRE = regexp.MustCompile(`_(bucket|count|sum)$`)
)

// rules is the part of a Prometheus rule file the test reads.
type rules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// definedMetrics returns the rollcall_ names given as string literals in the non-test Go
// files under gateway/metrics: the metric definitions.
func definedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	defined := map[string]bool{}
	err := filepath.WalkDir(metricsDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range literalRE.FindAllSubmatch(src, -1) {
			defined[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(defined) < 20 {
		t.Fatalf("only %d metric names found in %s: %v", len(defined), metricsDir, defined)
	}
	return defined
}

// usedNames returns the rollcall_ metric names and the recorded names (with a colon) an
// expression uses, string literals left out.
func usedNames(expr string) (metrics, recorded []string) {
	for _, id := range identRE.FindAllString(stringRE.ReplaceAllString(expr, `""`), -1) {
		switch {
		case strings.Contains(id, ":"):
			recorded = append(recorded, id)
		case strings.HasPrefix(id, "rollcall_"):
			metrics = append(metrics, id)
		}
	}
	return metrics, recorded
}

// undefined returns a problem for every name expr uses that is neither a metric of
// gateway/metrics (a histogram's _bucket, _count and _sum series count as its name) nor
// a name recorded by the rules, and how many names it uses.
func undefined(expr string, defined, recorded map[string]bool) (problems []string, uses int) {
	metrics, rec := usedNames(expr)
	for _, name := range metrics {
		switch {
		case !nameRE.MatchString(name):
			problems = append(problems, fmt.Sprintf("%q is not a valid rollcall metric name", name))
		case !defined[name] && !defined[seriesSuffixRE.ReplaceAllString(name, "")]:
			problems = append(problems, fmt.Sprintf("metric %s is not defined in %s", name, metricsDir))
		}
	}
	for _, name := range rec {
		if !recorded[name] {
			problems = append(problems, fmt.Sprintf("%s is not recorded by %s", name, rulesFile))
		}
	}
	return problems, len(metrics) + len(rec)
}

func checkExpr(t *testing.T, where, expr string, defined, recorded map[string]bool) int {
	t.Helper()
	problems, uses := undefined(expr, defined, recorded)
	for _, p := range problems {
		t.Errorf("%s: %s (in %q)", where, p, expr)
	}
	return uses
}

// readYAML decodes the YAML file path into v; the test fails at once on an error.
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(src, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func loadRules(t *testing.T) rules {
	t.Helper()
	var r rules
	readYAML(t, rulesFile, &r)
	if len(r.Groups) == 0 {
		t.Fatalf("%s: no rule groups", rulesFile)
	}
	return r
}

func recordedNames(r rules) map[string]bool {
	recorded := map[string]bool{}
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			if rule.Record != "" {
				recorded[rule.Record] = true
			}
		}
	}
	return recorded
}

// TestRules checks that the rules' expressions use defined metrics, and that every alert
// has a wait, a severity and annotations naming its labels.
func TestRules(t *testing.T) {
	defined := definedMetrics(t)
	r := loadRules(t)
	recorded := recordedNames(r)
	var alerts []string
	uses := 0
	for _, g := range r.Groups {
		for i, rule := range g.Rules {
			where := rule.Alert + rule.Record
			if where == "" {
				where = g.Name + "[" + strconv.Itoa(i) + "]"
			}
			if strings.TrimSpace(rule.Expr) == "" {
				t.Errorf("%s: %s: no expr", rulesFile, where)
			}
			uses += checkExpr(t, rulesFile+": "+where, rule.Expr, defined, recorded)
			if rule.Alert == "" {
				continue
			}
			alerts = append(alerts, rule.Alert)
			if rule.For == "" {
				t.Errorf("%s: %s: no for:", rulesFile, where)
			}
			if s := rule.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: %s: severity %q, want critical or warning", rulesFile, where, s)
			}
			for _, a := range []string{"summary", "description"} {
				if !strings.Contains(rule.Annotations[a], "{{ $labels.") {
					t.Errorf("%s: %s: annotation %s does not name the alert's labels: %q", rulesFile, where, a, rule.Annotations[a])
				}
			}
		}
	}
	if uses == 0 {
		t.Fatalf("%s: no metric name found in the expressions", rulesFile)
	}
	for _, want := range []string{"RollcallBusDown", "RollcallInstanceCritical", "RollcallDetectionOverBudget",
		"RollcallPublicationFailures", "RollcallBrokerDisconnected", "RollcallGatewayDown"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("%s: no alert %s (have %v)", rulesFile, want, alerts)
		}
	}
}

// dashboardQueries walks the dashboard's JSON and adds to out every query, by the path
// it was found at: panel targets (expr) and template variables (definition, query).
func dashboardQueries(v any, path string, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			p := path + "." + k
			if s, ok := x.(string); ok && (k == "expr" || k == "definition" || k == "query" && strings.HasPrefix(path, ".templating")) {
				out[p] = s
				continue
			}
			dashboardQueries(x, p, out)
		}
	case []any:
		for i, x := range v {
			dashboardQueries(x, path+"["+strconv.Itoa(i)+"]", out)
		}
	}
}

// TestDashboard checks the Grafana dashboard: valid JSON, its datasource input and
// variables, unique panel ids, and that every query uses defined metric names.
func TestDashboard(t *testing.T) {
	defined := definedMetrics(t)
	recorded := recordedNames(loadRules(t))
	src, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Inputs []struct {
			Name     string `json:"name"`
			Type     string `json:"type"`
			PluginID string `json:"pluginId"`
		} `json:"__inputs"`
		SchemaVersion int `json:"schemaVersion"`
		Panels        []struct {
			ID         int            `json:"id"`
			Type       string         `json:"type"`
			Title      string         `json:"title"`
			Datasource map[string]any `json:"datasource"`
			Targets    []struct {
				Expr       string         `json:"expr"`
				Datasource map[string]any `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(src, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.SchemaVersion != 39 {
		t.Errorf("%s: schemaVersion %d, want 39", dashboardFile, d.SchemaVersion)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].Type != "datasource" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("%s: __inputs %+v, want the Prometheus datasource DS_PROMETHEUS", dashboardFile, d.Inputs)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type + " " + v.Definition
	}
	for name, want := range map[string]string{
		"DS_PROMETHEUS": "datasource ",
		"gateway":       "query label_values(rollcall_gateway_info, gateway)",
		"master":        "query label_values(rollcall_polls_total",
	} {
		if !strings.HasPrefix(vars[name], want) {
			t.Errorf("%s: variable %s: %q, want %q…", dashboardFile, name, vars[name], want)
		}
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("%s: panel %q: id %d used twice", dashboardFile, p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q: no targets", dashboardFile, p.Title)
		}
		if p.Datasource["uid"] != "${DS_PROMETHEUS}" {
			t.Errorf("%s: panel %q: datasource %v, want uid ${DS_PROMETHEUS}", dashboardFile, p.Title, p.Datasource)
		}
		for _, tg := range p.Targets {
			if tg.Datasource["uid"] != "${DS_PROMETHEUS}" || strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s: panel %q: target %+v: want an expr on datasource ${DS_PROMETHEUS}", dashboardFile, p.Title, tg)
			}
		}
	}

	var doc any
	if err := json.Unmarshal(src, &doc); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	queries := map[string]string{}
	dashboardQueries(doc, "", queries)
	uses := 0
	for path, q := range queries {
		uses += checkExpr(t, dashboardFile+": "+path, q, defined, recorded)
	}
	if uses < 20 {
		t.Fatalf("%s: only %d metric names found in %d queries", dashboardFile, uses, len(queries))
	}
}

// TestUndefined pins the extraction and the check: histogram series, recorded names,
// string literals, unknown and misspelt names.
func TestUndefined(t *testing.T) {
	m, r := usedNames(`histogram_quantile(0.9, sum by (le) (rate(rollcall_poll_round_trip_seconds_bucket{master=~"$master", x="rollcall_y"}[5m])))` +
		` / instance_master_outcome:rollcall_polls:rate5m`)
	if !slices.Equal(m, []string{"rollcall_poll_round_trip_seconds_bucket"}) ||
		!slices.Equal(r, []string{"instance_master_outcome:rollcall_polls:rate5m"}) {
		t.Errorf("usedNames: %v, %v", m, r)
	}
	defined := map[string]bool{"rollcall_poll_round_trip_seconds": true, "rollcall_bus_up": true}
	recorded := map[string]bool{"instance_master_outcome:rollcall_polls:rate5m": true}
	for expr, want := range map[string]int{
		`rollcall_poll_round_trip_seconds_count / rollcall_poll_round_trip_seconds_sum`:            0,
		`instance_master_outcome:rollcall_polls:rate5m > 0 and rollcall_bus_up{x="rollcall_nope"}`: 0,
		`rollcall_bus_up_total + rollcall_nope_bucket`:                                             2,
		`rollcall_Bus_up + job:rollcall_nope:rate5m`:                                               2,
	} {
		if p, _ := undefined(expr, defined, recorded); len(p) != want {
			t.Errorf("undefined(%q) = %q, want %d problems", expr, p, want)
		}
	}
}
