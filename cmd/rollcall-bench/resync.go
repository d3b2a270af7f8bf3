package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/protocols/mqtt"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// Settings of figure resync.
const (
	resyncRecords = 5000 // instance records of the one gateway
	// resyncQuickRecords with -quick (a smoke run, e.g. under -race in the test suite,
	// where signing 5000 records every resyncRefresh can take longer than the refresh).
	resyncQuickRecords = 500
	resyncBudget       = time.Second          // goal: broker back → the subscriber has every record live again
	resyncWait         = 30 * time.Second     // longest wait for one trial's resynchronisation
	resyncService      = "servo-drive"        // the service of testutil.FullRecord
	resyncGateway      = "gw-resync"          // the gateway id
	resyncLease        = 30 * time.Second     // instance lease, as the gateway's default (3 × refresh)
	resyncRefresh      = 10 * time.Second     // record refresh, as the gateway's default refresh_interval
	resyncStatus       = 10 * time.Second     // status lease of the publisher
	resyncPoll         = 2 * time.Millisecond // how often the figure looks at the clients
	resyncSettle       = 2 * time.Second      // least time connected before a restart
)

// resyncTrial is what one broker restart measured, each from the moment the restarted
// broker accepted TCP connections again ("back").
type resyncTrial struct {
	outage    time.Duration // broker stopped → back
	reconnect time.Duration // back → the subscriber connected again
	records   time.Duration // back → the subscriber synchronised, holding every record
	live      time.Duration // back → every record live (Client.Live) at the subscriber
	gateway   time.Duration // back → the publisher reconnected and had republished everything (Stats().Synced)
	readBack  time.Duration // back → the gateway's read-back of its subtree after the reconnection done
}

// resyncReadBacks runs the gateway's reconciliation loop (gateway.reconcile): after
// every new connection of the publisher, one read-back of its retained subtree
// (mqtt.ReadBack, records checked with the gateway's own key), retried on failure. It
// remembers which connection was last read back, and when.
type resyncReadBacks struct {
	mu     sync.Mutex
	gen    uint64    // publisher connection last read back
	doneAt time.Time // when that read-back returned
	err    error     // the last failure, for errors
}

// run is the loop, until ctx ends; like the gateway's, it looks every 100 ms.
func (r *resyncReadBacks) run(ctx context.Context, p *mqtt.Publisher, o mqtt.ReadBackOptions) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		r.mu.Lock()
		done := r.gen
		r.mu.Unlock()
		if gen := p.Connections(); gen != done && p.Connected() {
			_, err := mqtt.ReadBack(ctx, o)
			r.mu.Lock()
			if err == nil {
				r.gen, r.doneAt = gen, time.Now()
			} else {
				r.err = err
			}
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// after returns when the latest read-back of a connection after gen returned.
func (r *resyncReadBacks) after(gen uint64) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.doneAt, r.gen > gen
}

// figResync measures how fast the catalog comes back after a broker restart: one
// gateway publisher (mqtt.Publisher, the gateway's own, signing its records, renewing
// them every resyncRefresh with a new revision as the gateway does, and reading back
// its subtree after every connection as the gateway's reconciliation does) holds 5000
// records on a Debian Mosquitto; one registry/client subscriber with the gateway's key
// holds them all. Each trial stops the broker, waits until both clients noticed, starts
// it again on the same port and times, from the moment it accepts connections, the
// subscriber's reconnection, its complete catalog, every record live (Client.Live),
// the publisher's resynchronisation and the read-back. Two broker modes: "kept" (persistence on: the
// broker comes back with its retained records, and with the gateway's will "offline"
// it published at shutdown) and "lost" (persistence off: the gateway must republish
// everything).
func figResync(ctx context.Context, b *bench) error {
	const fig = "resync"
	trials, n := 3, resyncRecords
	if b.opt.quick {
		trials, n = 1, resyncQuickRecords
	}
	var worst time.Duration
	for _, mode := range []struct {
		name    string
		persist bool
	}{{"kept", true}, {"lost", false}} {
		res, err := resyncRun(ctx, b, mode.persist, trials, n)
		if err != nil {
			return fmt.Errorf("%s (%s): %w", fig, mode.name, err)
		}
		col := func(f func(resyncTrial) time.Duration) []time.Duration {
			out := make([]time.Duration, len(res))
			for i, r := range res {
				out[i] = f(r)
			}
			return out
		}
		live := col(func(r resyncTrial) time.Duration { return r.live })
		records := col(func(r resyncTrial) time.Duration { return r.records })
		name := fmt.Sprintf("%s_%d_%s", fig, n, mode.name)
		p50 := percentile(slices.Clone(live), 50)
		worst = max(worst, p50)
		budget := ms(resyncBudget)
		b.out.line(name+"_p50", ms(p50), "ms", budget, valueOverBudget)
		b.out.line(name+"_max", ms(percentile(slices.Clone(live), 100)), "ms", budget, valueOverBudget)
		b.out.line(name+"_records_p50", ms(percentile(slices.Clone(records), 50)), "ms", budget, valueOverBudget)
		b.out.line(name+"_reconnect_p50", ms(percentile(col(func(r resyncTrial) time.Duration { return r.reconnect }), 50)), "ms", 0, noFloor)
		b.out.line(name+"_gateway_p50", ms(percentile(col(func(r resyncTrial) time.Duration { return r.gateway }), 50)), "ms", 0, noFloor)
		b.out.line(name+"_readback_p50", ms(percentile(col(func(r resyncTrial) time.Duration { return r.readBack }), 50)), "ms", 0, noFloor)
		b.out.note("%s: %d trials, in order: outages (broker stopped → back) %v; from broker back: subscriber reconnected %v, "+
			"all records synchronised %v, all live %v; gateway republished everything %v, its read-back done %v", name, len(res),
			roundAll(col(func(r resyncTrial) time.Duration { return r.outage })),
			roundAll(col(func(r resyncTrial) time.Duration { return r.reconnect })), roundAll(records), roundAll(live),
			roundAll(col(func(r resyncTrial) time.Duration { return r.gateway })),
			roundAll(col(func(r resyncTrial) time.Duration { return r.readBack })))
	}
	b.out.line(fmt.Sprintf("%s_%d_p50", fig, n), ms(worst), "ms", ms(resyncBudget), valueOverBudget)
	b.out.goalAtMost(fig, "broker back → subscriber has all records live, median, worse of kept/lost store", ms(worst), ms(resyncBudget), "ms")
	b.out.note("%s: Debian Mosquitto restarted on the same port (SIGTERM, then started again); one gateway publisher "+
		"(rollcall's mqtt.Publisher, signed records, refresh every %v, read-back after each connection) and one registry/client subscriber with the "+
		"gateway's key, both with their default timings; \"kept\": persistence on, \"lost\": persistence off; "+
		"the values are times from the broker accepting TCP connections again; the floor column is the budget",
		fig, resyncRefresh)
	return nil
}

// roundAll rounds durations to the millisecond, for notes.
func roundAll(ds []time.Duration) []time.Duration {
	out := slices.Clone(ds)
	for i := range out {
		out[i] = out[i].Round(time.Millisecond)
	}
	return out
}

// resyncRun runs the trials of one broker mode with n records on a broker of its own.
func resyncRun(ctx context.Context, b *bench, persist bool, trials, n int) ([]resyncTrial, error) {
	dir, err := os.MkdirTemp(b.dir, "mosquitto-resync-")
	if err != nil {
		return nil, err
	}
	broker, err := mosquitto.Launch(mosquitto.Options{Dir: dir, Persistent: persist})
	if err != nil {
		return nil, fmt.Errorf("start mosquitto: %w", err)
	}
	defer broker.Stop()
	quiet := slog.New(slog.DiscardHandler)

	pubKey, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	ring := &contract.KeyRing{}
	ring.Add(resyncGateway, pubKey)
	start := time.Now()
	p, err := mqtt.NewPublisher(mqtt.PublisherOptions{
		BrokerURL:  broker.URL(),
		Gateway:    contract.GatewayRecord{Gateway: resyncGateway, Epoch: 1, Started: contract.Time{Time: start}, Version: "bench"},
		SigningKey: key, StatusLease: resyncStatus, Logger: quiet,
	})
	if err != nil {
		return nil, err
	}
	c, err := client.New(client.Options{Brokers: []string{broker.URL()}, ClientID: "bench-resync-consumer",
		TrustedKeys: ring, Logger: quiet})
	if err != nil {
		return nil, err
	}
	publishAll := func(seq int64, now time.Time) {
		for i := range n {
			rec := testutil.FullRecord(resyncGateway, fmt.Sprintf("d%04d", i), 1<<32+seq)
			rec.Epoch, rec.Status = 1, contract.Passing
			rec.ValidUntil = contract.Time{Time: now.Add(resyncLease)}
			p.Publish(rec)
		}
	}
	publishAll(1, start)

	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	rb := &resyncReadBacks{}
	wg.Add(4)
	go func() { defer wg.Done(); _ = p.Run(rctx) }()
	go func() {
		defer wg.Done()
		rb.run(rctx, p, mqtt.ReadBackOptions{BrokerURL: broker.URL(), Gateway: resyncGateway, Keys: ring, Logger: quiet})
	}()
	go func() { defer wg.Done(); _ = c.Run(rctx) }()
	go func() { // the gateway's refresh: every record renewed with a new revision
		defer wg.Done()
		tick := time.NewTicker(resyncRefresh)
		defer tick.Stop()
		for seq := int64(2); ; seq++ {
			select {
			case <-rctx.Done():
				return
			case now := <-tick.C:
				publishAll(seq, now)
			}
		}
	}()

	complete := func() bool {
		st := c.Status()
		return st.Connected && st.Synced && st.Instances == n && len(c.Live(resyncService)) == n
	}
	if err := waitFor(ctx, resyncWait, "the subscriber holding every record live", func() bool {
		return p.Stats().Synced && complete()
	}); err != nil {
		return nil, fmt.Errorf("%w (subscriber %+v, publisher %+v)", err, c.Status(), p.Stats())
	}

	var out []resyncTrial
	for range trials {
		// Restarts are not back to back: both clients have been connected for a while
		// (a connection dropped within a second of its start counts, for the back-off,
		// as a failed attempt: mqtt.Timing.MinReconnectInterval).
		if err := waitFor(ctx, resyncWait, "a settled connection", func() bool {
			st := c.Status()
			return st.Connected && time.Since(st.Since) > resyncSettle && p.Stats().Synced
		}); err != nil {
			return nil, err
		}
		tr, err := resyncTrialRun(ctx, broker, p, c, rb, n)
		if err != nil {
			return nil, err
		}
		out = append(out, tr)
	}
	return out, nil
}

// resyncTrialRun restarts the broker once and times the resynchronisation of n records.
func resyncTrialRun(ctx context.Context, broker *mosquitto.Mosquitto, p *mqtt.Publisher, c *client.Client,
	rb *resyncReadBacks, n int) (resyncTrial, error) {
	var tr resyncTrial
	before := p.Stats().Connects
	stopped := time.Now()
	broker.Stop()
	if err := waitFor(ctx, resyncWait, "both clients disconnected", func() bool {
		return !p.Connected() && !c.Status().Connected
	}); err != nil {
		return tr, err
	}
	// "Back" is the first TCP connection the restarted broker accepts.
	pctx, cancel := context.WithCancel(ctx)
	backC := make(chan time.Time, 1)
	go func() {
		for pctx.Err() == nil {
			if conn, err := net.DialTimeout("tcp", broker.Addr(), 100*time.Millisecond); err == nil {
				backC <- time.Now()
				_ = conn.Close()
				return
			}
			select {
			case <-pctx.Done():
			case <-time.After(time.Millisecond):
			}
		}
		backC <- time.Time{}
	}()
	err := broker.RestartErr()
	if err != nil {
		cancel()
		<-backC
		return tr, err
	}
	back := <-backC
	cancel()
	if back.IsZero() {
		return tr, ctx.Err()
	}
	tr.outage = back.Sub(stopped)

	deadline := time.Now().Add(resyncWait)
	tick := time.NewTicker(resyncPoll)
	defer tick.Stop()
	for tr.live == 0 || tr.gateway == 0 || tr.readBack == 0 {
		now := time.Now()
		st := c.Status()
		if tr.reconnect == 0 && st.Connected && st.Since.After(stopped) {
			tr.reconnect = max(st.Since.Sub(back), 0)
		}
		if tr.records == 0 && st.Connected && st.Since.After(stopped) && st.Synced && st.Instances == n {
			tr.records = now.Sub(back)
		}
		if tr.records != 0 && tr.live == 0 && len(c.Live(resyncService)) == n {
			tr.live = now.Sub(back)
		}
		if tr.gateway == 0 {
			if s := p.Stats(); s.Connects > before && s.Synced {
				tr.gateway = now.Sub(back)
			}
		}
		if at, ok := rb.after(before); ok && tr.readBack == 0 {
			tr.readBack = max(at.Sub(back), time.Nanosecond)
		}
		if now.After(deadline) {
			rb.mu.Lock()
			rbErr := rb.err
			rb.mu.Unlock()
			return tr, fmt.Errorf("no complete resynchronisation within %v of the broker restart (subscriber %+v, %d live; "+
				"publisher %+v; last read-back error %v)", resyncWait, c.Status(), len(c.Live(resyncService)), p.Stats(), rbErr)
		}
		select {
		case <-ctx.Done():
			return tr, ctx.Err()
		case <-tick.C:
		}
	}
	return tr, nil
}
