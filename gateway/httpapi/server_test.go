package httpapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/registry"
)

// serve runs the server of NewServer for o on a loopback port until the test ends,
// with free as the Listener's memory release (debug.FreeOSMemory when nil) and every
// as its least interval. It returns the address and the Listener.
func serve(t *testing.T, o Options, every time.Duration, free func()) (string, *Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o = o.withDefaults()
	var l *Listener
	var srv *http.Server
	if free == nil {
		srv, l = NewServer(o, ln)
	} else {
		l = newListener(ln, o.MaxConnections, every, free)
		srv = httpServer(o, l)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.Addr().String(), l
}

// client has no keep-alive, so no idle connection outlives a test (goleak).
func client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

// dial opens a raw connection and writes req on it; it is closed when the test ends.
func dial(t *testing.T, addr, req string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if req != "" {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// slowloris is a request header that never ends.
const slowloris = "GET /v1/catalog HTTP/1.1\r\nHost: gw\r\nX-Slow: "

// closedByPeer waits (up to 10 s) for the peer to close c and reports how long it took;
// it fails the test if c is still open or data arrives.
func closedByPeer(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(10 * time.Second))
	var b [1]byte
	n, err := c.Read(b[:])
	if n > 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v (read %d bytes, %v)", time.Since(start), n, err)
	}
	return time.Since(start)
}

// openStream opens /v1/events on a raw connection and reads up to its snapshot.
func openStream(t *testing.T, addr string) net.Conn {
	t.Helper()
	c := dial(t, addr, "GET /v1/events HTTP/1.1\r\nHost: gw\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream: %v", err)
		}
		if line == "event: snapshot\n" {
			break
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return c
}

// check503 checks an answer refused for load: 503, Retry-After in seconds, a JSON
// error.
func check503(t *testing.T, resp *http.Response) {
	t.Helper()
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	err := json.NewDecoder(resp.Body).Decode(&e)
	if ra, raErr := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != 503 || raErr != nil || ra != int(StreamRetryAfter/time.Second) ||
		resp.Header.Get("Content-Type") != "application/json" || err != nil || e.Error == "" {
		t.Errorf("answer %d, Retry-After %q, Content-Type %q, error %q (%v); want 503, Retry-After %d, a JSON error",
			resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), e.Error, err, int(StreamRetryAfter/time.Second))
	}
}

func TestOptionsDefaults(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, l := NewServer(Options{Catalog: func() []contract.Record { return nil }}, ln)
	defer l.Close()
	if srv.ReadHeaderTimeout != DefaultReadHeaderTimeout || srv.ReadTimeout != DefaultReadTimeout ||
		srv.WriteTimeout != DefaultWriteTimeout || srv.IdleTimeout != DefaultIdleTimeout ||
		srv.MaxHeaderBytes != DefaultMaxHeaderBytes || srv.ConnState == nil {
		t.Errorf("server %+v", srv)
	}
	if l.max != DefaultMaxConnections || l.high != DefaultMaxConnections/2 || l.low != DefaultMaxConnections/16 {
		t.Errorf("listener: max %d, marks %d/%d", l.max, l.high, l.low)
	}
	o := Options{MaxEventStreams: -1, EventWriteTimeout: 3 * time.Second}.withDefaults()
	if o.MaxEventStreams != DefaultMaxEventStreams || o.EventWriteTimeout != 3*time.Second || o.Heartbeat != DefaultHeartbeat {
		t.Errorf("options %+v", o)
	}
	if FloodMemory > 24<<20 {
		t.Errorf("FloodMemory %d B; the documentation says about 23 MiB", FloodMemory)
	}
}

// Beyond MaxEventStreams, /v1/events answers 503 with Retry-After and a JSON error;
// a slot frees when a stream ends.
func TestEventStreamCap(t *testing.T) {
	hub := NewHub(0)
	addr, _ := serve(t, Options{Catalog: func() []contract.Record { return nil }, Events: hub, MaxEventStreams: 2}, 0, nil)
	a := openStream(t, addr)
	openStream(t, addr)
	resp, err := client().Get("http://" + addr + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	check503(t, resp)
	if !resp.Close {
		t.Error("the 503 keeps the connection open; want Connection: close")
	}
	if hub.Clients() != 2 {
		t.Errorf("%d clients; want 2", hub.Clients())
	}
	if resp, _ := client().Get("http://" + addr + "/v1/catalog"); resp == nil || resp.StatusCode != 200 {
		t.Errorf("/v1/catalog at the stream cap: %v", resp)
	} else {
		resp.Body.Close()
	}
	a.Close()
	testutil.Eventually(t, 5*time.Second, "the closed stream's slot free", func() bool { return hub.Clients() == 1 })
	openStream(t, addr)
}

// bigCatalog returns n records of about size bytes of JSON each.
func bigCatalog(n, size int) []contract.Record {
	recs := make([]contract.Record, n)
	for i := range recs {
		recs[i] = record(fmt.Sprintf("r-%05d", i), "servo-drive", contract.Passing, 1)
		recs[i].Meta["pad"] = strings.Repeat("x", size)
	}
	return recs
}

// A client that never reads is dropped EventWriteTimeout after its writes stop going
// through: while its first snapshot is written, and later while events are.
func TestEventStreamWriteDeadline(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	// 16 MiB of JSON: more than the socket buffers between the two ends of a loopback
	// connection hold (tcp_wmem and tcp_rmem defaults: 4 MiB and 128 KiB, tcp(7)).
	big := bigCatalog(2048, 8<<10)
	for _, tc := range []struct {
		name    string
		catalog []contract.Record
		publish bool // publish the big catalog as events once the stream is open
	}{
		{"snapshot", big, false},
		{"events", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := NewHub(len(big))
			addr, _ := serve(t, Options{
				Catalog: func() []contract.Record { return tc.catalog }, Events: hub,
				EventWriteTimeout: writeTimeout, WriteTimeout: time.Hour, Heartbeat: time.Hour,
			}, 0, nil)
			c := dial(t, addr, "GET /v1/events HTTP/1.1\r\nHost: gw\r\n\r\n") // never read
			if err := c.(*net.TCPConn).SetReadBuffer(4096); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 5*time.Second, "the client subscribed", func() bool { return hub.Clients() == 1 })
			if tc.publish {
				for _, rec := range big {
					hub.Publish(registry.Event{Kind: registry.Upsert, Record: rec})
				}
			}
			start := time.Now()
			testutil.Eventually(t, 10*time.Second, "the client that does not read dropped", func() bool { return hub.Clients() == 0 })
			t.Logf("dropped %v after the writes began (EventWriteTimeout %v)", time.Since(start).Round(time.Millisecond), writeTimeout)
		})
	}
}

// Event streams outlive the server's ReadTimeout and WriteTimeout.
func TestEventStreamOutlivesServerTimeouts(t *testing.T) {
	const timeout = 100 * time.Millisecond
	addr, _ := serve(t, Options{
		Catalog: func() []contract.Record { return nil }, Events: NewHub(0),
		ReadTimeout: timeout, WriteTimeout: timeout, Heartbeat: 20 * time.Millisecond,
	}, 0, nil)
	c := openStream(t, addr)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	start := time.Now()
	beats := 0
	for time.Since(start) < 10*timeout {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended %v after its snapshot (server timeouts %v): %v", time.Since(start), timeout, err)
		}
		if line == ": keep-alive\n" {
			beats++
		}
	}
	if beats == 0 {
		t.Error("no keep-alive received")
	}
}

// At the connection cap, a new connection takes the place of the open connection that
// has waited longest for its request header; busy connections (an event stream) are
// never evicted.
func TestConnectionCapEvictsLongestWaiting(t *testing.T) {
	hub := NewHub(0)
	addr, l := serve(t, Options{Catalog: func() []contract.Record { return nil }, Events: hub,
		MaxConnections: 4, ReadHeaderTimeout: time.Minute}, 0, nil)
	openStream(t, addr) // oldest, but busy
	var slow []net.Conn
	for i := range 3 {
		slow = append(slow, dial(t, addr, slowloris))
		testutil.Eventually(t, 5*time.Second, fmt.Sprintf("slowloris %d accepted", i), func() bool { return l.Open() == 2+i })
	}
	// A real client gets in, twice: each time the oldest slowloris goes, and a new one
	// fills the cap again.
	for i := range 2 {
		resp, err := client().Get("http://" + addr + "/v1/catalog")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /v1/catalog at the cap: %v %v", resp, err)
		}
		resp.Body.Close()
		closedByPeer(t, slow[i])
		if l.Evicted() != uint64(i+1) || l.Refused() != 0 {
			t.Errorf("evicted %d, refused %d; want %d, 0", l.Evicted(), l.Refused(), i+1)
		}
		testutil.Eventually(t, 5*time.Second, "the catalog's connection closed", func() bool { return l.Open() == 3 })
		slow = append(slow, dial(t, addr, slowloris))
		testutil.Eventually(t, 5*time.Second, "the cap full again", func() bool { return l.Open() == 4 })
	}
	if hub.Clients() != 1 {
		t.Errorf("the event stream was evicted: %d clients", hub.Clients())
	}
	// The younger slowloris connections are still open.
	for _, c := range slow[2:] {
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("a younger slowloris: %v; want it still open", err)
		}
	}
}

// When every open connection is busy, a connection beyond the cap is answered 503 and
// closed.
func TestConnectionCapRefusesWhenAllBusy(t *testing.T) {
	addr, l := serve(t, Options{Catalog: func() []contract.Record { return nil }, Events: NewHub(0),
		MaxConnections: 2}, 0, nil)
	openStream(t, addr)
	openStream(t, addr)
	c := dial(t, addr, "")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("connection beyond the cap: %v", err)
	}
	check503(t, resp)
	closedByPeer(t, c)
	if l.Refused() != 1 || l.Evicted() != 0 || l.Open() != 2 {
		t.Errorf("refused %d, evicted %d, open %d; want 1, 0, 2", l.Refused(), l.Evicted(), l.Open())
	}
}

// A request header not finished within ReadHeaderTimeout: the connection is closed.
func TestSlowlorisClosedAfterHeaderTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	addr, l := serve(t, Options{Catalog: func() []contract.Record { return nil }, ReadHeaderTimeout: timeout}, 0, nil)
	c := dial(t, addr, slowloris)
	if d := closedByPeer(t, c); d < timeout/2 {
		t.Errorf("closed %v after the header began; want no sooner than the header timeout, %v", d, timeout)
	}
	testutil.Eventually(t, 5*time.Second, "no connection open", func() bool { return l.Open() == 0 })
}

// A request header larger than MaxHeaderBytes (+ net/http's 4096 bytes of slack) is
// answered 431.
func TestMaxHeaderBytes(t *testing.T) {
	addr, _ := serve(t, Options{Catalog: func() []contract.Record { return nil }, MaxHeaderBytes: 1024}, 0, nil)
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/catalog", nil)
	req.Header.Set("X-Big", strings.Repeat("b", 8<<10))
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("an 8 KiB header with MaxHeaderBytes 1024: %d; want 431", resp.StatusCode)
	}
}

// Memory is returned to the OS when a flood ends (open connections fall from ≥ half
// the cap to ≤ a sixteenth of it), at most once per releaseEvery; a smaller wave
// returns nothing.
func TestMemoryReleasedAfterFlood(t *testing.T) {
	const every = 300 * time.Millisecond
	var mu sync.Mutex
	var at []time.Time
	free := func() {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, time.Now())
	}
	released := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(at)
	}
	addr, l := serve(t, Options{Catalog: func() []contract.Record { return nil }, MaxConnections: 16,
		ReadHeaderTimeout: time.Minute}, every, free) // marks: 8 and 1
	wave := func(n int) {
		t.Helper()
		conns := make([]net.Conn, n)
		for i := range conns {
			conns[i] = dial(t, addr, slowloris)
		}
		testutil.Eventually(t, 5*time.Second, fmt.Sprintf("%d connections open", n), func() bool { return l.Open() == n })
		for _, c := range conns {
			c.Close()
		}
		testutil.Eventually(t, 5*time.Second, "no connection open", func() bool { return l.Open() == 0 })
	}
	wave(7) // below the high mark
	if n := released(); n != 0 || l.Releases() != 0 {
		t.Fatalf("%d releases after a wave below the high mark", n)
	}
	wave(8)
	testutil.Eventually(t, 5*time.Second, "a release after the flood", func() bool { return released() == 1 })
	wave(12)
	testutil.Eventually(t, 5*time.Second, "a second release, deferred", func() bool { return released() == 2 })
	mu.Lock()
	gap := at[1].Sub(at[0])
	mu.Unlock()
	if gap < every {
		t.Errorf("releases %v apart; want at least %v", gap, every)
	}
	if l.Releases() != 2 {
		t.Errorf("Releases %d; want 2", l.Releases())
	}
}

// ConnMemory bounds what one open connection costs, measured on the most expensive
// kind: an event stream (a handler's goroutine stack, net/http's buffers, a Hub
// subscription).
func TestConnMemory(t *testing.T) {
	const streams = 60
	hub := NewHub(0)
	addr, _ := serve(t, Options{Catalog: func() []contract.Record { return nil }, Events: hub,
		MaxEventStreams: streams}, 0, nil)
	openStream(t, addr) // warm up what the first stream allocates once
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range streams - 1 {
		openStream(t, addr)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// Live heap and stacks, both ends of the connections (the client's are small: no
	// buffer outlives openStream).
	per := (int64(after.HeapAlloc+after.StackInuse) - int64(before.HeapAlloc+before.StackInuse)) / (streams - 1)
	t.Logf("%.1f KiB per event-stream connection (ConnMemory %d KiB)", float64(per)/1024, ConnMemory>>10)
	if per > ConnMemory {
		t.Errorf("%d B per event-stream connection; ConnMemory says at most %d", per, ConnMemory)
	}
}
