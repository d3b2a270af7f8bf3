package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/gateway/httpapi"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// floodConfig polls four simulated drives and refreshes their records every second,
// so the event streams carry changes during the flood; HTTP on a free loopback port.
const floodConfig = `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-4"}]
health: {poll_interval: 50ms, refresh_interval: 1s}
http: {listen: "127.0.0.1:0"}
`

// floodEventRequest is an event-stream request, sent in full by a client that never
// reads the answer.
const floodEventRequest = "GET /v1/events HTTP/1.1\r\nHost: gw\r\nAccept: text/event-stream\r\n\r\n"

// floodSlowRequest is a slowloris request: 48 header fields of 256 bytes (12 KiB, within
// httpapi.DefaultMaxHeaderBytes), then one that never ends.
func floodSlowRequest() string {
	var b strings.Builder
	b.WriteString("GET /v1/catalog HTTP/1.1\r\nHost: gw\r\n")
	for i := range 48 {
		fmt.Fprintf(&b, "X-Pad-%02d: %s\r\n", i, strings.Repeat("p", 256-len("X-Pad-00: \r\n")))
	}
	b.WriteString("X-Slow: ")
	return b.String()
}

// TestHTTPFlood floods the real `rollcall gateway` process's HTTP API (built from this
// tree, run as a child) with event-stream clients that never read and slowloris
// connections, from this process over loopback. During the flood: event streams stay at
// the cap (httpapi.DefaultMaxEventStreams; the rollcall_http_event_clients gauge
// reaches it and never exceeds it), another event-stream request gets 503 with
// Retry-After and a JSON error, /v1/catalog still answers, the connections the child
// holds on its HTTP port reach httpapi.DefaultMaxConnections and no more, and its RSS
// grows by no more than the budget the caps imply. After the flood's connections close,
// within 10 s, the child's VmRSS is back within 10 MiB of its pre-flood value and has
// given back at least half of what the flood added (which the Go runtime does not do
// by itself: no garbage collection runs while the heap does not grow, and its
// background scavenger returns pages slowly).
//
// The child runs with the defaults httpapi applies by itself (the config sets no
// http.max_* key), so the caps it checks are those defaults.
func TestHTTPFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	const (
		eventClients = 1000 // event-stream clients that never read
		slowClients  = 300  // connections whose request header never ends
		maxConns     = httpapi.DefaultMaxConnections
		maxStreams   = httpapi.DefaultMaxEventStreams
		// rssSlack is how far above its pre-flood RSS the child may be once recovered.
		rssSlack = 10 << 20
		// recoverWithin is how long after the flood the child has to get there.
		recoverWithin = 10 * time.Second
		// floodBudget bounds the RSS growth during the flood: the memory bound httpapi
		// publishes for full caps (httpapi.FloodMemory), doubled for the garbage
		// collector's heap goal (GOGC=100 lets the heap reach twice the live data before
		// a cycle).
		floodBudget = int64(2 * httpapi.FloodMemory)
	)
	h := rig.New(t)
	h.StartSim(1, 2, 3, 4)
	bin := buildRollcall(t, h.Dir)
	cfgPath := filepath.Join(h.Dir, "gateway.yaml")
	cfg := fmt.Sprintf("gateway: {id: flood-gw, state_dir: %s}\nmqtt: {broker: embedded, embedded_listen: \"127.0.0.1:0\"}\n%s",
		filepath.Join(h.Dir, "state"), h.Expand(floodConfig))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs testutil.SyncBuffer
	cmd := exec.Command(bin, "gateway", "--config", cfgPath, "--log-format", "json")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})

	addr := testutil.EventuallyValue(t, 30*time.Second, "the HTTP address in the gateway's log", func() (string, bool) {
		return floodHTTPAddr(logs.String())
	})
	base := "http://" + addr
	testutil.EventuallyNil(t, 30*time.Second, "four instances in /v1/catalog", func() error {
		return floodCatalog(base, 4)
	})

	// Warm up what serving allocates once (handlers, encoders, a few streams), so the
	// baseline is a gateway that has served its API, not a fresh process.
	for range 10 {
		for _, p := range []string{"/", "/v1/catalog", "/metrics", "/v1/gateway"} {
			if code, _ := httpGet(t, base+p); code != 200 {
				t.Fatalf("warm-up GET %s: %d", p, code)
			}
		}
	}
	for range 4 {
		floodReadSnapshot(t, base)
	}
	testutil.Eventually(t, 10*time.Second, "no event-stream client left from the warm-up", func() bool {
		return scrape(t, base+"/metrics")["rollcall_http_event_clients"] == 0
	})
	rssBefore := floodRSS(t, pid)
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	t.Logf("before the flood: VmRSS %.1f MiB, %d HTTP connections", mib(rssBefore), floodConns(t, pid, port))

	// Sample the child's RSS and HTTP connections until the end of the test.
	smp := &floodSampler{pid: pid, port: port}
	sctx, stopSampler := context.WithCancel(context.Background())
	var swg sync.WaitGroup
	swg.Add(1)
	go func() { defer swg.Done(); smp.run(sctx, 20*time.Millisecond) }()
	defer func() { stopSampler(); swg.Wait() }() // idempotent

	// The flood, in two waves so that what it leaves open is known: the event-stream
	// clients, until all but the streams at the cap were answered 503 and closed; then
	// the slowloris connections, which fill the connection cap (newer ones evicting the
	// longest-waiting ones) until the header timeout. (Sent together, a slowloris
	// connection that finds every open connection busy answering the 503s is refused,
	// not admitted: the cap would fill only for a moment, or not at all.)
	floodStart := time.Now()
	conns := make([]net.Conn, 0, eventClients+slowClients)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	d := net.Dialer{Timeout: 10 * time.Second}
	dial := func(n int, req string) {
		for range n {
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("flood connection %d: %v", len(conns), err)
			}
			conns = append(conns, c)
			_, _ = io.WriteString(c, req) // the gateway may already have closed it (refused)
		}
	}
	dial(eventClients, floodEventRequest)
	// The stream cap: the flood fills it, and never more.
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%d event-stream clients (the cap)", maxStreams), func() bool {
		n := scrape(t, base+"/metrics")["rollcall_http_event_clients"]
		if n > maxStreams {
			t.Fatalf("%v event-stream clients: more than the cap of %d", n, maxStreams)
		}
		return n == maxStreams
	})
	testutil.EventuallyValue(t, 10*time.Second, "the event-stream clients beyond the cap closed", func() (int, bool) {
		n := floodConns(t, pid, port)
		return n, n == maxStreams
	})
	dial(slowClients, floodSlowRequest())
	t.Logf("flood: %d event-stream clients, then %d slowloris connections, opened in %v",
		eventClients, slowClients, time.Since(floodStart).Round(time.Millisecond))
	// The connection cap is full: its sockets are there to be counted. (Each probe below
	// takes the place of a slowloris connection, then closes.)
	testutil.Eventually(t, 5*time.Second, fmt.Sprintf("%d connections (the cap) open", maxConns), func() bool {
		_, conns := smp.peaks()
		return conns >= maxConns
	})
	// One more stream, from a client that reads: 503, Retry-After, a JSON error.
	resp, err := httpClient().Get(base + "/v1/events")
	if err != nil {
		t.Fatalf("GET /v1/events during the flood: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != 503 || err != nil || ra < 1 ||
		resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &e) != nil || e.Error == "" {
		t.Errorf("GET /v1/events beyond the cap: %d, Retry-After %q, Content-Type %q, body %q; want 503, Retry-After ≥ 1 s, a JSON error",
			resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), body)
	} else {
		t.Logf("GET /v1/events beyond the cap: 503, Retry-After %s, %s", resp.Header.Get("Retry-After"), strings.TrimSpace(string(body)))
	}
	// The catalog still answers, at once (httpClient's 10 s timeout; no retry).
	at := time.Now()
	if err := floodCatalog(base, 4); err != nil {
		t.Errorf("/v1/catalog during the flood: %v", err)
	}
	t.Logf("/v1/catalog during the flood answered in %v", time.Since(at).Round(time.Microsecond))
	if code, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz during the flood: %d", code)
	}

	// The flood ends.
	stopSampler()
	swg.Wait()
	peakRSS, peakConns := smp.peaks()
	for _, c := range conns {
		_ = c.Close()
	}
	conns = nil
	ended := time.Now()
	// Back within rssSlack of the start, and at least half the growth given back.
	want := min(rssBefore+rssSlack, peakRSS-(peakRSS-rssBefore)/2)
	rssAfter := testutil.EventuallyValue(t, recoverWithin,
		fmt.Sprintf("VmRSS at most %.1f MiB (before %.1f MiB, peak %.1f MiB)", mib(want), mib(rssBefore), mib(peakRSS)),
		func() (int64, bool) {
			rss := floodRSS(t, pid)
			return rss, rss <= want
		})
	recovered := time.Since(ended)
	t.Logf("VmRSS: before %.1f MiB, peak %.1f MiB (+%.1f), after %.1f MiB (+%.1f), %v after the flood closed",
		mib(rssBefore), mib(peakRSS), mib(peakRSS-rssBefore), mib(rssAfter), mib(rssAfter-rssBefore), recovered.Round(time.Millisecond))
	t.Logf("HTTP connections: peak %d (cap %d)", peakConns, maxConns)

	// At most maxConns HTTP connections at a time (+1: a connection accepted to be
	// refused, or to take an evicted one's place, is open for a moment beside the one
	// being closed).
	if peakConns > maxConns+1 {
		t.Errorf("peak %d HTTP connections: more than %d (the cap) + 1", peakConns, maxConns)
	}
	if growth := peakRSS - rssBefore; growth > floodBudget {
		t.Errorf("VmRSS grew by %.1f MiB during the flood; budget %.1f MiB", mib(growth), mib(floodBudget))
	}
	// Still serving, nothing left of the flood.
	if err := floodCatalog(base, 4); err != nil {
		t.Errorf("/v1/catalog after the flood: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "no event-stream client left", func() bool {
		return scrape(t, base+"/metrics")["rollcall_http_event_clients"] == 0
	})
	floodReadSnapshot(t, base)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("gateway exit after SIGTERM: %v", err)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// floodHTTPAddr finds the HTTP address in the JSON log line "gateway starting".
func floodHTTPAddr(log string) (string, bool) {
	for _, line := range strings.Split(log, "\n") {
		var l struct {
			Msg  string `json:"msg"`
			HTTP string `json:"http"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "gateway starting" && l.HTTP != "" {
			return l.HTTP, true
		}
	}
	return "", false
}

// floodCatalog checks that GET /v1/catalog answers 200 with n records.
func floodCatalog(base string, n int) error {
	resp, err := httpClient().Get(base + "/v1/catalog")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var recs []json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&recs); resp.StatusCode != 200 || err != nil || len(recs) != n {
		return fmt.Errorf("status %d, %d records (%v); want 200 and %d records", resp.StatusCode, len(recs), err, n)
	}
	return nil
}

// floodReadSnapshot opens /v1/events, reads its snapshot event and disconnects.
func floodReadSnapshot(t *testing.T, base string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/events", nil)
	resp, err := httpClient().Do(req)
	if err != nil {
		t.Fatalf("GET /v1/events: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/events: %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if sc.Text() == "event: snapshot" {
			return
		}
	}
	t.Fatalf("GET /v1/events: no snapshot event (%v)", sc.Err())
}

// floodRSS is the VmRSS of process pid in bytes (proc(5): /proc/<pid>/status, in kB).
func floodRSS(t *testing.T, pid int) int64 {
	t.Helper()
	rss, err := procRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return rss
}

func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) == 3 && f[0] == "VmRSS:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS line", pid)
}

// floodConns is the number of TCP connections process pid holds open on its local
// port: the sockets in its /proc/<pid>/fd (links "socket:[inode]") whose entry in
// /proc/<pid>/net/tcp or tcp6 has that local port and a state other than LISTEN
// (proc(5)). Sockets the process holds for anything else (the broker, its MQTT client)
// are not counted, nor a connection the kernel keeps after the process closed it.
func floodConns(t *testing.T, pid, port int) int {
	t.Helper()
	n, err := procConns(pid, port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func procConns(pid, port int) (int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	inodes := map[string]bool{}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	n := 0
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			f := strings.Fields(line)
			if len(f) < 10 || f[3] == "0A" || !inodes[f[9]] {
				continue
			}
			i := strings.LastIndexByte(f[1], ':')
			if p, err := strconv.ParseUint(f[1][i+1:], 16, 16); err == nil && int(p) == port {
				n++
			}
		}
	}
	return n, nil
}

// floodSampler records the peak RSS of a process and the peak number of connections it
// holds on its local port.
type floodSampler struct {
	pid, port int
	mu        sync.Mutex
	peakRSS   int64
	peakConns int
}

// run samples every period until ctx ends or the process is gone.
func (s *floodSampler) run(ctx context.Context, period time.Duration) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		rss, err1 := procRSS(s.pid)
		conns, err2 := procConns(s.pid, s.port)
		if err1 != nil || err2 != nil {
			return
		}
		s.mu.Lock()
		s.peakRSS, s.peakConns = max(s.peakRSS, rss), max(s.peakConns, conns)
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *floodSampler) peaks() (rss int64, conns int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peakRSS, s.peakConns
}
