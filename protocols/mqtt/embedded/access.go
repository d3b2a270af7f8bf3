package embedded

import (
	"bytes"
	"crypto/subtle"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"
)

// User is one account of the embedded broker: a password and the topic filters it may
// subscribe to (Read) and publish to (Write). Filters use MQTT wildcards; a
// subscription is allowed when one Read filter covers it.
type User struct {
	Username, Password string
	Read, Write        []string
}

// AccessOptions configures NewAccess.
type AccessOptions struct {
	Users []User
	// Anonymous, when not nil, lets clients without a username connect with these
	// rights (Username and Password ignored). Nil: anonymous clients are refused.
	Anonymous *User
}

// Access is a mochi hook that authenticates clients against a fixed list of users and
// checks every publish and subscribe against the user's filters; anything not allowed
// is denied (mochi's own ledger allows what no rule mentions). Pass it as
// Options.Auth.
type Access struct {
	mochi.HookBase
	users map[string]User
	anon  *User
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
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck}, []byte{b})
}

func (a *Access) user(cl *mochi.Client) (User, bool) {
	name := string(cl.Properties.Username)
	if name == "" {
		if a.anon == nil {
			return User{}, false
		}
		return *a.anon, true
	}
	u, ok := a.users[name]
	return u, ok
}

// OnConnectAuthenticate implements mochi.Hook: a known user with the right password,
// or an anonymous client when anonymous access is enabled.
func (a *Access) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	name := string(cl.Properties.Username)
	if name == "" {
		return a.anon != nil
	}
	u, ok := a.users[name]
	return ok && subtle.ConstantTimeCompare([]byte(u.Password), pk.Connect.Password) == 1
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
	for _, f := range filters {
		if auth.RString(f).FilterMatches(topic) {
			return true
		}
	}
	return false
}
