package client_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// waitFor bounds every wait of these tests.
const waitFor = 20 * time.Second

// runClient creates a client and runs it until the returned stop function is called or
// the test ends. stop returns Run's error.
func runClient(t *testing.T, o client.Options) (*client.Client, func() error) {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testutil.Logger(t, slog.LevelInfo)
	}
	c, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	stop := sync.OnceValue(func() error { cancel(); return <-errc })
	t.Cleanup(func() { _ = stop() })
	return c, stop
}

// waitReady waits until c received a complete catalog once.
func waitReady(t *testing.T, c *client.Client) {
	t.Helper()
	select {
	case <-c.Ready():
	case <-time.After(waitFor):
		t.Fatalf("client not ready after %v: %+v", waitFor, c.Status())
	}
}

// waitCtx is a context for one Wait call, bounded by waitFor.
func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// mustPick is Pick failing the test on error.
func mustPick(t *testing.T, c *client.Client, service string, opts ...client.PickOption) client.Instance {
	t.Helper()
	in, err := c.Pick(service, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// mustRefuse checks that Pick fails with ErrNoneLive and an error mentioning every
// fragment.
func mustRefuse(t *testing.T, c *client.Client, service string, fragments []string, opts ...client.PickOption) {
	t.Helper()
	in, err := c.Pick(service, opts...)
	if err == nil {
		t.Fatalf("Pick returned %s/%s (%s), want ErrNoneLive", in.Gateway, in.ID, in.Status)
	}
	if !errors.Is(err, client.ErrNoneLive) {
		t.Fatalf("Pick error %v does not wrap ErrNoneLive", err)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("Pick error %q does not mention %q", err, f)
		}
	}
}

// ids returns the "gateway/id" of each instance.
func ids(ins []client.Instance) []string {
	out := make([]string, 0, len(ins))
	for _, in := range ins {
		out = append(out, in.Gateway+"/"+in.ID)
	}
	return out
}

// checkInvariants asserts what Pick must never return, over Live and Pick with every
// relaxation the caller may give: no critical instance, none of an offline gateway,
// none of an epoch older than its gateway's, no stale one without AllowStale.
func checkInvariants(t *testing.T, c *client.Client, service string) {
	t.Helper()
	for i, opts := range [][]client.PickOption{
		nil,
		{client.AllowWarning()},
		{client.RequireGatewayOnline(), client.LowestRTT},
		{client.AllowWarning(), client.AllowStale()},
	} {
		allowStale := i == 3
		live := c.Live(service, opts...)
		if in, err := c.Pick(service, opts...); err == nil {
			live = append(live, in)
		}
		for _, in := range live {
			switch {
			case in.Status != "passing" && in.Status != "warning":
				t.Errorf("picked %s/%s in status %s", in.Gateway, in.ID, in.Status)
			case in.GatewayState == client.GatewayOffline:
				t.Errorf("picked %s/%s of an offline gateway", in.Gateway, in.ID)
			case in.GatewayState != client.GatewayUnknown && in.Epoch < in.GatewayEpoch:
				t.Errorf("picked %s/%s of epoch %d, gateway epoch %d", in.Gateway, in.ID, in.Epoch, in.GatewayEpoch)
			case in.Expired:
				t.Errorf("picked %s/%s whose lease expired", in.Gateway, in.ID)
			case in.Stale && !allowStale:
				t.Errorf("picked stale %s/%s without AllowStale", in.Gateway, in.ID)
			}
		}
	}
}
