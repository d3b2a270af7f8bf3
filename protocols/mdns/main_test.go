package mdns

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines, in the parent and in the helpers that the
// namespace test re-executes. zeroconf's Server starts a probe/announce goroutine that
// Shutdown does not wait for and that ends by itself about 3.5 s after the Server was
// registered (two probes, then announcements 1 s and 2 s apart, RFC 6762 §8.3): it is
// the library's, no test can wait for it, so it is ignored.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/grandcat/zeroconf.(*Server).probe"))
}
