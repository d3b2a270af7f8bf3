package mosquitto

import (
	"net"
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
