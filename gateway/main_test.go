package gateway_test

import (
	"testing"

	"github.com/rollcall-edge/rollcall/internal/testutil/natscluster"
	"go.uber.org/goleak"
)

// zeroconf v1.0.0's (*Server).probe goroutine is not waited for by Shutdown and ends by
// itself about 3.5 s after a registration; tests that advertise over mDNS leave it
// behind briefly. The NATS cluster tests leave two nats-server goroutines briefly too
// (natscluster.LeakOptions).
func TestMain(m *testing.M) {
	opts := append(natscluster.LeakOptions(), goleak.IgnoreAnyFunction("github.com/grandcat/zeroconf.(*Server).probe"))
	goleak.VerifyTestMain(m, opts...)
}
