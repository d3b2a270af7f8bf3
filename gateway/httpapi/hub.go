package httpapi

import (
	"sync"
	"sync/atomic"

	"github.com/rollcall-edge/rollcall/registry"
)

// DefaultQueue is the number of events a Hub queues per client when NewHub is given 0.
const DefaultQueue = 256

// Hub fans registry change events out to the /v1/events clients. Publish never blocks:
// each client has a bounded queue; when it is full the oldest event is dropped and the
// client is marked to resynchronise, so its stream sends a fresh snapshot of the
// catalog before anything else. A Hub is safe for concurrent use; a nil *Hub drops
// events.
type Hub struct {
	queue   int
	mu      sync.Mutex
	subs    map[*subscription]struct{}
	resyncs atomic.Uint64
}

// subscription is one client's queue.
type subscription struct {
	ch   chan registry.Event
	lost atomic.Bool // events were dropped: resynchronise from a snapshot
}

// NewHub returns a Hub that queues at most queue events per client (DefaultQueue when
// queue ≤ 0).
func NewHub(queue int) *Hub {
	if queue <= 0 {
		queue = DefaultQueue
	}
	return &Hub{queue: queue, subs: map[*subscription]struct{}{}}
}

// Publish hands ev to every client without blocking; call it from the registry Sink.
// Nothing is copied or encoded when no client is connected.
func (h *Hub) Publish(ev registry.Event) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.ch <- ev:
			continue
		default:
		}
		// Full: drop the oldest, remember to resync, queue the newest. Only Publish sends,
		// under h.mu, so the second send always finds room.
		select {
		case <-s.ch:
		default:
		}
		if !s.lost.Swap(true) {
			h.resyncs.Add(1)
		}
		select {
		case s.ch <- ev:
		default:
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
	s := &subscription{ch: make(chan registry.Event, h.queue)}
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
