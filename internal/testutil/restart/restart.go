// Package restart runs a test against MQTT brokers that it stops and starts again on
// the same port: the embedded broker and Mosquitto, with and without persistence.
package restart

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/protocols/mqtt/embedded"
)

// Records is the catalog size of the restart tests: more than Mosquitto 2.0 queues for
// one client by default (max_inflight_messages 20 + max_queued_messages 1000), which a
// retained burst delivered at QoS 1 would overflow.
const Records = 1500

// Broker is a broker that a test stops and starts again on the same port.
type Broker struct {
	URL   string // tcp://host:port, the same across restarts
	Stop  func() // stops it; clients see their connection close
	Start func() // starts it again; returns once it accepts connections
}

// EachBroker runs fn as a subtest against the embedded broker (restarted in-process on
// the same port; it loses its retained messages), Mosquitto without persistence (the
// same) and Mosquitto with persistence (keeps is true: it keeps them, and the wills it
// publishes for its connected clients as it shuts down). Mosquitto subtests skip or
// fail as mosquitto.Start does when it is not installed.
func EachBroker(t *testing.T, fn func(t *testing.T, b Broker, keeps bool)) {
	t.Run("embedded", func(t *testing.T) {
		log := testutil.Logger(t, slog.LevelError)
		first, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:0", Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		cur, addr := first, first.Addr()
		t.Cleanup(func() {
			if cur != nil {
				_ = cur.Close()
			}
		})
		fn(t, Broker{URL: first.URL(), Stop: func() { _ = cur.Close(); cur = nil }, Start: func() {
			b, err := embedded.Start(embedded.Options{Listen: addr, Logger: log})
			if err != nil {
				t.Fatalf("embedded broker again on %s: %v", addr, err)
			}
			cur = b
		}}, false)
	})
	for _, persist := range []bool{false, true} {
		t.Run(fmt.Sprintf("mosquitto-persistence-%v", persist), func(t *testing.T) {
			start := mosquitto.Start
			if persist {
				start = mosquitto.StartPersistent
			}
			m := start(t)
			fn(t, Broker{URL: m.URL(), Stop: m.Stop, Start: m.Restart}, persist)
		})
	}
}
