package httpapi

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/rollcall-edge/rollcall/registry"
)

// DefaultQueue is the number of events a Hub queues per client when NewHub is given 0.
const DefaultQueue = 256

// EventSize is the size in bytes of one queued event: a registry.Event value (464 on
// 64-bit platforms), not counting its record's strings, maps and slices. A client's
// queue holds at most the Hub's queue length of them.
const EventSize = int(unsafe.Sizeof(registry.Event{}))

// Hub fans registry change events out to the /v1/events clients. Publish never blocks:
// each client has a bounded queue, which takes memory only for the events it holds.
// When a client's queue is full (it does not keep up) the queue is emptied and the
// client is marked to resynchronise: its stream sends a fresh snapshot of the catalog
// instead of the events it lost, and nothing is queued for it until then (the snapshot,
// taken after the mark is cleared, includes those changes: the registry calls its Sink
// after the change is visible to Snapshot).
//
// A Hub also keeps each live instance's history for GET /v1/instances/{id}: its status
// transitions (the last HistoryLen, from the events Publish gets) and its last
// RoundTripLen heartbeat polls (from Observe). That is about 0.7 KiB per instance
// (mostly the poll ring), plus 64 bytes and the reason text (at most 256 bytes) per
// transition kept; it is dropped with the instance's Deregister event.
//
// A Hub is safe for concurrent use; a nil *Hub drops events and keeps no history.
type Hub struct {
	queue   int
	mu      sync.Mutex
	subs    map[*subscription]struct{}
	resyncs atomic.Uint64

	histMu sync.Mutex
	hist   map[string]*history // by instance id: the live instances seen by Publish
}

// subscription is one client's queue.
type subscription struct {
	ready chan struct{} // capacity 1: a signal that pending or lost changed

	mu      sync.Mutex
	pending []registry.Event // queued events, oldest first; allocated as they come
	lost    bool             // events were dropped: resynchronise from a snapshot
}

// NewHub returns a Hub that queues at most queue events per client (DefaultQueue when
// queue ≤ 0), that is at most queue × EventSize bytes per client.
func NewHub(queue int) *Hub {
	if queue <= 0 {
		queue = DefaultQueue
	}
	return &Hub{queue: queue, subs: map[*subscription]struct{}{}, hist: map[string]*history{}}
}

// Publish hands ev to every client without blocking, and records it in its instance's
// history; call it from the registry Sink, which gives the events in order. Nothing is
// copied or encoded for the clients when none is connected.
func (h *Hub) Publish(ev registry.Event) {
	if h == nil {
		return
	}
	h.record(ev)
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.mu.Lock()
		switch {
		case s.lost: // a snapshot is due, and will include ev
		case len(s.pending) >= h.queue:
			// Full: the client is not keeping up. What it holds would be replaced by the
			// snapshot anyway, so release it now.
			s.pending, s.lost = nil, true
			h.resyncs.Add(1)
		default:
			s.pending = append(s.pending, ev)
		}
		s.mu.Unlock()
		select {
		case s.ready <- struct{}{}:
		default: // already signalled
		}
	}
}

// Clients is the number of clients connected now.
func (h *Hub) Clients() int {
	if h == nil {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Resyncs is the number of times a client lost events and had to be resynchronised.
func (h *Hub) Resyncs() uint64 {
	if h == nil {
		return 0
	}
	return h.resyncs.Load()
}

func (h *Hub) subscribe() *subscription {
	s := &subscription{ready: make(chan struct{}, 1)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

func (h *Hub) unsubscribe(s *subscription) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// take returns the queued events, oldest first, and whether the client must be
// resynchronised instead (then events is nil), and empties the queue.
func (s *subscription) take() (events []registry.Event, resync bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	events, resync = s.pending, s.lost
	s.pending, s.lost = nil, false
	if resync {
		events = nil
	}
	return events, resync
}
