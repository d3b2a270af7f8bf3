package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/natscluster"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natscluster.LeakOptions()...) }

// TestPlant: `make plant` shows the merged catalog of the three cells — 10 drives, the
// shared one seen by two gateways — and still shows all 10 after NATS node 0 is shut
// down.
func TestPlant(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out testutil.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--kill-node-after", "3s", "--log-level", "error"}, &out, io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	testutil.EventuallyValue(t, 150*time.Second, "10 drives, then node 0 shut down, then 10 drives again", func() (string, bool) {
		s := out.String()
		i := strings.Index(s, "NATS node 0 shut down")
		ok := strings.Contains(s, ": 10 drives") && strings.Contains(s, "cell1-gw,cell2-gw") &&
			i >= 0 && strings.Contains(s[i:], ": 10 drives")
		return "output:\n" + s[max(0, len(s)-4000):], ok // the failure shows the last of it
	})
}
