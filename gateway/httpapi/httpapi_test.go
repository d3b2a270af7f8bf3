package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func record(id, service string, st contract.Status, rev int64) contract.Record {
	return contract.Record{Schema: contract.Schema, ID: id, Service: service, Gateway: "gw", Epoch: 1, Revision: rev,
		Status: st, Endpoint: contract.Endpoint{Transport: "modbus-rtu", Bus: "bus1", Unit: 1},
		State: map[string]any{}, Meta: map[string]string{"axis": "1"}, DiscoveredBy: []string{"rtu-sweep"}}
}

// catalog is a fixed, mutable catalog for the handler.
type catalog struct {
	mu   sync.Mutex
	recs []contract.Record
}

func (c *catalog) snapshot() []contract.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]contract.Record(nil), c.recs...)
}

func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestEndpoints(t *testing.T) {
	cat := &catalog{recs: []contract.Record{
		record("a-1", "servo-drive", contract.Passing, 1),
		record("b-2", "io-module", contract.Critical, 2),
		record("c-3", "servo-drive", contract.Warning, 3),
	}}
	var notReady error = errors.New("MQTT publisher not connected to the broker")
	var mu sync.Mutex
	h := New(Options{
		Catalog: cat.snapshot,
		Gateway: func() contract.GatewayRecord { return contract.GatewayRecord{State: "online", Gateway: "gw", Epoch: 1} },
		Ready: func() error {
			mu.Lock()
			defer mu.Unlock()
			return notReady
		},
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "rollcall_x 1\n") }),
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer srv.Client().CloseIdleConnections()

	resp, body := get(t, srv, "/healthz")
	if resp.StatusCode != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", resp.StatusCode, body)
	}
	resp, body = get(t, srv, "/readyz")
	if resp.StatusCode != 503 || !strings.Contains(body, "not connected") {
		t.Errorf("/readyz not ready: %d %q", resp.StatusCode, body)
	}
	mu.Lock()
	notReady = nil
	mu.Unlock()
	if resp, body = get(t, srv, "/readyz"); resp.StatusCode != 200 {
		t.Errorf("/readyz ready: %d %q", resp.StatusCode, body)
	}

	resp, body = get(t, srv, "/v1/catalog")
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	var all []contract.Record
	if err := json.Unmarshal([]byte(body), &all); err != nil || len(all) != 3 || all[0].ID != "a-1" || all[2].ID != "c-3" {
		t.Errorf("/v1/catalog: %v %s", err, body)
	}
	// Exactly the contract's record shape: the same JSON as contract.Record.
	want, _ := json.Marshal(cat.snapshot())
	if strings.TrimSpace(body) != string(want) {
		t.Errorf("/v1/catalog is not the records' JSON:\n%s\n%s", body, want)
	}
	_, body = get(t, srv, "/v1/catalog/servo-drive")
	var drives []contract.Record
	if err := json.Unmarshal([]byte(body), &drives); err != nil || len(drives) != 2 || drives[0].ID != "a-1" || drives[1].ID != "c-3" {
		t.Errorf("/v1/catalog/servo-drive: %v %s", err, body)
	}
	if resp, body = get(t, srv, "/v1/catalog/nothing"); resp.StatusCode != 200 || body != "[]\n" {
		t.Errorf("/v1/catalog/nothing: %d %q", resp.StatusCode, body)
	}
	if _, body = get(t, srv, "/v1/gateway"); !strings.Contains(body, `"gateway":"gw"`) {
		t.Errorf("/v1/gateway: %s", body)
	}
	if _, body = get(t, srv, "/metrics"); body != "rollcall_x 1\n" {
		t.Errorf("/metrics: %q", body)
	}
	resp, body = get(t, srv, "/")
	if resp.StatusCode != 200 || !strings.Contains(body, "<table") || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("/: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	for _, a := range []string{"/assets/app.js", "/assets/style.css"} {
		if resp, _ = get(t, srv, a); resp.StatusCode != 200 {
			t.Errorf("%s: %d", a, resp.StatusCode)
		}
	}
	if resp, _ = get(t, srv, "/nothing"); resp.StatusCode != 404 {
		t.Errorf("/nothing: %d", resp.StatusCode)
	}
	if resp, err := srv.Client().Post(srv.URL+"/v1/catalog", "text/plain", nil); err != nil || resp.StatusCode != 405 {
		t.Errorf("POST /v1/catalog: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
}

// The dashboard works offline: nothing it loads comes from another origin.
func TestDashboardHasNoExternalAssets(t *testing.T) {
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(\s*['"]?(https?:|//)`)
	err := fs.WalkDir(dashboardFS, "dashboard", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(dashboardFS, path)
		if err != nil {
			return err
		}
		for _, m := range external.FindAllString(string(b), -1) {
			t.Errorf("%s refers to another origin: %q", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sseReader reads server-sent events.
type sseReader struct{ r *bufio.Reader }

func (s sseReader) next(t *testing.T) (event, data string) {
	t.Helper()
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if event != "" || data != "" {
				return event, data
			}
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data += line[6:]
		}
	}
}

func TestEventStream(t *testing.T) {
	cat := &catalog{recs: []contract.Record{record("a-1", "servo-drive", contract.Passing, 1)}}
	hub := NewHub(4)
	srv := httptest.NewServer(New(Options{Catalog: cat.snapshot, Events: hub, Heartbeat: 50 * time.Millisecond}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/events", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sr := sseReader{bufio.NewReader(resp.Body)}
	ev, data := sr.next(t)
	var snap []contract.Record
	if ev != "snapshot" || json.Unmarshal([]byte(data), &snap) != nil || len(snap) != 1 {
		t.Fatalf("first message %q %s", ev, data)
	}
	if hub.Clients() != 1 {
		t.Errorf("clients %d", hub.Clients())
	}
	crit := record("a-1", "servo-drive", contract.Critical, 2)
	hub.Publish(registry.Event{Kind: registry.Upsert, Record: crit, Transition: true})
	ev, data = sr.next(t)
	var got contract.Record
	if ev != "upsert" || json.Unmarshal([]byte(data), &got) != nil || got.Status != contract.Critical || got.Revision != 2 {
		t.Fatalf("upsert message %q %s", ev, data)
	}
	hub.Publish(registry.Event{Kind: registry.Deregister, Record: crit, Transition: true})
	if ev, data = sr.next(t); ev != "deregister" || !strings.Contains(data, `"id":"a-1"`) {
		t.Fatalf("deregister message %q %s", ev, data)
	}
	// Keep-alive comments flow while nothing changes (read below the event level).
	line, _ := sr.r.ReadString('\n')
	for line == "\n" {
		line, _ = sr.r.ReadString('\n')
	}
	if line != ": keep-alive\n" {
		t.Errorf("expected a keep-alive comment, got %q", line)
	}
	cancel()
	testutil.Eventually(t, 5*time.Second, "the client unsubscribed after its disconnect", func() bool { return hub.Clients() == 0 })
}

// Publish never blocks: a client that does not keep up has its queue emptied and is
// marked for a resync; nothing is queued for it until it has taken the resync, then
// events queue again.
func TestHubOverflow(t *testing.T) {
	hub := NewHub(2)
	s := hub.subscribe()
	defer hub.unsubscribe(s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := int64(1); i <= 1000; i++ {
			hub.Publish(registry.Event{Kind: registry.Upsert, Record: contract.Record{ID: "a", Revision: i}})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a client that does not read")
	}
	s.mu.Lock()
	pending, lost := len(s.pending), s.lost
	s.mu.Unlock()
	if !lost || pending != 0 || hub.Resyncs() != 1 {
		t.Errorf("lost %v, %d events held, resyncs %d; want lost, none held, 1 resync", lost, pending, hub.Resyncs())
	}
	if evs, resync := s.take(); !resync || evs != nil {
		t.Errorf("take: %d events, resync %v; want a resync", len(evs), resync)
	}
	hub.Publish(registry.Event{Kind: registry.Upsert, Record: contract.Record{ID: "a", Revision: 1001}})
	if evs, resync := s.take(); resync || len(evs) != 1 || evs[0].Record.Revision != 1001 {
		t.Errorf("after the resync: %v, resync %v; want revision 1001", evs, resync)
	}
	var nilHub *Hub
	nilHub.Publish(registry.Event{}) // HTTP off: no hub, no-op
}

// A connected client that nothing has been published to holds no queue: subscribing
// allocates a few hundred bytes, not DefaultQueue × EventSize (116 KiB).
func TestHubIdleClientHoldsNoQueue(t *testing.T) {
	const clients = 1000
	hub := NewHub(0)
	subs := make([]*subscription, 0, clients)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range clients {
		subs = append(subs, hub.subscribe())
	}
	runtime.ReadMemStats(&after)
	per := (after.TotalAlloc - before.TotalAlloc) / clients
	t.Logf("%d B allocated per subscription", per)
	if per > 1024 {
		t.Errorf("%d B allocated per subscription; want at most 1 KiB (a full queue is %d B)", per, DefaultQueue*EventSize)
	}
	for _, s := range subs {
		hub.unsubscribe(s)
	}
}

// gatedWriter is a ResponseWriter whose writes block while the gate is closed.
type gatedWriter struct {
	blocked atomic.Int32 // writes waiting for the gate
	mu      sync.Mutex
	buf     strings.Builder
	gate    chan struct{}
	hdr     http.Header
}

func (w *gatedWriter) Header() http.Header { return w.hdr }
func (w *gatedWriter) WriteHeader(int)     {}
func (w *gatedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	gate := w.gate
	w.mu.Unlock()
	w.blocked.Add(1)
	<-gate
	w.blocked.Add(-1)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}
func (w *gatedWriter) Flush() {}
func (w *gatedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// A slow client that lost events gets a fresh snapshot instead of the lost events.
func TestEventStreamResync(t *testing.T) {
	cat := &catalog{recs: []contract.Record{record("a-1", "servo-drive", contract.Passing, 1)}}
	hub := NewHub(1)
	s := newServer(Options{Catalog: cat.snapshot, Events: hub, Heartbeat: time.Hour})
	open := make(chan struct{})
	close(open)
	w := &gatedWriter{gate: open, hdr: http.Header{}}
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest("GET", "/v1/events", nil).WithContext(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.events(w, req) }()
	testutil.Eventually(t, 5*time.Second, "the first snapshot event", func() bool { return strings.Contains(w.String(), "event: snapshot") })

	closed := make(chan struct{})
	w.mu.Lock()
	w.gate = closed // the client stops reading
	w.mu.Unlock()
	up := func(rev int64) {
		hub.Publish(registry.Event{Kind: registry.Upsert, Record: record("a-1", "servo-drive", contract.Critical, rev)})
	}
	up(2) // taken by the handler, which blocks writing it
	testutil.Eventually(t, 5*time.Second, "the handler writing event 2", func() bool { return w.blocked.Load() == 1 })
	up(3) // queued
	up(4) // queue full: 3 dropped, resync due, 4 not queued (the snapshot will have it)
	cat.mu.Lock()
	cat.recs = []contract.Record{record("a-1", "servo-drive", contract.Critical, 4)}
	cat.mu.Unlock()
	w.mu.Lock()
	w.gate = open
	w.mu.Unlock()
	close(closed)
	testutil.Eventually(t, 5*time.Second, "the second snapshot event", func() bool { return strings.Count(w.String(), "event: snapshot") == 2 })
	cancel()
	<-done
	out := w.String()
	if strings.Contains(out, `"revision":3`) {
		t.Errorf("a dropped event was sent:\n%s", out)
	}
	if !strings.Contains(out, `"revision":2`) || !strings.HasSuffix(out, "\n\n") ||
		!strings.Contains(out[strings.LastIndex(out, "event: snapshot"):], `"revision":4`) {
		t.Errorf("stream:\n%s", out)
	}
}

// TestPlantEndpoint: /v1/plant is 404 without Options.Plant, and otherwise the plant
// view as JSON with seen_by.
func TestPlantEndpoint(t *testing.T) {
	off := httptest.NewServer(New(Options{Catalog: func() []contract.Record { return nil }}))
	defer off.Close()
	resp, err := http.Get(off.URL + "/v1/plant")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("plant view off: %d, want 404", resp.StatusCode)
	}
	on := httptest.NewServer(New(Options{Catalog: func() []contract.Record { return nil },
		Plant: func() []PlantInstance {
			return []PlantInstance{{Record: contract.Record{ID: "acme-sn1"}, SeenBy: []string{"gw-a", "gw-b"}}}
		}}))
	defer on.Close()
	resp, err = http.Get(on.URL + "/v1/plant")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || len(got) != 1 || got[0]["id"] != "acme-sn1" ||
		fmt.Sprint(got[0]["seen_by"]) != "[gw-a gw-b]" {
		t.Fatalf("plant view %v, %v", got, err)
	}
}
