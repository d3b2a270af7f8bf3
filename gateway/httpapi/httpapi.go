// Package httpapi serves a gateway's HTTP interface (config key http.listen):
//
//	GET /                       live dashboard (HTML, CSS and JS embedded in the binary)
//	GET /metrics                Prometheus metrics
//	GET /healthz                200 while the process serves requests
//	GET /readyz                 200 when ready (started, MQTT publisher connected), else 503 and the reason
//	GET /v1/catalog             JSON array of the live instance records (contract v1 shape), sorted by id
//	GET /v1/catalog/{service}   the same, for one service
//	GET /v1/gateway             JSON gateway record (contract v1 shape)
//	GET /v1/events              server-sent events: a snapshot, then one message per catalog change
//
// The event stream starts with `event: snapshot` whose data is the catalog (as
// /v1/catalog); then each registry change is one message, `event: upsert` with the new
// record or `event: deregister` with the last record of the instance removed. A client
// that falls behind loses its oldest queued events and gets a new `snapshot` instead;
// clients should apply upserts and deregistrations only when their revision is not
// below the one they hold for the instance. A comment line is sent every Heartbeat.
package httpapi

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/registry"
)

//go:embed dashboard
var dashboardFS embed.FS // read-only

// DefaultHeartbeat is the period of keep-alive comments on /v1/events when
// Options.Heartbeat is 0.
const DefaultHeartbeat = 15 * time.Second

// writeTimeout bounds one write to an event-stream client: a client that does not
// read for that long is disconnected (its browser reconnects and gets a snapshot).
const writeTimeout = 10 * time.Second

// Options configures the handler returned by New.
type Options struct {
	// Catalog returns the live instance records sorted by id
	// ((*registry.Registry).Snapshot). Required.
	Catalog func() []contract.Record
	// Gateway returns the gateway record served at /v1/gateway and shown by the
	// dashboard. Optional (404 without it).
	Gateway func() contract.GatewayRecord
	// Ready returns nil when the gateway is ready, else why not (the body of the 503 of
	// /readyz). Optional: always ready.
	Ready func() error
	// Metrics serves /metrics (e.g. promhttp.HandlerFor). Optional (404 without it).
	Metrics http.Handler
	// Events fans registry events out to /v1/events. Optional: without it the stream
	// sends the snapshot and keep-alives only.
	Events *Hub
	// Heartbeat is the period of keep-alive comments on /v1/events (default
	// DefaultHeartbeat).
	Heartbeat time.Duration
}

type server struct {
	o Options
}

// New returns the handler of every endpoint listed in the package documentation.
// It panics if o.Catalog is nil.
func New(o Options) http.Handler {
	if o.Catalog == nil {
		panic("httpapi: Options.Catalog is nil")
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	s := &server{o: o}
	assets, err := fs.Sub(dashboardFS, "dashboard")
	if err != nil {
		panic(err) // the embedded directory exists at build time
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page(assets, "index.html"))
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", noCache(http.FileServerFS(assets))))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { text(w, http.StatusOK, "ok\n") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /v1/catalog", s.catalog)
	mux.HandleFunc("GET /v1/catalog/{service}", s.catalog)
	mux.HandleFunc("GET /v1/gateway", s.gateway)
	mux.HandleFunc("GET /v1/events", s.events)
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	return secure(mux)
}

// secure sets headers on every response: no MIME sniffing, and a content security
// policy that allows nothing but this origin (the dashboard loads no external asset).
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		hd.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

func (s *server) page(assets fs.FS, name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := fs.ReadFile(assets, name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(b)
	}
}

func text(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

func (s *server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.o.Ready != nil {
		if err := s.o.Ready(); err != nil {
			text(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
			return
		}
	}
	text(w, http.StatusOK, "ready\n")
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}

// catalog serves /v1/catalog and /v1/catalog/{service}: a JSON array (possibly empty)
// of records sorted by id.
func (s *server) catalog(w http.ResponseWriter, r *http.Request) {
	recs := s.snapshot()
	if svc := r.PathValue("service"); svc != "" {
		out := recs[:0:0]
		for _, rec := range recs {
			if rec.Service == svc {
				out = append(out, rec)
			}
		}
		recs = out
	}
	writeJSON(w, recs)
}

// snapshot is the catalog, never nil (so it encodes as [] when empty).
func (s *server) snapshot() []contract.Record {
	recs := s.o.Catalog()
	if recs == nil {
		recs = []contract.Record{}
	}
	return recs
}

func (s *server) gateway(w http.ResponseWriter, r *http.Request) {
	if s.o.Gateway == nil {
		http.NotFound(w, r)
		return
	}
	writeJSON(w, s.o.Gateway())
}

// events serves /v1/events (see the package documentation).
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	var queue <-chan registry.Event
	var sub *subscription
	if s.o.Events != nil {
		sub = s.o.Events.subscribe() // before the snapshot: no change falls in between
		defer s.o.Events.unsubscribe(sub)
		queue = sub.ch
	}
	flush := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		return rc.Flush() == nil
	}
	fmt.Fprint(w, "retry: 2000\n\n")
	if !s.writeSnapshot(w) || !flush() {
		return
	}
	tick := time.NewTicker(s.o.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || !flush() {
				return
			}
		case ev := <-queue:
			// Send what is queued now in one flush.
			for more := true; more; {
				if sub.lost.Swap(false) {
					drain(queue)
					if !s.writeSnapshot(w) {
						return
					}
					break
				}
				if !writeEvent(w, ev) {
					return
				}
				select {
				case ev = <-queue:
				default:
					more = false
				}
			}
			if !flush() {
				return
			}
		}
	}
}

func drain(q <-chan registry.Event) {
	for {
		select {
		case <-q:
		default:
			return
		}
	}
}

func (s *server) writeSnapshot(w http.ResponseWriter) bool {
	b, err := json.Marshal(s.snapshot())
	if err != nil {
		return false
	}
	_, err = fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", b)
	return err == nil
}

func writeEvent(w http.ResponseWriter, ev registry.Event) bool {
	name := "upsert"
	if ev.Kind == registry.Deregister {
		name = "deregister"
	}
	b, err := json.Marshal(ev.Record)
	if err != nil {
		return true // not encodable (cannot happen for registry records): skip it
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
	return err == nil
}
