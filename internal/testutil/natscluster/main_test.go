package natscluster_test

import (
	"testing"

	"github.com/rollcall-edge/rollcall/internal/testutil/natscluster"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natscluster.LeakOptions()...) }
