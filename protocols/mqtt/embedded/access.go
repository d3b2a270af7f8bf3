package embedded

import (
	"bytes"
	"crypto/subtle"
	"strings"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/rollcall-edge/rollcall/contract"
)

// ClientIDPattern in a User's Read or Write filter stands for the slug of the
// connecting client's id (contract.Slug), so one rule gives each client its own topic,
// e.g. "rollcall/v1/consumers/%c/#" for a consumer's sync marker
// (contract.Topics.ConsumerSyncTopic). Like Mosquitto's %c pattern, but slugged, as the
// contract's topics are.
const ClientIDPattern = "%c"

// User is one account of the embedded broker: a password and the topic filters it may
// subscribe to (Read) and publish to (Write). Filters use MQTT wildcards and may hold
// ClientIDPattern; a subscription is allowed when one Read filter covers it.
type User struct {
	Username, Password string
	Read, Write        []string
	// NoRetain: the account may not store anything on the broker: a retained publish
	// is acknowledged and dropped, and a CONNECT with a retained will is refused.
	NoRetain bool
	// Unlimited exempts the account from the retained-message quotas of Limits (the
	// gateway's own account: its catalog must never be crowded out).
	Unlimited bool
}

// AccessOptions configures NewAccess.
type AccessOptions struct {
	Users []User
	// Anonymous, when not nil, lets clients without a username connect with these
	// rights (Username and Password ignored). Nil: anonymous clients are refused.
	Anonymous *User
}

// Access is a mochi hook that authenticates clients against a fixed list of users and
// checks everything a client can make the broker store or forward against the user's
// filters: every PUBLISH (topic, and the retain flag against NoRetain), every
// SUBSCRIBE, and the will given in CONNECT (a will the user could not publish itself,
// or a retained will of a NoRetain user, refuses the connection: CONNACK "not
// authorized", as Mosquitto does). Anything not allowed is denied (mochi's own ledger
// allows what no rule mentions). Pass it as Options.Auth; refusals are counted in
// Broker.Stats and logged once per client.
type Access struct {
	mochi.HookBase
	users map[string]User
	anon  *User
	log   *refusals // set by Start; nil-safe
}

var _ mochi.Hook = (*Access)(nil)

// NewAccess builds the hook.
func NewAccess(o AccessOptions) *Access {
	a := &Access{users: map[string]User{}, anon: o.Anonymous}
	for _, u := range o.Users {
		a.users[u.Username] = u
	}
	return a
}

// ID implements mochi.Hook.
func (a *Access) ID() string { return "rollcall-access" }

// Provides implements mochi.Hook.
func (a *Access) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnPublish, mochi.OnWill}, []byte{b})
}

func (a *Access) user(cl *mochi.Client) (User, bool) {
	if len(cl.Properties.Username) == 0 {
		if a.anon == nil {
			return User{}, false
		}
		return *a.anon, true
	}
	u, ok := a.users[string(cl.Properties.Username)] // no copy of the name
	return u, ok
}

// unlimited reports whether cl's account is exempt from the retained quotas.
func (a *Access) unlimited(cl *mochi.Client) bool {
	u, ok := a.user(cl)
	return ok && u.Unlimited
}

// OnConnectAuthenticate implements mochi.Hook: a known user with the right password,
// or an anonymous client when anonymous access is enabled; and a will, if any, that
// the user may publish (topic in its Write filters; not retained for NoRetain).
func (a *Access) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	name := string(cl.Properties.Username)
	var u User
	switch {
	case name == "" && a.anon == nil:
		a.log.refuse(cl, "anonymous clients not allowed")
		return false
	case name == "":
		u = *a.anon
	default:
		var ok bool
		u, ok = a.users[name]
		if !ok || subtle.ConstantTimeCompare([]byte(u.Password), pk.Connect.Password) != 1 {
			a.log.refuse(cl, "bad user name or password")
			return false
		}
	}
	if pk.Connect.WillFlag {
		if reason := a.willRefused(u, cl.ID, pk.Connect.WillTopic, pk.Connect.WillRetain); reason != "" {
			a.log.refuse(cl, reason)
			return false
		}
	}
	return true
}

// willRefused returns why user u (client id) may not have a will on topic (retained or
// not), or "" when it may.
func (a *Access) willRefused(u User, clientID, topic string, retain bool) string {
	switch {
	case !covered(u.Write, clientID, topic):
		return "will on a topic the client may not publish to: " + topic
	case retain && u.NoRetain:
		return "retained will from an account that may not retain: " + topic
	}
	return ""
}

// OnWill implements mochi.Hook: the will checked at CONNECT is checked again when it is
// sent, and blanked (an empty topic reaches no one and is not stored) if refused.
func (a *Access) OnWill(cl *mochi.Client, will mochi.Will) (mochi.Will, error) {
	u, ok := a.user(cl)
	reason := "unknown account"
	if ok {
		reason = a.willRefused(u, cl.ID, will.TopicName, will.Retain)
	}
	if reason != "" {
		a.log.refuse(cl, reason)
		return mochi.Will{}, nil
	}
	return will, nil
}

// OnACLCheck implements mochi.Hook: topic (a topic on publish, a filter on subscribe)
// must be covered by one of the user's Write (publish) or Read (subscribe) filters.
func (a *Access) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	u, ok := a.user(cl)
	if !ok {
		return false
	}
	filters := u.Read
	if write {
		filters = u.Write
	}
	if covered(filters, cl.ID, topic) {
		return true
	}
	if write {
		a.log.refuse(cl, "publish to a topic the client may not write: "+topic)
	} else {
		a.log.refuse(cl, "subscription to (or delivery on) a topic the client may not read: "+topic)
	}
	return false
}

// OnPublish implements mochi.Hook: a retained publish of a NoRetain account is
// acknowledged and dropped (packets.CodeSuccessIgnore: neither stored nor forwarded).
func (a *Access) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Retain && !cl.Net.Inline {
		if u, ok := a.user(cl); ok && u.NoRetain {
			a.log.refuse(cl, "retained publish from an account that may not retain: "+pk.TopicName)
			return pk, packets.CodeSuccessIgnore
		}
	}
	return pk, nil
}

// covered reports whether one of filters (ClientIDPattern replaced by the slug of
// clientID) matches topic.
func covered(filters []string, clientID, topic string) bool {
	for _, f := range filters {
		if strings.Contains(f, ClientIDPattern) {
			f = strings.ReplaceAll(f, ClientIDPattern, contract.Slug(clientID))
		}
		if filterMatches(f, topic) {
			return true
		}
	}
	return false
}

// filterMatches reports what mochi's auth.RString(filter).FilterMatches(topic) reports
// (auth.MatchTopic, mochi v2.7.9), without allocating: it runs on every publication
// and every delivery. The filter's levels are compared with the topic's in order: "+"
// matches any one level, "#" the rest (at least one level), any other level itself; a
// topic that runs out first does not match, a filter that runs out first does (so "a/b"
// matches "a/b/c", as in mochi).
func filterMatches(filter, topic string) bool {
	more := true // the topic has a level at this position
	for {
		if !more {
			return false
		}
		f, frest, fmore := strings.Cut(filter, "/")
		t, trest, tmore := strings.Cut(topic, "/")
		switch {
		case f == "+":
		case f == "#":
			return true
		case f != t:
			return false
		}
		if !fmore {
			return true
		}
		filter, topic, more = frest, trest, tmore
	}
}
