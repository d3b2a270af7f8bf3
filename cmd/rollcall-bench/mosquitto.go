package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// mosquittoStartTimeout bounds how long startMosquitto waits for the broker to accept
// connections.
const mosquittoStartTimeout = 10 * time.Second

// mosquitto is one Mosquitto process on 127.0.0.1:port with its own config in a
// scratch directory (DESIGN.md, "Real components and how they start").
type mosquitto struct {
	port   int
	dir    string
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been waited for
}

// findMosquitto returns the mosquitto binary from PATH or /usr/sbin (where Debian puts
// it), or "".
func findMosquitto() string {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// startMosquitto starts Mosquitto on a free loopback port (listener PORT 127.0.0.1,
// anonymous, no persistence, TCP_NODELAY on client sockets so Nagle's algorithm adds no
// broker-side delay to the latencies measured, log file in dir) and waits until it has logged that it
// runs and accepts a TCP connection. It retries with another port when the picked one
// was taken meanwhile.
func startMosquitto(dir string) (*mosquitto, error) {
	bin := findMosquitto()
	if bin == "" {
		return nil, errors.New("mosquitto not installed (not in PATH, /usr/sbin or /usr/local/sbin): apt-get install -y mosquitto")
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("mosquitto: free port: %w", err)
		}
		m := &mosquitto{port: port, dir: filepath.Join(dir, fmt.Sprintf("mosquitto-%d", attempt)), exited: make(chan struct{})}
		if lastErr = m.start(bin); lastErr == nil {
			return m, nil
		}
	}
	return nil, lastErr
}

// URL is the broker URL tcp://127.0.0.1:PORT.
func (m *mosquitto) URL() string {
	return "tcp://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port))
}

// logPath is the broker's log file.
func (m *mosquitto) logPath() string { return filepath.Join(m.dir, "mosquitto.log") }

// start writes the config, starts bin and waits until the broker accepts connections.
func (m *mosquitto) start(bin string) error {
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return fmt.Errorf("mosquitto: %w", err)
	}
	var conf bytes.Buffer
	fmt.Fprintf(&conf, "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n", m.port)
	fmt.Fprintf(&conf, "log_dest file %s\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n", m.logPath())
	if os.Geteuid() == 0 {
		// As root mosquitto drops to user "mosquitto", which cannot write our log file.
		if u, err := user.Current(); err == nil {
			fmt.Fprintf(&conf, "user %s\n", u.Username)
		}
	}
	confPath := filepath.Join(m.dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("mosquitto: write config: %w", err)
	}
	out, err := os.Create(filepath.Join(m.dir, "mosquitto.out"))
	if err != nil {
		return fmt.Errorf("mosquitto: %w", err)
	}
	defer out.Close()
	m.cmd = exec.Command(bin, "-c", confPath)
	m.cmd.Stdout, m.cmd.Stderr = out, out
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("mosquitto: start %s: %w", bin, err)
	}
	go func() { // ends when the process exits; Stop waits for it
		_ = m.cmd.Wait()
		close(m.exited)
	}()
	deadline := time.Now().Add(mosquittoStartTimeout)
	for {
		if b, err := os.ReadFile(m.logPath()); err == nil && bytes.Contains(b, []byte(" running")) {
			if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port)), time.Second); err == nil {
				_ = c.Close()
				return nil
			}
		}
		select {
		case <-m.exited:
			b, _ := os.ReadFile(m.logPath())
			return fmt.Errorf("mosquitto exited during start; log: %s", bytes.TrimSpace(b))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.Stop()
			return fmt.Errorf("mosquitto did not accept connections on port %d within %v", m.port, mosquittoStartTimeout)
		}
	}
}

// Stop sends SIGTERM, waits up to 5 s, then kills, and waits for the process.
func (m *mosquitto) Stop() {
	if m == nil || m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
		return
	case <-time.After(5 * time.Second):
	}
	_ = m.cmd.Process.Kill()
	<-m.exited
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
