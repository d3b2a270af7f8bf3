package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/natscluster"
	"github.com/rollcall-edge/rollcall/protocols/mqtt"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// The simulated gateways renew every record every plantRefresh with a lease of
// plantInstanceLease, as a gateway does with its defaults (health.refresh_interval,
// health.instance_lease).
const (
	plantRefresh       = 10 * time.Second
	plantInstanceLease = 30 * time.Second
)

// plantSize is one run of the plant_scale figure: gateways × instances each.
type plantSize struct{ gateways, instances int }

// figPlantScale measures a plant on a 3-node NATS cluster (in-process nats-server
// v2.15.2, JetStream, MQTT with 3 stream replicas): many simulated gateways (rollcall's
// real publisher, signed records, each preferring another node) publish their catalogs;
// three consumers (registry/client, one per node) then read it. Then node 0 dies. At two
// sizes, for the slopes docs/scaling.md projects from:
//
//   - publish: records per second into the cluster, against the floor of a raw paho
//     QoS 1 retained publisher (same payloads, one connection, 128 in flight) measured
//     in the same run on the same cluster;
//   - converge_start: from a consumer's start to its complete live catalog;
//   - heap_per_instance: consumers' heap (after GC) per instance held;
//   - failover: from node 0's death to every gateway and consumer back in sync, every
//     instance live at every consumer.
func figPlantScale(ctx context.Context, b *bench) error {
	sizes := []plantSize{{10, 100}, {50, 200}}
	if b.opt.quick {
		sizes = []plantSize{{5, 50}, {10, 100}}
	}
	for _, sz := range sizes {
		if err := plantRun(ctx, b, sz); err != nil {
			return fmt.Errorf("plant_scale %d×%d: %w", sz.gateways, sz.instances, err)
		}
	}
	if len(b.plant) == 2 {
		p0, p1 := b.plant[0], b.plant[1]
		dn := float64(p1.size.gateways*p1.size.instances - p0.size.gateways*p0.size.instances)
		heapSlope := (p1.heap - p0.heap) / 3 / dn // bytes per instance per consumer
		b.out.line("plant_consumer_heap_slope", heapSlope, "bytes/instance", 0, noFloor)
		const projected = 100 * 1000
		b.out.note("plant_scale projection to 100 gateways × 1000 instances: consumer heap ≈ %.0f MiB (linear in the "+
			"measured slope); start convergence is bounded by one gateway refresh (%v) plus the time to take in the "+
			"records, not by the retained delivery", heapSlope*projected/(1<<20), plantRefresh)
	}
	return nil
}

// plantPoint is what one plant_scale size measured, for the slopes.
type plantPoint struct {
	size     plantSize
	heap     float64 // bytes, the three consumers together
	converge time.Duration
}

func plantRun(ctx context.Context, b *bench, sz plantSize) error {
	dir := filepath.Join(b.dir, fmt.Sprintf("plant-%dx%d", sz.gateways, sz.instances))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cl, err := natscluster.Launch(dir, 3, nil)
	if cl != nil {
		defer cl.Close()
	}
	if err != nil {
		return err
	}
	urls := cl.URLs()
	total := sz.gateways * sz.instances
	name := fmt.Sprintf("plant_%dx%d", sz.gateways, sz.instances)
	quiet := slog.New(slog.DiscardHandler)

	// Reference: a raw paho publisher, retained QoS 1 records of the same size, after a
	// warm-up round (the cluster creates its MQTT streams with the first session).
	if _, err := rawPublishRate(ctx, urls[1], 200); err != nil {
		return fmt.Errorf("raw publisher: %w", err)
	}
	floorRate, err := rawPublishRate(ctx, urls[1], min(total, 4000))
	if err != nil {
		return fmt.Errorf("raw publisher: %w", err)
	}

	// The gateways: rollcall's publisher, one per simulated gateway.
	pctx, stopPubs := context.WithCancel(ctx)
	var pwg sync.WaitGroup
	defer func() { stopPubs(); pwg.Wait() }()
	pubs := make([]*mqtt.Publisher, sz.gateways)
	start := time.Now()
	for g := range sz.gateways {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		id := fmt.Sprintf("gw-%03d", g)
		p, err := mqtt.NewPublisher(mqtt.PublisherOptions{
			Brokers: cl.URLsFrom(g), Gateway: contract.GatewayRecord{Gateway: id, Epoch: 1,
				Started: contract.Time{Time: start}, Version: "bench"},
			SigningKey: key, StatusLease: 10 * time.Second, Logger: quiet,
		})
		if err != nil {
			return err
		}
		pubs[g] = p
		publishAll := func(rev int64, now time.Time) {
			for i := range sz.instances {
				rec := testutil.FullRecord(id, fmt.Sprintf("%s-d%04d", id, i), rev)
				rec.Epoch, rec.Status = 1, contract.Passing
				rec.ValidUntil = contract.Time{Time: now.Add(plantInstanceLease)}
				p.Publish(rec)
			}
		}
		publishAll(1, start)
		pwg.Add(2)
		go func() { defer pwg.Done(); _ = p.Run(pctx) }()
		go func() { // the gateway's refresh: every record renewed every plantRefresh
			defer pwg.Done()
			tick := time.NewTicker(plantRefresh)
			defer tick.Stop()
			for rev := int64(2); ; rev++ {
				select {
				case <-pctx.Done():
					return
				case now := <-tick.C:
					publishAll(rev, now)
				}
			}
		}()
	}
	if err := waitFor(ctx, 5*time.Minute, "every gateway synced", func() bool {
		for _, p := range pubs {
			if !p.Stats().Synced {
				return false
			}
		}
		return true
	}); err != nil {
		return err
	}
	pubTook := time.Since(start)
	rate := float64(total) / pubTook.Seconds()
	b.out.line(name+"_publish_rate", rate, "records/s", floorRate, valueOverFloor)
	b.out.note("%s: %d gateways published %d signed records through the 3-node cluster in %v; the floor column is a "+
		"reference, not a bound: one raw paho publisher (no rollcall, unsigned), same cluster, same payload size, 128 in flight; "+
		"several publishers in parallel can exceed it", name, sz.gateways, total, pubTook.Round(time.Millisecond))

	// The consumers, one per node, started on the full retained catalog.
	cctx, stopCons := context.WithCancel(ctx)
	var cwg sync.WaitGroup
	defer func() { stopCons(); cwg.Wait() }()
	cons := make([]*client.Client, 3)
	cstart := time.Now()
	for j := range cons {
		c, err := client.New(client.Options{Brokers: cl.URLsFrom(j), ClientID: fmt.Sprintf("bench-consumer-%d", j), Logger: b.log})
		if err != nil {
			return err
		}
		cons[j] = c
		cwg.Add(1)
		go func() { defer cwg.Done(); _ = c.Run(cctx) }()
	}
	if err := waitFor(ctx, 5*time.Minute, "every consumer with the whole catalog live", func() bool {
		for _, c := range cons {
			// Status is cheap; Live builds every instance: only once all are there.
			if c.Status().Instances != total || len(c.Live("servo-drive")) != total {
				return false
			}
		}
		return true
	}); err != nil {
		for j, c := range cons {
			err = fmt.Errorf("%w; consumer %d: %+v, %d live", err, j, c.Status(), len(c.Live("servo-drive")))
		}
		return err
	}
	converge := time.Since(cstart)
	b.out.line(name+"_converge_start_ms", float64(converge.Microseconds())/1000, "ms", 0, noFloor)
	b.out.note("%s: consumers converge within one gateway refresh (%v) at most: a consumer subscribing to the 3-node "+
		"NATS v2.15.2 cluster got only part of a large retained catalog at once (and its sync marker late); the "+
		"gateways' renewals bring the rest", name, plantRefresh)

	// Node 0 dies.
	lost := time.Now()
	cl.Nodes[0].Shutdown()
	if err := waitFor(ctx, 5*time.Minute, "every gateway and consumer back in sync", func() bool {
		for _, p := range pubs {
			if !p.Stats().Synced {
				return false
			}
		}
		for _, c := range cons {
			st := c.Status()
			if !st.Synced || st.Broker == urls[0] || st.Instances != total || len(c.Live("servo-drive")) != total {
				return false
			}
		}
		return true
	}); err != nil {
		return err
	}
	b.out.line(name+"_failover_ms", float64(time.Since(lost).Microseconds())/1000, "ms", 0, noFloor)

	// Consumer memory: the heap they hold, measured by stopping them (the gateways and
	// the nodes, in this process too, keep theirs).
	runtime.GC()
	var with runtime.MemStats
	runtime.ReadMemStats(&with)
	stopCons()
	cwg.Wait()
	cons = nil
	runtime.GC()
	var without runtime.MemStats
	runtime.ReadMemStats(&without)
	held := float64(int64(with.HeapInuse) - int64(without.HeapInuse))
	b.out.line(name+"_consumer_heap_per_instance", held/float64(3*total), "bytes", 0, noFloor)
	b.plant = append(b.plant, plantPoint{size: sz, heap: held, converge: converge})
	b.out.note("%s: after node 0 died, every gateway resynchronised and every consumer had all %d instances live "+
		"again in the time above (consumers are connected to the surviving nodes)", name, total)
	return nil
}

// rawPublishRate publishes n retained QoS 1 messages of a record's size with a plain
// paho client to url, 128 in flight, and returns messages per second.
func rawPublishRate(ctx context.Context, url string, n int) (float64, error) {
	payload, err := contract.EncodeRecord(testutil.FullRecord("raw", "raw", 1))
	if err != nil {
		return 0, err
	}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("bench-raw").SetProtocolVersion(4).
		SetAutoReconnect(false).SetMaxResumePubInFlight(128))
	if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		return 0, fmt.Errorf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	start := time.Now()
	var toks []paho.Token
	for i := range n {
		toks = append(toks, c.Publish(fmt.Sprintf("bench/raw/%d", i), 1, true, payload))
		if len(toks) == 128 || i == n-1 {
			for _, t := range toks {
				if !t.WaitTimeout(30*time.Second) || t.Error() != nil {
					return 0, fmt.Errorf("publish: %v", t.Error())
				}
			}
			toks = toks[:0]
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// waitFor polls cond every 20 ms until it holds, ctx ends or limit passes.
func waitFor(ctx context.Context, limit time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return errors.New("timed out waiting for " + what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
