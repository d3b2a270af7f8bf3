package mqtt

import (
	"strings"
	"sync"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// trackingStore is paho's OrderedMemoryStore plus what the Publisher needs to publish
// safely after a (re)connect, given how paho v1.5.1 behaves:
//
//   - After every successful connection paho calls OnConnect (in a new goroutine)
//     and then resume(), which takes a snapshot of the store (All) and resends every
//     stored PUBLISH on its own. Anything we publish from the OnConnect signal before
//     that snapshot is sent twice, and a stale record resent after our fresh one would
//     become the retained value. So the Publisher waits until resume took its snapshot
//     (counted by AllCalls) and until the broker acknowledged every stored PUBLISH
//     (Outstanding reaches 0) before it publishes anything on a new connection.
//   - paho hands the comms goroutine the very packet it stores, and PublishPacket.Write
//     sets RemainingLength on it; resume() sets Dup on what Get returns. Stored and
//     sent PUBLISH packets are therefore never the same object (see CopyStore).
type trackingStore struct {
	inner *paho.OrderedMemoryStore

	mu       sync.Mutex
	pending  map[string]struct{} // keys of stored outbound PUBLISH packets
	allCalls uint64              // calls of All
	changed  chan struct{}       // closed (and replaced) when allCalls or len(pending) changes
}

var _ paho.Store = (*trackingStore)(nil)

func newTrackingStore() *trackingStore {
	return &trackingStore{
		inner:   paho.NewOrderedMemoryStore(),
		pending: map[string]struct{}{},
		changed: make(chan struct{}),
	}
}

// State returns how many times All was called, how many outbound PUBLISH packets are
// stored, and a channel closed at the next change of either.
func (s *trackingStore) State() (allCalls uint64, outstanding int, changed <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.allCalls, len(s.pending), s.changed
}

// Outstanding returns how many outbound PUBLISH packets are stored.
func (s *trackingStore) Outstanding() int {
	_, n, _ := s.State()
	return n
}

// Open implements paho.Store.
func (s *trackingStore) Open() { s.inner.Open() }

// Put implements paho.Store.
func (s *trackingStore) Put(key string, m packets.ControlPacket) {
	CopyStore{s.inner}.Put(key, m)
	_, isPub := m.(*packets.PublishPacket)
	stored := s.inner.Get(key) != nil // Put on a closed store is dropped
	s.mu.Lock()
	defer s.mu.Unlock()
	if isPub && stored && strings.HasPrefix(key, "o.") {
		if _, ok := s.pending[key]; !ok {
			s.pending[key] = struct{}{}
			s.broadcastLocked()
		}
	} else {
		s.removeLocked(key)
	}
}

// Get returns the stored packet; a PUBLISH is returned as a shallow copy (see
// CopyStore).
func (s *trackingStore) Get(key string) packets.ControlPacket {
	return CopyStore{s.inner}.Get(key)
}

// All implements paho.Store.
func (s *trackingStore) All() []string {
	keys := s.inner.All()
	s.mu.Lock()
	s.allCalls++
	s.broadcastLocked()
	s.mu.Unlock()
	return keys
}

// Del implements paho.Store.
func (s *trackingStore) Del(key string) {
	s.inner.Del(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(key)
}

// Close implements paho.Store.
func (s *trackingStore) Close() { s.inner.Close() }

// Reset implements paho.Store.
func (s *trackingStore) Reset() {
	s.inner.Reset()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) > 0 {
		clear(s.pending)
		s.broadcastLocked()
	}
}

// removeLocked and broadcastLocked are called with mu held.
func (s *trackingStore) removeLocked(key string) {
	if _, ok := s.pending[key]; ok {
		delete(s.pending, key)
		s.broadcastLocked()
	}
}

func (s *trackingStore) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// CopyStore is paho's OrderedMemoryStore that keeps PUBLISH packets apart from the
// ones paho sends. paho v1.5.1 stores the packet it hands to its comms goroutine, whose
// PublishPacket.Write sets RemainingLength on it, and resume() sets Dup on the packet
// Get returns before sending that one too: with the plain store, both are writes to
// the object another goroutine reads (data races in paho, upstream issue
// eclipse-paho/paho.mqtt.golang#703). CopyStore's Put stores a shallow copy of a
// PUBLISH (taken before paho sends it) and Get returns a fresh shallow copy, so the
// stored object is only ever read. Payload and topic are shared: paho never writes
// them. Session.Options sets one for every client; the Publisher's trackingStore does
// the same.
type CopyStore struct{ *paho.OrderedMemoryStore }

var _ paho.Store = CopyStore{}

// NewCopyStore returns an empty CopyStore (pass it to paho's SetStore).
func NewCopyStore() CopyStore { return CopyStore{paho.NewOrderedMemoryStore()} }

// Put implements paho.Store: a PUBLISH is stored as a shallow copy.
func (s CopyStore) Put(key string, m packets.ControlPacket) {
	s.OrderedMemoryStore.Put(key, copyPublish(m))
}

// Get implements paho.Store: a PUBLISH is returned as a shallow copy.
func (s CopyStore) Get(key string) packets.ControlPacket {
	return copyPublish(s.OrderedMemoryStore.Get(key))
}

// copyPublish returns a shallow copy of a PUBLISH packet and any other packet as it is.
func copyPublish(m packets.ControlPacket) packets.ControlPacket {
	if p, ok := m.(*packets.PublishPacket); ok {
		cp := *p
		return &cp
	}
	return m
}
