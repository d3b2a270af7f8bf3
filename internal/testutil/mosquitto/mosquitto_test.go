package mosquitto

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartStopRestart(t *testing.T) {
	m := Start(t)
	if !strings.HasPrefix(m.URL(), "tcp://127.0.0.1:") || m.Port() == 0 {
		t.Fatalf("URL %q, port %d", m.URL(), m.Port())
	}
	c, err := net.DialTimeout("tcp", m.Addr(), time.Second)
	if err != nil {
		t.Fatalf("dial running broker: %v", err)
	}
	_ = c.Close()

	m.Stop()
	if c, err := net.DialTimeout("tcp", m.Addr(), time.Second); err == nil {
		_ = c.Close()
		t.Fatal("broker still accepts after Stop")
	}
	m.Stop() // idempotent

	port := m.Port()
	m.Restart()
	if m.Port() != port {
		t.Fatalf("port changed across Restart: %d → %d", port, m.Port())
	}
	c, err = net.DialTimeout("tcp", m.Addr(), time.Second)
	if err != nil {
		t.Fatalf("dial restarted broker: %v", err)
	}
	_ = c.Close()

	m.Kill()
	m.Restart() // from killed
}

func TestTwoBrokers(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Port() == b.Port() {
		t.Fatalf("two brokers on one port %d", a.Port())
	}
}

// TestLaunch: the broker of programs (no *testing.T): up when Launch returns, with its
// config (TCP_NODELAY included) and log in the given directory; RestartErr brings it
// back on the same port; Stop ends it.
func TestLaunch(t *testing.T) {
	if Find() == "" {
		t.Skip(ErrNotInstalled.Error())
	}
	if _, err := Launch(Options{}); err == nil {
		t.Fatal("Launch without Dir succeeded")
	}
	dir := t.TempDir()
	m, err := Launch(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	if m.LogPath() != filepath.Join(dir, "mosquitto.log") {
		t.Errorf("log %s, want in %s", m.LogPath(), dir)
	}
	conf, err := os.ReadFile(filepath.Join(dir, "mosquitto.conf"))
	if err != nil || !strings.Contains(string(conf), "set_tcp_nodelay true\n") {
		t.Errorf("config %q (%v): want set_tcp_nodelay", conf, err)
	}
	dial := func() error {
		c, err := net.DialTimeout("tcp", m.Addr(), time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("dial launched broker: %v", err)
	}
	port := m.Port()
	if err := m.RestartErr(); err != nil || m.Port() != port {
		t.Fatalf("RestartErr: %v, port %d → %d", err, port, m.Port())
	}
	if err := dial(); err != nil {
		t.Fatalf("dial restarted broker: %v", err)
	}
	m.Stop()
	if err := dial(); err == nil {
		t.Fatal("broker still accepts after Stop")
	}
}
