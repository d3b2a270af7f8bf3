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
//	GET /v1/instances/{id}      one live instance (InstanceDetail): its record, its status history
//	                            (last HistoryLen transitions, with times and reasons) and its last
//	                            RoundTripLen heartbeat polls (round trip in ms, null: no answer);
//	                            404 and a JSON error when id is not live
//	GET /v1/plant               the plant view (http.plant_view): every live instance of every
//	                            gateway on the broker, one per device, with "seen_by" (404 when off)
//
// The event stream starts with `event: snapshot` whose data is the catalog (as
// /v1/catalog); then each registry change is one message, `event: upsert` with the new
// record or `event: deregister` with the last record of the instance removed. A client
// that falls behind (its queue in the Hub overflows) loses its queued events and gets a
// new `snapshot` instead; clients should apply upserts and deregistrations only when
// their revision is not below the one they hold for the instance. A comment line is
// sent every Heartbeat.
//
// # Limits
//
// What a flood of clients can make the process hold is bounded (defaults in
// parentheses, each an Options field): open connections (DefaultMaxConnections;
// NewServer's Listener), event streams (DefaultMaxEventStreams; beyond it /v1/events
// answers 503 with Retry-After and a JSON error), the time to send a request header
// (DefaultReadHeaderTimeout) and a whole request (DefaultReadTimeout), the time to
// write a response (DefaultWriteTimeout) or one event-stream write
// (DefaultEventWriteTimeout), an idle keep-alive connection's life
// (DefaultIdleTimeout), a request header's size (DefaultMaxHeaderBytes), and the events
// queued per stream (the Hub's queue, DefaultQueue). With them, the memory a flood can
// add is about FloodMemory with the defaults, and the Listener hands it back to the
// operating system when the flood ends.
package httpapi

import (
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/registry"
)

//go:embed dashboard
var dashboardFS embed.FS // read-only

// Defaults of the Options fields that are 0.
const (
	// DefaultHeartbeat is the period of keep-alive comments on /v1/events.
	DefaultHeartbeat = 15 * time.Second
	// DefaultMaxEventStreams caps the /v1/events streams open at once.
	DefaultMaxEventStreams = 64
	// DefaultEventWriteTimeout bounds one write to an event-stream client.
	DefaultEventWriteTimeout = 10 * time.Second
	// DefaultMaxConnections caps the HTTP connections open at once (NewServer).
	DefaultMaxConnections = 256
	// DefaultReadHeaderTimeout bounds the reading of a request header (NewServer).
	DefaultReadHeaderTimeout = 5 * time.Second
	// DefaultReadTimeout bounds the reading of a whole request (NewServer).
	DefaultReadTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds the writing of a response other than an event stream
	// (NewServer).
	DefaultWriteTimeout = 30 * time.Second
	// DefaultIdleTimeout bounds the wait for the next request on a keep-alive
	// connection (NewServer).
	DefaultIdleTimeout = 60 * time.Second
	// DefaultMaxHeaderBytes caps a request header's size in bytes: request line and
	// header fields (NewServer; net/http reads up to 4096 bytes more before it
	// answers 431).
	DefaultMaxHeaderBytes = 16 << 10
)

// StreamRetryAfter is the Retry-After of a 503 answer to /v1/events when
// MaxEventStreams streams are open, and of a connection refused by a Listener at its
// cap (RFC 9110, section 10.2.3: delay-seconds).
const StreamRetryAfter = 10 * time.Second

// Options configures the handler returned by New, and the server and Listener returned
// by NewServer. Zero (or negative) durations and counts take the defaults above.
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
	// Instance returns the live record of one instance ((*registry.Registry).Get), for
	// /v1/instances/{id}. Optional: without it the Catalog is searched.
	Instance func(id string) (contract.Record, bool)
	// Events fans registry events out to /v1/events and keeps the instances' history
	// served at /v1/instances/{id} (the registry's Observed must be its Observe).
	// Optional: without it the stream sends the snapshot and keep-alives only, and
	// instances have no history.
	Events *Hub
	// Plant returns the plant view served at /v1/plant and shown by the dashboard: the
	// live instances of every gateway on the broker, merged by device (PlantInstance),
	// sorted by id. Optional (404 without it).
	Plant func() []PlantInstance
	// Admin is the write side (self-registration, maintenance), behind a bearer token;
	// nil: read-only.
	Admin *Admin
	// Heartbeat is the period of keep-alive comments on /v1/events (default
	// DefaultHeartbeat).
	Heartbeat time.Duration
	// MaxEventStreams caps the /v1/events streams open at once (default
	// DefaultMaxEventStreams; config http.max_event_streams). Beyond it /v1/events
	// answers 503 Service Unavailable with Retry-After (StreamRetryAfter), Connection:
	// close and a JSON body {"error": "<why>"}. Each stream holds up to the Hub's queue
	// of events (see NewHub) and its snapshot while it is being written.
	MaxEventStreams int
	// EventWriteTimeout bounds each write to an event-stream client (default
	// DefaultEventWriteTimeout): a client that takes nothing for that long (it stopped
	// reading and the socket buffers between us are full) is disconnected; a browser
	// reconnects and gets a snapshot. Set with http.ResponseController.SetWriteDeadline,
	// it replaces WriteTimeout on the streams.
	EventWriteTimeout time.Duration

	// The fields below configure the *http.Server and Listener of NewServer; New
	// ignores them.

	// MaxConnections caps the HTTP connections open at once (default
	// DefaultMaxConnections; config http.max_connections); see Listener for what
	// happens to connections beyond it.
	MaxConnections int
	// ReadHeaderTimeout bounds the reading of a request's header, from the connection's
	// accept or, on a keep-alive connection, from the first byte of the next request
	// (default DefaultReadHeaderTimeout; http.Server.ReadHeaderTimeout): a slowloris
	// connection is closed after it.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the reading of a whole request, header and body (default
	// DefaultReadTimeout; http.Server.ReadTimeout). It does not cut event streams:
	// net/http lifts the read deadline once a request without a body is read.
	ReadTimeout time.Duration
	// WriteTimeout bounds the writing of a response, from the end of its request's
	// header (default DefaultWriteTimeout; http.Server.WriteTimeout); event streams use
	// EventWriteTimeout per write instead.
	WriteTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a keep-alive connection
	// (default DefaultIdleTimeout; http.Server.IdleTimeout).
	IdleTimeout time.Duration
	// MaxHeaderBytes caps the size of a request's header in bytes (default
	// DefaultMaxHeaderBytes; http.Server.MaxHeaderBytes): beyond it the answer is 431.
	MaxHeaderBytes int
}

// withDefaults returns o with every zero or negative limit set to its default.
func (o Options) withDefaults() Options {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Heartbeat, DefaultHeartbeat)
	def(&o.EventWriteTimeout, DefaultEventWriteTimeout)
	def(&o.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&o.ReadTimeout, DefaultReadTimeout)
	def(&o.WriteTimeout, DefaultWriteTimeout)
	def(&o.IdleTimeout, DefaultIdleTimeout)
	defInt(&o.MaxEventStreams, DefaultMaxEventStreams)
	defInt(&o.MaxConnections, DefaultMaxConnections)
	defInt(&o.MaxHeaderBytes, DefaultMaxHeaderBytes)
	return o
}

type server struct {
	o       Options
	streams chan struct{} // one token per open event stream; capacity o.MaxEventStreams
}

func newServer(o Options) *server {
	o = o.withDefaults()
	return &server{o: o, streams: make(chan struct{}, o.MaxEventStreams)}
}

// New returns the handler of every endpoint listed in the package documentation, with
// the event-stream limits of o (MaxEventStreams, EventWriteTimeout). Serve it with
// NewServer for the connection limits and timeouts. It panics if o.Catalog is nil.
func New(o Options) http.Handler {
	if o.Catalog == nil {
		panic("httpapi: Options.Catalog is nil")
	}
	s := newServer(o)
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
	mux.HandleFunc("GET /v1/instances/{id}", s.instance)
	mux.HandleFunc("GET /v1/plant", s.plant)
	o.Admin.routes(mux)
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

func writeJSON(w http.ResponseWriter, v any) { writeJSONStatus(w, http.StatusOK, v) }

func writeJSONStatus(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// retryAfter is StreamRetryAfter as delay-seconds (the value of a Retry-After field).
func retryAfter() string { return strconv.Itoa(int(StreamRetryAfter / time.Second)) }

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

// instance serves /v1/instances/{id}: an InstanceDetail, or 404 and a JSON error when
// id is not a live instance.
func (s *server) instance(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rec, ok := s.lookup(id)
	if !ok {
		writeJSONStatus(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no live instance %q", id)})
		return
	}
	d := InstanceDetail{Record: rec}
	d.History, d.RoundTrips, _ = s.o.Events.history(id)
	if d.History == nil {
		d.History = []Transition{}
	}
	if d.RoundTrips == nil {
		d.RoundTrips = []RoundTrip{}
	}
	writeJSON(w, d)
}

// lookup is the live record of id: Options.Instance's, or the Catalog's.
func (s *server) lookup(id string) (contract.Record, bool) {
	if s.o.Instance != nil {
		return s.o.Instance(id)
	}
	recs := s.o.Catalog()
	i, ok := slices.BinarySearchFunc(recs, id, func(rec contract.Record, id string) int { return strings.Compare(rec.ID, id) })
	if !ok {
		return contract.Record{}, false
	}
	return recs[i], true
}

// PlantInstance is one device of the plant view: the record a consumer would pick
// (contract v1 shape) plus "seen_by", the ids of every gateway publishing a live record
// of it (registry/client.MergeByID).
type PlantInstance struct {
	contract.Record
	SeenBy []string `json:"seen_by"`
}

// plant serves /v1/plant: a JSON array of PlantInstance (possibly empty), or 404 when
// the plant view is off.
func (s *server) plant(w http.ResponseWriter, r *http.Request) {
	if s.o.Plant == nil {
		http.NotFound(w, r)
		return
	}
	out := s.o.Plant()
	if out == nil {
		out = []PlantInstance{}
	}
	writeJSON(w, out)
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
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		hd := w.Header()
		hd.Set("Retry-After", retryAfter())
		hd.Set("Connection", "close") // nothing else to wait for on this connection
		writeJSONStatus(w, http.StatusServiceUnavailable, map[string]string{
			"error": fmt.Sprintf("too many event streams (%d open); retry in %s s", s.o.MaxEventStreams, retryAfter()),
		})
		return
	}
	rc := http.NewResponseController(w)
	// A deadline on each write, replacing the server's WriteTimeout (which runs from the
	// end of the request's header). The error, not supported by w (a test's recorder),
	// leaves nothing to bound. (No read deadline to clear: once a request without a body
	// is read, net/http clears it for its background read, which detects the client's
	// disconnect.)
	deadline := func() { _ = rc.SetWriteDeadline(time.Now().Add(s.o.EventWriteTimeout)) }
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	var ready <-chan struct{}
	var sub *subscription
	if s.o.Events != nil {
		sub = s.o.Events.subscribe() // before the snapshot: no change falls in between
		defer s.o.Events.unsubscribe(sub)
		ready = sub.ready
	}
	deadline()
	_, _ = io.WriteString(w, "retry: 2000\n\n")
	if !s.writeSnapshot(w) || rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(s.o.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			deadline()
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case <-ready:
			// Send what is queued now in one flush; a snapshot instead if events were lost.
			events, resync := sub.take()
			if len(events) == 0 && !resync {
				continue
			}
			deadline()
			if resync {
				if !s.writeSnapshot(w) {
					return
				}
			}
			for _, ev := range events {
				if !writeEvent(w, ev) {
					return
				}
			}
			if rc.Flush() != nil {
				return
			}
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
