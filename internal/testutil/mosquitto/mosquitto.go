// Package mosquitto starts a real Mosquitto broker (Debian's) on a free loopback port
// with its own config file: for tests (Start, StartPersistent, StartSecure, which fail
// or skip the test) and for programs such as cmd/rollcall-bench (Launch, which returns
// errors and needs no *testing.T).
package mosquitto

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
	"sync"
	"syscall"
	"testing"
	"time"
)

// StartTimeout bounds how long Start and Restart wait for the broker to accept TCP
// connections.
const StartTimeout = 10 * time.Second

// stopTimeout is how long Stop waits after SIGTERM before it sends SIGKILL.
const stopTimeout = 5 * time.Second

// Error is an error of this package, comparable with errors.Is.
type Error string

// Error returns the message.
func (e Error) Error() string { return string(e) }

// ErrNotInstalled is returned by Launch when no mosquitto binary is found (see Find).
const ErrNotInstalled Error = "mosquitto not found in PATH, /usr/sbin or /usr/local/sbin (apt-get install -y mosquitto)"

// Mosquitto is one broker process listening on 127.0.0.1:Port(), with persistence off
// and anonymous access unless started otherwise. Its methods are safe for concurrent
// use. Restart fails the test (t.Fatal) on errors; a broker from Launch has no test and
// uses RestartErr instead.
type Mosquitto struct {
	t        testing.TB // nil for a broker from Launch
	bin      string
	dir      string
	confPath string
	logPath  string
	port     int
	persist  bool    // retained messages survive Stop/Restart (saved to dir)
	secure   *Secure // TLS listener, password file and ACL instead of anonymous TCP

	mu   sync.Mutex
	proc *process // nil while stopped
}

// process is one run of the broker.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once Wait returned
	err    error         // Wait's result, valid after exited
}

// Find returns the path of the mosquitto binary: from PATH, else /usr/sbin/mosquitto
// (Debian installs it there, often outside a user's PATH). It returns "" if neither
// exists.
func Find() string {
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

// Start starts Mosquitto on a free loopback port with a config file written to
// t.TempDir() (listener PORT 127.0.0.1, allow_anonymous true, persistence false,
// set_tcp_nodelay true, log to mosquitto.log in that directory), waits until it accepts
// a TCP connection (at most StartTimeout) and stops it in t.Cleanup, where its log is
// printed if the test failed.
// Without the binary the test is skipped, or failed when CI=true.
func Start(t testing.TB) *Mosquitto {
	t.Helper()
	return start(t, false, nil)
}

// StartPersistent is Start with persistence on (the database in the test's temporary
// directory): retained messages survive Stop and Restart, as on a production broker,
// so a test can check that a gateway clears what went stale during an outage.
func StartPersistent(t testing.TB) *Mosquitto {
	t.Helper()
	return start(t, true, nil)
}

// Secure configures StartSecure: a TLS listener (certificates in PEM files) with
// password authentication and an ACL file, as a plant broker would run.
type Secure struct {
	CAFile, CertFile, KeyFile string // server certificate and the CA that signed clients
	RequireClientCert         bool   // require_certificate true
	PasswordFile              string // mosquitto_passwd format (see PasswordFile helper)
	ACLFile                   string // mosquitto acl_file
}

// StartSecure is Start with a TLS listener, no anonymous access, a password file and an
// ACL (mosquitto.conf: cafile, certfile, keyfile, password_file, acl_file); the log
// includes debug lines so a test can find "Denied PUBLISH". URL returns ssl://….
func StartSecure(t testing.TB, sec Secure) *Mosquitto {
	t.Helper()
	m := start(t, false, &sec)
	return m
}

// PasswordFile writes a mosquitto password file for the given users (user → password)
// with mosquitto_passwd, into the test's temporary directory, and returns its path.
func PasswordFile(t testing.TB, users map[string]string) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mosquitto_passwd not found (apt-get install -y mosquitto); required when CI=true")
		}
		t.Skip("mosquitto_passwd not found")
	}
	path := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for u, p := range users {
		if out, err := exec.Command(bin, "-b", path, u, p).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
		}
	}
	return path
}

// Options configure Launch.
type Options struct {
	// Dir holds the broker's config file, log (mosquitto.log) and, when Persistent, its
	// database. Required; it must exist. The caller removes it.
	Dir string
	// Persistent keeps retained messages across Stop and Restart (see StartPersistent).
	Persistent bool
	// Secure, when set, gives a TLS listener with passwords and an ACL (see StartSecure).
	Secure *Secure
}

// Launch starts Mosquitto without a test, for programs such as cmd/rollcall-bench: the
// same broker as Start (or StartPersistent, StartSecure, per o), listening on a free
// loopback port, up and accepting TCP connections when Launch returns (at most
// StartTimeout). It returns ErrNotInstalled without the binary. The caller stops it with
// Stop.
func Launch(o Options) (*Mosquitto, error) {
	bin := Find()
	if bin == "" {
		return nil, ErrNotInstalled
	}
	if o.Dir == "" {
		return nil, errors.New("mosquitto: Options.Dir is required")
	}
	m := &Mosquitto{bin: bin, dir: o.Dir, logPath: filepath.Join(o.Dir, "mosquitto.log"), persist: o.Persistent, secure: o.Secure}
	if err := m.launch(); err != nil {
		return nil, err
	}
	return m, nil
}

func start(t testing.TB, persist bool, sec ...*Secure) *Mosquitto {
	t.Helper()
	bin := Find()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(ErrNotInstalled.Error() + "; required when CI=true")
		}
		t.Skip(ErrNotInstalled.Error())
	}
	dir := t.TempDir()
	m := &Mosquitto{t: t, bin: bin, dir: dir, logPath: filepath.Join(dir, "mosquitto.log"), persist: persist}
	if len(sec) > 0 {
		m.secure = sec[0]
	}
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(m.logPath); err == nil {
				t.Logf("mosquitto log (%s):\n%s", m.logPath, b)
			}
		}
	})
	if err := m.launch(); err != nil {
		t.Fatal(err)
	}
	return m
}

// launch picks a free port, writes the config and starts the broker, with another port
// if the picked one was taken before mosquitto bound it (up to 3 attempts).
func (m *Mosquitto) launch() error {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return fmt.Errorf("mosquitto: pick a free port: %w", err)
		}
		m.port = port
		if err := m.writeConfig(); err != nil {
			return fmt.Errorf("mosquitto: %w", err)
		}
		m.mu.Lock()
		lastErr = m.startLocked()
		m.mu.Unlock()
		if lastErr == nil {
			return nil
		}
	}
	return fmt.Errorf("mosquitto: %w", lastErr)
}

// URL returns the broker URL, tcp://127.0.0.1:PORT.
func (m *Mosquitto) URL() string {
	if m.secure != nil {
		return "ssl://" + m.Addr()
	}
	return "tcp://" + m.Addr()
}

// Addr returns the listen address, 127.0.0.1:PORT.
func (m *Mosquitto) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port)) }

// Port returns the TCP port; it stays the same across Restart.
func (m *Mosquitto) Port() int { return m.port }

// LogPath returns the path of the broker's log file.
func (m *Mosquitto) LogPath() string { return m.logPath }

// PersistenceFile is the path of the broker's persistence database (mosquitto.db in
// its directory); it exists once a persistent broker has saved (autosave every 1 s, and
// on Stop). A test may copy it aside and put it back while the broker is stopped, to
// bring the broker back with old state.
func (m *Mosquitto) PersistenceFile() string { return filepath.Join(m.dir, "mosquitto.db") }

// Stop terminates the broker (SIGTERM, then SIGKILL after 5 s) and waits for the
// process to exit. Clients see their connection closed; retained messages are lost
// (persistence is off). Stopping a stopped broker does nothing.
func (m *Mosquitto) Stop() { m.stop(syscall.SIGTERM) }

// Kill ends the broker with SIGKILL (a crash) and waits for the process to exit.
func (m *Mosquitto) Kill() { m.stop(syscall.SIGKILL) }

// Restart stops the broker if it runs and starts it again on the same port, waiting
// until it accepts connections; it fails the test if the broker does not come back. It
// is for brokers started by a test: on one from Launch, use RestartErr.
func (m *Mosquitto) Restart() {
	if m.t == nil {
		panic("mosquitto: Restart of a broker without a test (from Launch): use RestartErr")
	}
	m.t.Helper()
	if err := m.RestartErr(); err != nil {
		m.t.Fatal(err)
	}
}

// RestartErr is Restart returning its error instead of failing a test.
func (m *Mosquitto) RestartErr() error {
	m.Stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.startLocked(); err != nil {
		return fmt.Errorf("mosquitto: restart on port %d: %w", m.port, err)
	}
	return nil
}

func (m *Mosquitto) stop(sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.proc
	if p == nil {
		return
	}
	m.proc = nil
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

func (m *Mosquitto) writeConfig() error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "listener %d 127.0.0.1\n", m.port)
	if sec := m.secure; sec != nil {
		fmt.Fprintf(&b, "cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate %v\n", sec.CAFile, sec.CertFile, sec.KeyFile, sec.RequireClientCert)
		fmt.Fprintf(&b, "allow_anonymous false\npassword_file %s\nacl_file %s\nlog_type debug\n", sec.PasswordFile, sec.ACLFile)
	} else {
		b.WriteString("allow_anonymous true\n")
	}
	// No Nagle delay on client sockets: latencies measured through the broker (the
	// bench's propagation figures, tests' timings) are the broker's, not TCP's.
	b.WriteString("set_tcp_nodelay true\n")
	if m.persist {
		fmt.Fprintf(&b, "persistence true\npersistence_location %s/\nautosave_interval 1\n", m.dir)
	} else {
		b.WriteString("persistence false\n")
	}
	fmt.Fprintf(&b, "log_dest file %s\n", m.logPath)
	b.WriteString("log_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
	b.WriteString("connection_messages true\nlog_timestamp true\nlog_timestamp_format %H:%M:%S\n")
	if os.Geteuid() == 0 {
		// As root, mosquitto switches to user "mosquitto", which cannot write the log
		// file in our temporary directory: stay the current user.
		if u, err := user.Current(); err == nil {
			fmt.Fprintf(&b, "user %s\n", u.Username)
		}
	}
	m.confPath = filepath.Join(m.dir, "mosquitto.conf")
	if err := os.WriteFile(m.confPath, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// startLocked starts the process and waits until it accepts connections; m.mu held.
func (m *Mosquitto) startLocked() error {
	out, err := os.OpenFile(filepath.Join(m.dir, "mosquitto.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer out.Close() // the child has its own descriptor
	cmd := exec.Command(m.bin, "-c", m.confPath)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", m.bin, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() { // ends when the process exits; Stop waits for it
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if err := m.waitReady(p); err != nil {
		_ = cmd.Process.Kill()
		<-p.exited
		return err
	}
	m.proc = p
	return nil
}

// waitReady polls until the broker logged that it runs and accepts a TCP connection,
// or the process exited, or StartTimeout passed.
func (m *Mosquitto) waitReady(p *process) error {
	deadline := time.NewTimer(StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		// The log line proves that this process bound the port (and not some other
		// process that grabbed the "free" port); the dial proves it accepts.
		if running, err := m.loggedRunning(); err == nil && running {
			if c, err := net.DialTimeout("tcp", m.Addr(), time.Second); err == nil {
				_ = c.Close()
				return nil
			}
		}
		select {
		case <-p.exited:
			b, _ := os.ReadFile(m.logPath)
			o, _ := os.ReadFile(filepath.Join(m.dir, "mosquitto.out"))
			return fmt.Errorf("mosquitto exited during start (%v); log:\n%s%s", p.err, b, o)
		case <-deadline.C:
			return errors.New("mosquitto did not accept connections within " + StartTimeout.String())
		case <-tick.C:
		}
	}
}

// loggedRunning reports whether the log's last start says "mosquitto version … running".
func (m *Mosquitto) loggedRunning() (bool, error) {
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		return false, err
	}
	// The log is appended to across restarts: look after the last "starting" line.
	if i := bytes.LastIndex(b, []byte(" starting")); i >= 0 {
		b = b[i:]
	}
	return bytes.Contains(b, []byte(" running")), nil
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
