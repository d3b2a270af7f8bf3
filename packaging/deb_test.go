package packaging

import (
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/internal/testutil"
)

// The Debian package (make deb; installed and started by deb/test.sh, make check-deb).
const (
	nfpmFile    = "deb/nfpm.yaml"
	debConfig   = "deb/gateway.yaml"
	versionTool = "deb/version.sh"
	unitFile    = "systemd/rollcall.service"
)

// nfpmConfig is the part of deb/nfpm.yaml the tests read.
type nfpmConfig struct {
	Name     string `yaml:"name"`
	Contents []struct {
		Src      string `yaml:"src"`
		Dst      string `yaml:"dst"`
		Type     string `yaml:"type"`
		FileInfo struct {
			Mode int `yaml:"mode"`
		} `yaml:"file_info"`
	} `yaml:"contents"`
	Scripts map[string]string `yaml:"scripts"`
}

// unitSettings returns the unit's Key=value lines (comments left out), values in order.
func unitSettings(t *testing.T) map[string][]string {
	t.Helper()
	src, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	kv := map[string][]string{}
	for _, line := range strings.Split(string(src), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			kv[k] = append(kv[k], v)
		}
	}
	return kv
}

// TestDebConfig: the conffile the package installs is fit to start as it is (rollcall
// check: no problem, no warning), on loopback only, with the unit's state directory.
func TestDebConfig(t *testing.T) {
	cfg, warnings, err := config.Check(debConfig)
	if err != nil {
		t.Fatalf("%s: %v", debConfig, err)
	}
	if len(warnings) > 0 {
		t.Errorf("%s: warnings: %q", debConfig, warnings)
	}
	unit := unitSettings(t)
	if want := unit["WorkingDirectory"]; len(want) != 1 || cfg.Gateway.StateDir != want[0] {
		t.Errorf("%s: gateway.state_dir %q, want the unit's WorkingDirectory %q", debConfig, cfg.Gateway.StateDir, want)
	}
	if !slices.Equal(unit["StateDirectory"], []string{"rollcall"}) || !slices.Contains(unit["ReadWritePaths"], cfg.Gateway.StateDir) {
		t.Errorf("%s: StateDirectory %q, ReadWritePaths %q: want rollcall and %s", unitFile, unit["StateDirectory"], unit["ReadWritePaths"], cfg.Gateway.StateDir)
	}
	if cfg.MQTT.Broker != "embedded" || len(cfg.Discovery.Serial) != 0 || len(cfg.Discovery.TCP) != 0 || cfg.Discovery.MDNS.Enabled {
		t.Errorf("%s: want the embedded broker and no discovery until the box's buses are added", debConfig)
	}
	// deb/test.sh moves these two to port 0: it replaces exactly these lines.
	for key, addr := range map[string]string{"mqtt.embedded_listen": cfg.MQTT.EmbeddedListen, "http.listen": cfg.HTTP.Listen} {
		if host, _, err := net.SplitHostPort(addr); err != nil || !net.ParseIP(host).IsLoopback() {
			t.Errorf("%s: %s %q, want a loopback address", debConfig, key, addr)
		}
	}
	src, err := os.ReadFile(debConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"  embedded_listen: 127.0.0.1:1883", "  listen: 127.0.0.1:9180"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(line) + `(\s|$)`).Match(src) {
			t.Errorf("%s: no line %q (deb/test.sh replaces it)", debConfig, line)
		}
	}
}

// TestDebContents: deb/nfpm.yaml installs the binary, the unit (which make deb makes from
// systemd/rollcall.service by replacing its one /usr/local/bin/rollcall), the conffile
// and the maintainer scripts, and every file it names exists.
func TestDebContents(t *testing.T) {
	var c nfpmConfig
	readYAML(t, nfpmFile, &c)
	if c.Name != "rollcall" {
		t.Errorf("%s: name %q", nfpmFile, c.Name)
	}
	dst := map[string]string{} // destination → type
	for _, f := range c.Contents {
		dst[f.Dst] = f.Type
		if f.Src == "" || strings.Contains(f.Src, "${") {
			continue // a directory, or a file make deb names (dist/)
		}
		if _, err := os.Stat("../" + f.Src); err != nil {
			t.Errorf("%s: %s: %v", nfpmFile, f.Dst, err)
		}
	}
	for path, typ := range map[string]string{
		"/usr/bin/rollcall":                    "",
		"/lib/systemd/system/rollcall.service": "",
		"/etc/rollcall":                        "dir",
		"/etc/rollcall/gateway.yaml":           "config|noreplace",
	} {
		if got, ok := dst[path]; !ok || got != typ {
			t.Errorf("%s: %s: type %q (listed: %v), want %q", nfpmFile, path, got, ok, typ)
		}
	}
	for _, s := range []string{"postinstall", "preremove", "postremove"} {
		path := c.Scripts[s]
		st, err := os.Stat("../" + path)
		if err != nil || st.Mode()&0o111 == 0 {
			t.Errorf("%s: scripts.%s %q: want an executable file (%v)", nfpmFile, s, path, err)
			continue
		}
		if out, err := exec.Command("sh", "-n", "../"+path).CombinedOutput(); err != nil {
			t.Errorf("%s: sh -n: %v\n%s", path, err, out)
		}
	}

	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(regexp.MustCompile(`(?m)^#.*\n`).ReplaceAllString(string(unit), ""), "/usr/local/bin/rollcall"); n != 1 {
		t.Errorf("%s: /usr/local/bin/rollcall %d times outside comments, want once (ExecStart; make deb makes it /usr/bin/rollcall)", unitFile, n)
	}
	if start := unitSettings(t)["ExecStart"]; len(start) != 1 || !strings.HasPrefix(start[0], "/usr/local/bin/rollcall gateway --config /etc/rollcall/gateway.yaml ") {
		t.Errorf("%s: ExecStart %q", unitFile, start)
	}
}

// TestDebVersion: deb/version.sh turns git describe's versions into Debian versions that
// dpkg accepts and orders as the releases were made.
func TestDebVersion(t *testing.T) {
	testutil.NeedTool(t, "sh", "dash")
	debVersion := func(v, commits string) string {
		t.Helper()
		out, err := exec.Command("sh", versionTool, v, commits).CombinedOutput()
		if err != nil {
			t.Fatalf("version.sh %s %s: %v\n%s", v, commits, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// In release order.
	cases := []struct{ in, commits, want string }{
		{"dev", "", "0.0.0~dev"},
		{"abd4390", "9", "0.0.0~git9.gabd4390"},
		{"abd4390-dirty", "9", "0.0.0~git9.gabd4390.dirty"},
		{"0c58b92", "12", "0.0.0~git12.g0c58b92"},
		{"v0.9.0", "20", "0.9.0"},
		{"v1.0.0-rc1", "30", "1.0.0~rc1"},
		{"v1.0.0-rc1-2-gdeadbee", "32", "1.0.0~rc1+2.gdeadbee"},
		{"v1.0.0-rc.2", "40", "1.0.0~rc.2"},
		{"v1.0.0", "50", "1.0.0"},
		{"v1.0.0-dirty", "50", "1.0.0+0.dirty"},
		{"v1.0.0-5-gabc1234", "55", "1.0.0+5.gabc1234"},
		{"v1.0.0-5-gabc1234-dirty", "55", "1.0.0+5.gabc1234.dirty"},
		{"v1.0.0-12-g0123abc", "62", "1.0.0+12.g0123abc"},
		{"v1.0.1", "63", "1.0.1"},
		{"v1.10.0_beta", "90", "1.10.0.beta"},
	}
	var got []string
	for _, c := range cases {
		v := debVersion(c.in, c.commits)
		if v != c.want {
			t.Errorf("version.sh %s %s = %s, want %s", c.in, c.commits, v, c.want)
		}
		got = append(got, v)
	}
	if out, err := exec.Command("sh", versionTool, "").CombinedOutput(); err == nil {
		t.Errorf("version.sh with an empty version: %s, want an error", out)
	}
	dpkg := testutil.NeedTool(t, "dpkg", "dpkg")
	for i := 1; i < len(got); i++ {
		if err := exec.Command(dpkg, "--compare-versions", got[i-1], "lt", got[i]).Run(); err != nil {
			t.Errorf("dpkg --compare-versions %s lt %s: %v", got[i-1], got[i], err)
		}
	}
	for _, v := range got {
		if out, err := exec.Command(dpkg, "--validate-version", v).CombinedOutput(); err != nil {
			t.Errorf("dpkg --validate-version %s: %v %s", v, err, out)
		}
	}
}
