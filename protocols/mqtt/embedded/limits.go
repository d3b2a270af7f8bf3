package embedded

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Defaults of Limits; a zero field takes its default.
const (
	DefaultMaxClients                 = 1024      // connected clients
	DefaultMaxPacketBytes             = 256 << 10 // bytes: a record is at most 64 KiB (contract.MaxPayloadSize)
	DefaultMaxInflight                = 256       // QoS 1/2 messages per client awaiting acknowledgement
	DefaultMaxRetained                = 16384     // retained messages of limited accounts, in total
	DefaultMaxRetainedBytes           = 64 << 20  // bytes of those, in total (topic + payload)
	DefaultMaxRetainedPerAccount      = 4096      // retained messages per limited account
	DefaultMaxRetainedBytesPerAccount = 16 << 20  // bytes per limited account
)

// Limits bound what clients can make the embedded broker hold. Retained quotas count
// the messages stored by accounts that are not User.Unlimited (the gateway's own
// records are not counted, so no other client can crowd them out), per account (a
// user name; every anonymous client together is one account) and in total; a message's
// size is its topic plus its payload, in bytes. A retained publish over a quota is
// acknowledged and dropped, a retained will over a quota is sent but not stored;
// deleting a retained message (an empty payload) is always allowed. Refusals are
// counted in Broker.Stats and logged once per client.
type Limits struct {
	// MaxClients: connections beyond it get CONNACK "server unavailable".
	MaxClients int
	// MaxPacketBytes: a client sending a larger MQTT packet is disconnected before the
	// packet is read (mochi's maximum packet size).
	MaxPacketBytes int
	// MaxInflight: QoS 1/2 messages a client may have unacknowledged in each
	// direction (mochi's receive maximum and maximum in-flight); a client exceeding it
	// is disconnected.
	MaxInflight int
	// MaxRetained and MaxRetainedBytes: in total; MaxRetainedPerAccount and
	// MaxRetainedBytesPerAccount: per account.
	MaxRetained, MaxRetainedPerAccount           int
	MaxRetainedBytes, MaxRetainedBytesPerAccount int64
}

// withDefaults fills zero fields.
func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def64 := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxClients, DefaultMaxClients)
	def(&l.MaxPacketBytes, DefaultMaxPacketBytes)
	def(&l.MaxInflight, DefaultMaxInflight)
	def(&l.MaxRetained, DefaultMaxRetained)
	def(&l.MaxRetainedPerAccount, DefaultMaxRetainedPerAccount)
	def64(&l.MaxRetainedBytes, DefaultMaxRetainedBytes)
	def64(&l.MaxRetainedBytesPerAccount, DefaultMaxRetainedBytesPerAccount)
	return l
}

// Stats are counters of the embedded broker.
type Stats struct {
	Clients int // connected now
	// Retained and RetainedBytes: retained messages (and their bytes) of limited
	// accounts now, as counted against Limits.
	Retained      int
	RetainedBytes int64
	// Refused: connections, publications, subscriptions and wills refused, and
	// retained messages dropped over a quota, since Start.
	Refused uint64
}

// maxLogged bounds the clients whose first refusal was logged (then logging stops).
const maxLogged = 4096

// refusals counts refusals and logs the first of each client; safe for concurrent
// use, and a nil *refusals does nothing.
type refusals struct {
	log    *slog.Logger
	n      atomic.Uint64
	mu     sync.Mutex
	logged map[string]bool // client ids
}

func (r *refusals) refuse(cl *mochi.Client, reason string) {
	if r == nil {
		return
	}
	r.n.Add(1)
	r.mu.Lock()
	first := !r.logged[cl.ID] && len(r.logged) < maxLogged
	if first {
		r.logged[cl.ID] = true
	}
	r.mu.Unlock()
	if first {
		r.log.Warn("embedded broker: refused (logged once per client; see rollcall_broker_refused_total)",
			"client_id", cl.ID, "username", string(cl.Properties.Username), "remote", cl.Net.Remote, "reason", reason)
	}
}

// retainedMsg is one retained message counted against the quotas.
type retainedMsg struct {
	account string
	size    int64
}

// usage is what one account (or the total) holds.
type usage struct {
	n     int
	bytes int64
}

// quotaHook enforces the retained quotas of Limits. It must come before the
// consistency hook, which locks the retained index for every retained publish it sees
// and unlocks only when the message is stored: a message this hook drops is never
// stored.
type quotaHook struct {
	mochi.HookBase
	lim       Limits
	unlimited func(*mochi.Client) bool
	log       *refusals

	mu       sync.Mutex
	topics   map[string]retainedMsg // topic → counted retained message
	accounts map[string]*usage
	total    usage
}

// ID implements mochi.Hook.
func (h *quotaHook) ID() string { return "rollcall-quota" }

// Provides implements mochi.Hook.
func (h *quotaHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnPublish, mochi.OnWill}, []byte{b})
}

// account names cl's account for the quotas.
func account(cl *mochi.Client) string {
	if len(cl.Properties.Username) == 0 {
		return "(anonymous)"
	}
	return "user:" + string(cl.Properties.Username)
}

// admit accounts a retained message of cl on topic of payload bytes, or says why not.
func (h *quotaHook) admit(cl *mochi.Client, topic string, payload int) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	old, had := h.topics[topic]
	release := func() {
		if had {
			u := h.accounts[old.account]
			u.n, u.bytes = u.n-1, u.bytes-old.size
			h.total.n, h.total.bytes = h.total.n-1, h.total.bytes-old.size
			if u.n == 0 {
				delete(h.accounts, old.account)
			}
			delete(h.topics, topic)
		}
	}
	if payload == 0 || (h.unlimited != nil && h.unlimited(cl)) {
		release() // deleted, or now held by an unlimited account
		return ""
	}
	acct, size := account(cl), int64(len(topic)+payload)
	u := h.accounts[acct]
	if u == nil {
		u = &usage{}
	}
	n, b, tn, tb := u.n+1, u.bytes+size, h.total.n+1, h.total.bytes+size
	if had { // replacing: the old message goes
		tn, tb = tn-1, tb-old.size
		if old.account == acct {
			n, b = n-1, b-old.size
		}
	}
	switch {
	case n > h.lim.MaxRetainedPerAccount:
		return fmt.Sprintf("retained message over the per-account quota of %d messages: %s", h.lim.MaxRetainedPerAccount, topic)
	case b > h.lim.MaxRetainedBytesPerAccount:
		return fmt.Sprintf("retained message over the per-account quota of %d bytes: %s", h.lim.MaxRetainedBytesPerAccount, topic)
	case tn > h.lim.MaxRetained:
		return fmt.Sprintf("retained message over the broker's quota of %d messages: %s", h.lim.MaxRetained, topic)
	case tb > h.lim.MaxRetainedBytes:
		return fmt.Sprintf("retained message over the broker's quota of %d bytes: %s", h.lim.MaxRetainedBytes, topic)
	}
	release()
	u.n, u.bytes = u.n+1, u.bytes+size
	h.accounts[acct] = u
	h.total.n, h.total.bytes = h.total.n+1, h.total.bytes+size
	h.topics[topic] = retainedMsg{account: acct, size: size}
	return ""
}

// OnPublish implements mochi.Hook: a retained publish over a quota is acknowledged and
// dropped (packets.CodeSuccessIgnore: neither stored nor forwarded).
func (h *quotaHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if !pk.FixedHeader.Retain || cl.Net.Inline {
		return pk, nil
	}
	// mochi decodes the topic as a string sharing the memory of the whole packet as
	// read (mochi v2.7.9 packets.decodeString); the retained index and the map below
	// would keep that buffer (topic, payload and properties) alive for as long as the
	// message is retained, besides the copy mochi stores. A topic of its own lets the
	// buffer go.
	pk.TopicName = strings.Clone(pk.TopicName)
	if reason := h.admit(cl, pk.TopicName, len(pk.Payload)); reason != "" {
		h.log.refuse(cl, reason)
		return pk, packets.CodeSuccessIgnore
	}
	return pk, nil
}

// OnWill implements mochi.Hook: a retained will over a quota is sent, not stored.
func (h *quotaHook) OnWill(cl *mochi.Client, will mochi.Will) (mochi.Will, error) {
	if will.Retain && will.TopicName != "" {
		if reason := h.admit(cl, will.TopicName, len(will.Payload)); reason != "" {
			h.log.refuse(cl, "will: "+reason)
			will.Retain = false
		}
	}
	return will, nil
}

// usage returns the counted retained messages and bytes.
func (h *quotaHook) usage() (int, int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total.n, h.total.bytes
}
