package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// TestPickRules publishes crafted retained records into Mosquitto: Pick never returns a
// critical instance, one of an offline gateway, or one of an older epoch than its
// gateway; warning only with AllowWarning; unknown gateway status only without
// RequireGatewayOnline. Then the rules follow live changes.
func TestPickRules(t *testing.T) {
	m := mosquitto.Start(t)
	const svc = "servo-drive"
	if err := publish(m.URL(),
		gatewayMsg("gw-a", "online", 3),
		gatewayMsg("gw-b", "offline", 2),
		// gw-c never published a status.
		instanceMsg(drive("gw-a", 3, "a-pass", 1, contract.Passing, 2, 1, "axis", "1")),
		instanceMsg(drive("gw-a", 3, "a-warn", 2, contract.Warning, 2, 1, "axis", "2")),
		instanceMsg(drive("gw-a", 3, "a-crit", 3, contract.Critical, 0, 1, "axis", "3")),
		instanceMsg(drive("gw-a", 2, "a-old", 4, contract.Passing, 2, 9, "axis", "4")),
		instanceMsg(drive("gw-b", 2, "b-pass", 5, contract.Passing, 2, 1, "axis", "5")),
		instanceMsg(drive("gw-c", 1, "c-pass", 6, contract.Passing, 2, 1, "axis", "6")),
	); err != nil {
		t.Fatal(err)
	}
	c, _ := runClient(t, client.Options{Brokers: []string{m.URL()}})
	waitReady(t, c)

	if got := c.Instances(svc); len(got) != 6 {
		t.Fatalf("Instances: %v, want 6", ids(got))
	}
	states := map[string]string{}
	for _, in := range c.Instances("") {
		states[in.ID] = in.GatewayState
		if in.Stale || in.Age != 0 {
			t.Errorf("%s: Stale %v Age %v while connected, want fresh", in.ID, in.Stale, in.Age)
		}
	}
	if states["a-pass"] != "online" || states["b-pass"] != "offline" || states["c-pass"] != "unknown" {
		t.Errorf("gateway states %v", states)
	}
	for _, tc := range []struct {
		name string
		opts []client.PickOption
		want []string
	}{
		{"default", nil, []string{"gw-a/a-pass", "gw-c/c-pass"}},
		{"AllowWarning", []client.PickOption{client.AllowWarning()}, []string{"gw-a/a-pass", "gw-a/a-warn", "gw-c/c-pass"}},
		{"RequireGatewayOnline", []client.PickOption{client.RequireGatewayOnline()}, []string{"gw-a/a-pass"}},
		{"everything allowed", []client.PickOption{client.AllowWarning(), client.AllowStale()}, []string{"gw-a/a-pass", "gw-a/a-warn", "gw-c/c-pass"}},
	} {
		if got := ids(c.Live(svc, tc.opts...)); !slices.Equal(got, tc.want) {
			t.Errorf("Live %s: %v, want %v", tc.name, got, tc.want)
		}
	}
	for range 100 {
		checkInvariants(t, c, svc)
	}
	mustRefuse(t, c, svc, []string{`"servo-drive"`, "meta axis=3", "1 critical"}, client.WithMeta("axis", "3"), client.AllowWarning())
	mustRefuse(t, c, svc, []string{"meta axis=4", "1 older epoch"}, client.WithMeta("axis", "4"))
	mustRefuse(t, c, svc, []string{"meta axis=5", "1 gateway offline"}, client.WithMeta("axis", "5"))
	mustRefuse(t, c, svc, []string{"meta axis=2", "1 warning"}, client.WithMeta("axis", "2"))
	mustRefuse(t, c, svc, []string{"gateway must be online", "1 gateway status unknown"}, client.WithMeta("axis", "6"), client.RequireGatewayOnline())
	mustRefuse(t, c, "io-module", []string{`"io-module"`, "0 known"})
	if in := mustPick(t, c, svc, client.WithMeta("axis", "2"), client.AllowWarning()); in.ID != "a-warn" {
		t.Errorf("AllowWarning picked %s", in.ID)
	}

	// Live changes: gw-b comes back online in epoch 3; its record of epoch 2 still does
	// not qualify until the gateway republishes it in epoch 3.
	changes, cancel := c.Subscribe(64)
	defer cancel()
	if err := publish(m.URL(), gatewayMsg("gw-b", "online", 3)); err != nil {
		t.Fatal(err)
	}
	ch := nextChange(t, changes, func(ch client.Change) bool { return ch.Instance.ID == "b-pass" })
	if ch.Kind != client.Updated || ch.Instance.GatewayState != "online" || ch.Instance.GatewayEpoch != 3 {
		t.Errorf("change on gateway status: %+v", ch)
	}
	mustRefuse(t, c, svc, []string{"1 older epoch"}, client.WithID("b-pass"))
	if err := publish(m.URL(), instanceMsg(drive("gw-b", 3, "b-pass", 5, contract.Passing, 2, 1, "axis", "5"))); err != nil {
		t.Fatal(err)
	}
	if in, err := c.Wait(waitCtx(t), svc, client.WithID("b-pass")); err != nil || in.Epoch != 3 {
		t.Fatalf("Wait b-pass: %+v %v", in, err)
	}
	// gw-a goes offline (its will): none of its instances qualify, whatever their status.
	if err := publish(m.URL(), gatewayMsg("gw-a", "offline", 3)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitFor, "gw-a offline", func() bool {
		_, err := c.Pick(svc, client.WithGateway("gw-a"))
		return errors.Is(err, client.ErrNoneLive)
	})
	mustRefuse(t, c, svc, []string{"gateway gw-a", "1 gateway offline"}, client.WithID("a-pass"), client.WithGateway("gw-a"))
	checkInvariants(t, c, svc)
	// a-pass goes critical and is then deregistered (empty retained record).
	if err := publish(m.URL(), gatewayMsg("gw-a", "online", 3),
		instanceMsg(drive("gw-a", 3, "a-pass", 1, contract.Critical, 0, 2, "axis", "1")),
		clearMsg(svc, "gw-a", "a-pass")); err != nil {
		t.Fatal(err)
	}
	nextChange(t, changes, func(ch client.Change) bool { return ch.Kind == client.Removed && ch.Instance.ID == "a-pass" })
	if got := len(c.Instances(svc)); got != 5 {
		t.Errorf("after deregistration %d instances, want 5", got)
	}
	checkInvariants(t, c, svc)
}

// nextChange returns the next change for which match is true, checking nothing else.
func nextChange(t *testing.T, changes <-chan client.Change, match func(client.Change) bool) client.Change {
	t.Helper()
	timeout := timer(t, waitFor)
	for {
		select {
		case ch, ok := <-changes:
			if !ok {
				t.Fatal("changes channel closed")
			}
			if match(ch) {
				return ch
			}
		case <-timeout:
			t.Fatalf("no matching change within %v", waitFor)
		}
	}
}

// TestStrategiesAndFilters checks RoundRobin, Random and LowestRTT and every filter.
func TestStrategiesAndFilters(t *testing.T) {
	m := mosquitto.Start(t)
	const svc = "servo-drive"
	d1 := drive("gw-a", 1, "d1", 1, contract.Passing, 3.5, 1, "axis_group", "A", "cell", "2")
	d2 := drive("gw-a", 1, "d2", 2, contract.Passing, 1.2, 1, "axis_group", "A", "cell", "2")
	d3 := drive("gw-b", 1, "d3", 3, contract.Passing, 0.8, 1, "axis_group", "B", "cell", "2")
	d4 := drive("gw-b", 1, "d4", 4, contract.Passing, 0, 1, "axis_group", "B", "cell", "3")
	d2.Identity.Model = "SD-800"
	if err := publish(m.URL(), gatewayMsg("gw-a", "online", 1), gatewayMsg("gw-b", "online", 1),
		instanceMsg(d1), instanceMsg(d2), instanceMsg(d3), instanceMsg(d4)); err != nil {
		t.Fatal(err)
	}
	c, _ := runClient(t, client.Options{Brokers: []string{m.URL()}, Services: []string{"servo-drive"}})
	waitReady(t, c)

	groupA := client.WithMeta("axis_group", "A")
	var rr []string
	for range 4 {
		rr = append(rr, mustPick(t, c, svc, groupA).ID)
	}
	if want := []string{"d1", "d2", "d1", "d2"}; !slices.Equal(rr, want) {
		t.Errorf("round robin %v, want %v", rr, want)
	}
	if got := mustPick(t, c, svc, groupA, client.LowestRTT).ID; got != "d2" {
		t.Errorf("LowestRTT in group A: %s, want d2", got)
	}
	if got := mustPick(t, c, svc, client.LowestRTT).ID; got != "d3" {
		t.Errorf("LowestRTT overall: %s, want d3 (d4's rtt 0 counts as unknown)", got)
	}
	seen := map[string]int{}
	for range 200 {
		seen[mustPick(t, c, svc, groupA, client.Random).ID]++
	}
	if len(seen) != 2 || seen["d1"] == 0 || seen["d2"] == 0 {
		t.Errorf("Random in group A: %v", seen)
	}
	if got := ids(c.Live(svc, client.WithMeta("axis_group", "B"), client.WithMeta("cell", "2"))); !slices.Equal(got, []string{"gw-b/d3"}) {
		t.Errorf("two meta pairs: %v", got)
	}
	if got := ids(c.Live(svc, client.WithGateway("GW-B"))); !slices.Equal(got, []string{"gw-b/d3", "gw-b/d4"}) {
		t.Errorf("WithGateway (slugged): %v", got)
	}
	if got := mustPick(t, c, svc, client.WithID("d4")).ID; got != "d4" {
		t.Errorf("WithID: %s", got)
	}
	if got := ids(c.Live(svc, client.WithIdentity(func(id contract.Identity) bool { return id.Model == "SD-800" }))); !slices.Equal(got, []string{"gw-a/d2"}) {
		t.Errorf("WithIdentity: %v", got)
	}
	mustRefuse(t, c, svc, []string{"meta axis_group=A", "id d3", "4 known: 4 not matching the filters"}, groupA, client.WithID("d3"))
	mustRefuse(t, c, svc, []string{"1 identity filter(s)", "4 not matching"}, client.WithIdentity(func(contract.Identity) bool { return false }))
	// A service the client does not subscribe to.
	mustRefuse(t, c, "io-module", []string{"Options.Services"})
	if s := fmt.Sprint(client.RoundRobin, client.Random, client.LowestRTT); s != "round-robin random lowest-rtt" {
		t.Errorf("strategy names %q", s)
	}
	// Returned instances are copies.
	in := mustPick(t, c, svc, client.WithID("d1"))
	in.Meta["axis_group"] = "Z"
	if again := mustPick(t, c, svc, client.WithID("d1")); again.Meta["axis_group"] != "A" {
		t.Error("modifying a returned instance changed the catalog")
	}
}

// TestMergedGateways: two gateways publish the same service, with an instance id in
// common; the client keeps both (keyed by gateway and id).
func TestMergedGateways(t *testing.T) {
	m := mosquitto.Start(t)
	const svc = "servo-drive"
	if err := publish(m.URL(), gatewayMsg("gw-a", "online", 1), gatewayMsg("gw-b", "online", 4),
		instanceMsg(drive("gw-a", 1, "acme-sn-1", 1, contract.Passing, 1, 1)),
		instanceMsg(drive("gw-b", 4, "acme-sn-1", 1, contract.Passing, 1, 1)),
		instanceMsg(drive("gw-b", 4, "acme-sn-2", 2, contract.Passing, 1, 1)),
	); err != nil {
		t.Fatal(err)
	}
	c, _ := runClient(t, client.Options{Brokers: []string{m.URL()}})
	waitReady(t, c)
	// acme-sn-1 is one device seen by both gateways: one instance.
	live := c.Live(svc)
	if got, want := ids(live), []string{"gw-a/acme-sn-1", "gw-b/acme-sn-2"}; !slices.Equal(got, want) {
		t.Fatalf("merged catalog %v, want %v", got, want)
	}
	if !slices.Equal(live[0].SeenBy, []string{"gw-a", "gw-b"}) || !slices.Equal(live[1].SeenBy, []string{"gw-b"}) {
		t.Fatalf("SeenBy %v, %v", live[0].SeenBy, live[1].SeenBy)
	}
	seen := map[string]bool{}
	for range 2 {
		in := mustPick(t, c, svc)
		seen[in.ID] = true
	}
	if len(seen) != 2 {
		t.Errorf("round robin over the merged pool saw %v", seen)
	}
	if in := mustPick(t, c, svc, client.WithID("acme-sn-1"), client.WithGateway("gw-b")); in.Gateway != "gw-b" || in.Epoch != 4 {
		t.Errorf("WithGateway gw-b: %+v", in)
	}
	// The gateway that heard from the device last wins; passing beats warning.
	newer := drive("gw-b", 4, "acme-sn-1", 1, contract.Passing, 1, 2)
	newer.LastSeen.Time = newer.LastSeen.Add(time.Second)
	changes, cancel := c.Subscribe(16)
	defer cancel()
	if err := publish(m.URL(), instanceMsg(newer)); err != nil {
		t.Fatal(err)
	}
	nextChange(t, changes, func(ch client.Change) bool { return ch.Instance.Gateway == "gw-b" && ch.Instance.ID == "acme-sn-1" })
	if in := mustPick(t, c, svc, client.WithID("acme-sn-1")); in.Gateway != "gw-b" {
		t.Errorf("picked gw-a's older record of acme-sn-1, want gw-b's newer one")
	}
	warn := drive("gw-b", 4, "acme-sn-1", 1, contract.Warning, 1, 3)
	warn.LastSeen.Time = newer.LastSeen.Add(time.Second)
	if err := publish(m.URL(), instanceMsg(warn)); err != nil {
		t.Fatal(err)
	}
	nextChange(t, changes, func(ch client.Change) bool {
		return ch.Instance.Gateway == "gw-b" && ch.Instance.Status == contract.Warning
	})
	if in := mustPick(t, c, svc, client.WithID("acme-sn-1"), client.AllowWarning()); in.Gateway != "gw-a" {
		t.Errorf("picked gw-b's warning record, want gw-a's passing one")
	}
	if err := publish(m.URL(), clearMsg(svc, "gw-a", "acme-sn-1")); err != nil {
		t.Fatal(err)
	}
	ch := nextChange(t, changes, func(ch client.Change) bool { return ch.Kind == client.Removed })
	if ch.Instance.Gateway != "gw-a" || ch.Instance.ID != "acme-sn-1" {
		t.Errorf("change %v %s/%s, want removed gw-a/acme-sn-1", ch.Kind, ch.Instance.Gateway, ch.Instance.ID)
	}
	if got, want := ids(c.Live(svc, client.AllowWarning())), []string{"gw-b/acme-sn-1", "gw-b/acme-sn-2"}; !slices.Equal(got, want) {
		t.Errorf("after deregistration %v, want %v", got, want)
	}
}

// TestSubscribeDropOldest: a subscriber that does not read loses the oldest changes,
// never blocks the client, and is told how many it missed.
func TestSubscribeDropOldest(t *testing.T) {
	m := mosquitto.Start(t)
	const svc = "servo-drive"
	if err := publish(m.URL(), gatewayMsg("gw", "online", 1)); err != nil {
		t.Fatal(err)
	}
	c, stop := runClient(t, client.Options{Brokers: []string{m.URL()}})
	waitReady(t, c)
	slow, cancelSlow := c.Subscribe(2)
	fast, cancelFast := c.Subscribe(0) // counts as 1
	defer cancelFast()
	var msgs []retained
	for i := 1; i <= 5; i++ {
		msgs = append(msgs, instanceMsg(drive("gw", 1, fmt.Sprintf("d%d", i), i, contract.Passing, 1, 1)))
	}
	if err := publish(m.URL(), msgs...); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(waitCtx(t), svc, client.WithID("d5")); err != nil {
		t.Fatal(err) // every change was sent before Wait can see d5
	}
	var got []string
	var missed uint64
	for len(got) < 2 {
		ch := <-slow
		got = append(got, ch.Kind.String()+" "+ch.Instance.ID)
		missed += ch.Missed
	}
	if want := []string{"added d4", "added d5"}; !slices.Equal(got, want) || missed != 3 {
		t.Errorf("slow subscriber got %v with %d missed, want %v and 3 missed", got, missed, want)
	}
	select {
	case ch := <-slow:
		t.Errorf("unexpected change %+v", ch)
	default:
	}
	if ch := <-fast; ch.Instance.ID != "d5" || ch.Missed != 4 {
		t.Errorf("1-slot subscriber got %s, %d missed; want d5, 4 missed", ch.Instance.ID, ch.Missed)
	}
	cancelSlow()
	cancelSlow() // idempotent
	if _, ok := <-slow; ok {
		t.Error("channel open after cancel")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-fast; ok {
		t.Error("channel open after Run returned")
	}
	late, cancelLate := c.Subscribe(1)
	defer cancelLate()
	if _, ok := <-late; ok {
		t.Error("Subscribe after Run returned gave an open channel")
	}
}

// TestWait: Wait returns at once when an instance qualifies, blocks until one does,
// and reports both ErrNoneLive and the context's error when it gives up.
func TestWait(t *testing.T) {
	m := mosquitto.Start(t)
	const svc = "servo-drive"
	c, _ := runClient(t, client.Options{Brokers: []string{m.URL()}})
	waitReady(t, c)

	ctx, cancel := contextWithTimeout(t, 100)
	_, err := c.Wait(ctx, svc, client.WithMeta("axis", "1"))
	cancel()
	if !errors.Is(err, client.ErrNoneLive) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "meta axis=1") {
		t.Fatalf("Wait on nothing: %v", err)
	}

	type result struct {
		in  client.Instance
		err error
	}
	res := make(chan result, 1)
	go func() {
		in, err := c.Wait(waitCtx(t), svc, client.WithMeta("axis", "1"))
		res <- result{in, err}
	}()
	// First a critical one and a passing one of another axis: Wait keeps waiting.
	if err := publish(m.URL(), gatewayMsg("gw", "online", 1),
		instanceMsg(drive("gw", 1, "x", 1, contract.Critical, 0, 1, "axis", "1")),
		instanceMsg(drive("gw", 1, "y", 2, contract.Passing, 1, 1, "axis", "2")),
	); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(waitCtx(t), svc, client.WithID("y")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		t.Fatalf("Wait returned early: %+v %v", r.in, r.err)
	default:
	}
	if err := publish(m.URL(), instanceMsg(drive("gw", 1, "x", 1, contract.Passing, 1, 2, "axis", "1"))); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil || r.in.ID != "x" || r.in.Status != contract.Passing {
		t.Fatalf("Wait: %+v %v", r.in, r.err)
	}
}

// TestUnknownGatewayBeforeSync: an instance whose gateway has no status record is
// refused until the client has the broker's complete retained catalog (its status
// might be an "offline" still on its way), accepted after. Without the sync marker
// the catalog counts as complete SyncTimeout after the subscription.
func TestUnknownGatewayBeforeSync(t *testing.T) {
	m := mosquitto.Start(t)
	const svc = "servo-drive"
	if err := publish(m.URL(), gatewayMsg("gw-a", "online", 1),
		instanceMsg(drive("gw-a", 1, "a1", 1, contract.Passing, 1, 1)),
		instanceMsg(drive("gw-x", 1, "x1", 2, contract.Passing, 1, 1)),
	); err != nil {
		t.Fatal(err)
	}
	never, _ := runClient(t, client.Options{Brokers: []string{m.URL()}, DisableSyncMarker: true, SyncTimeout: time.Hour})
	if _, err := never.Wait(waitCtx(t), svc, client.WithID("a1")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitFor, "x1 received", func() bool { return len(never.Instances(svc)) == 2 })
	mustRefuse(t, never, svc, []string{"1 gateway status not received yet"}, client.WithID("x1"))
	// Connected is set once the SUBACK is handled, which may come just after the
	// retained records.
	s := testutil.EventuallyValue(t, waitFor, "connected", func() (client.Status, bool) { s := never.Status(); return s, s.Connected })
	if s.Synced {
		t.Errorf("status %+v, want connected, not synced", s)
	}

	timed, _ := runClient(t, client.Options{Brokers: []string{m.URL()}, DisableSyncMarker: true, SyncTimeout: 200 * time.Millisecond})
	start := time.Now()
	waitReady(t, timed)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("ready after %v, before SyncTimeout", d)
	}
	if in := mustPick(t, timed, svc, client.WithID("x1")); in.GatewayState != client.GatewayUnknown || in.GatewayEpoch != 0 {
		t.Errorf("x1: gateway %s epoch %d", in.GatewayState, in.GatewayEpoch)
	}
	mustRefuse(t, timed, svc, []string{"1 gateway status unknown"}, client.WithID("x1"), client.RequireGatewayOnline())
}

// TestRevisionOrder: a late, older publication of the same epoch does not replace the
// newer record; a record of another epoch always does.
func TestRevisionOrder(t *testing.T) {
	m := mosquitto.Start(t)
	const svc = "servo-drive"
	c, _ := runClient(t, client.Options{Brokers: []string{m.URL()}})
	waitReady(t, c)
	changes, cancel := c.Subscribe(16)
	defer cancel()
	if err := publish(m.URL(), gatewayMsg("gw", "online", 2),
		instanceMsg(drive("gw", 2, "d", 1, contract.Passing, 1, 5)),
		instanceMsg(drive("gw", 2, "d", 1, contract.Critical, 0, 3)), // late and older
		instanceMsg(drive("gw", 2, "other", 2, contract.Passing, 1, 1)),
	); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(waitCtx(t), svc, client.WithID("other")); err != nil {
		t.Fatal(err)
	}
	if in := mustPick(t, c, svc, client.WithID("d")); in.Revision != 2<<32+5 {
		t.Errorf("revision %#x, want the newer one", in.Revision)
	}
	// A gateway whose state directory was reset starts again at epoch 1.
	if err := publish(m.URL(), gatewayMsg("gw", "online", 1), instanceMsg(drive("gw", 1, "d", 1, contract.Passing, 1, 1))); err != nil {
		t.Fatal(err)
	}
	nextChange(t, changes, func(ch client.Change) bool { return ch.Instance.ID == "d" && ch.Instance.Epoch == 1 })
	if in := mustPick(t, c, svc, client.WithID("d")); in.Revision != 1<<32+1 || in.GatewayEpoch != 1 {
		t.Errorf("after the reset: revision %#x gateway epoch %d", in.Revision, in.GatewayEpoch)
	}
}
