package gateway_test

import (
	"testing"

	"go.uber.org/goleak"
)

// zeroconf v1.0.0's (*Server).probe goroutine is not waited for by Shutdown and ends by
// itself about 3.5 s after a registration; tests that advertise over mDNS leave it
// behind briefly.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/grandcat/zeroconf.(*Server).probe"))
}
