package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// A line controller connects to the broker, waits for the catalog, and picks the drive
// of axis 3 on cell 2 with the shortest poll round trip.
func Example() {
	broker, err := startDemoBroker() // an in-process broker holding a small catalog
	if err != nil {
		fmt.Println(err)
		return
	}
	defer broker.Close()

	c, err := client.New(client.Options{
		Brokers:  []string{broker.URL()},
		Services: []string{"servo-drive"},
		Logger:   slog.New(slog.DiscardHandler), // or your application's logger
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	select { // the whole retained catalog has arrived
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		fmt.Println("no catalog")
		return
	}
	d, err := c.Pick("servo-drive", client.WithMeta("cell", "2"), client.WithMeta("axis", "3"), client.LowestRTT)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s: %s %s unit %d, %s, gateway %s %s\n", d.ID, d.Endpoint.Transport, d.Endpoint.Device,
		d.Endpoint.Unit, d.Status, d.Gateway, d.GatewayState)
	// Output: acme-sn-0032: modbus-rtu /dev/ttyUSB0 unit 4, passing, gateway cell2-gw online
}

// Filters narrow the pool, strategies choose in it, and the error says why nothing
// qualified.
func ExampleClient_Pick() {
	broker, err := startDemoBroker()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer broker.Close()
	c, err := client.New(client.Options{Brokers: []string{broker.URL()}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-c.Ready()

	axis3 := client.WithMeta("axis", "3")
	for range 3 { // RoundRobin, the default, alternates between the two drives of axis 3
		d, _ := c.Pick("servo-drive", axis3)
		fmt.Println("round robin:", d.ID)
	}
	d, _ := c.Pick("servo-drive", axis3, client.LowestRTT)
	fmt.Println("lowest rtt:", d.ID, d.Check.RTTMS, "ms")

	d, _ = c.Pick("servo-drive", client.WithIdentity(func(id contract.Identity) bool { return id.Serial == "SN-0003" }))
	fmt.Println("by serial:", d.ID)

	_, err = c.Pick("servo-drive", client.WithMeta("axis", "4")) // its only drive is critical
	fmt.Println(errors.Is(err, client.ErrNoneLive), err)

	_, err = c.Pick("servo-drive", client.WithMeta("axis", "5")) // degraded: refused by default
	fmt.Println(err)
	d, _ = c.Pick("servo-drive", client.WithMeta("axis", "5"), client.AllowWarning())
	fmt.Println("with AllowWarning:", d.ID, d.Status)
	// Output:
	// round robin: acme-sn-0031
	// round robin: acme-sn-0032
	// round robin: acme-sn-0031
	// lowest rtt: acme-sn-0032 1.9 ms
	// by serial: acme-sn-0031
	// true client: no live instance for service "servo-drive" (meta axis=4): 4 known: 3 not matching the filters, 1 critical
	// client: no live instance for service "servo-drive" (meta axis=5): 4 known: 3 not matching the filters, 1 warning
	// with AllowWarning: acme-sn-0051 warning
}

// Wait blocks until an instance qualifies: here a drive for axis 6 that a gateway
// registers while the controller waits.
func ExampleClient_Wait() {
	broker, err := startDemoBroker()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer broker.Close()
	c, err := client.New(client.Options{Brokers: []string{broker.URL()}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-c.Ready()

	// Nothing for axis 9: Wait gives up when its context ends.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	_, err = c.Wait(short, "servo-drive", client.WithMeta("axis", "9"))
	fmt.Println(errors.Is(err, client.ErrNoneLive), errors.Is(err, context.DeadlineExceeded))

	// The gateway registers a drive for axis 6 while we wait.
	published := make(chan error, 1)
	go func() {
		published <- publish(broker.URL(),
			instanceMsg(drive("cell2-gw", 7, "acme-sn-0061", 7, contract.Passing, 2.0, 1, "cell", "2", "axis", "6")))
	}()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	d, err := c.Wait(wctx, "servo-drive", client.WithMeta("axis", "6"))
	if perr := <-published; perr != nil {
		fmt.Println(perr)
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("axis 6:", d.ID, d.Status)
	// Output:
	// true true
	// axis 6: acme-sn-0061 passing
}

// A subscriber learns that the drive it uses went critical, and picks another.
func ExampleClient_Subscribe() {
	broker, err := startDemoBroker()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer broker.Close()
	c, err := client.New(client.Options{Brokers: []string{broker.URL()}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-c.Ready()

	current, _ := c.Pick("servo-drive", client.WithMeta("axis_group", "A"))
	fmt.Println("using", current.ID)
	changes, unsubscribe := c.Subscribe(16)
	defer unsubscribe()

	// The gateway's polls of that drive fail: it publishes it critical.
	if err := publish(broker.URL(), instanceMsg(drive("cell2-gw", 7, current.ID, current.Endpoint.Unit, contract.Critical, 0, 2,
		"cell", "2", "axis", "3", "axis_group", "A"))); err != nil {
		fmt.Println(err)
		return
	}
	ch := <-changes
	fmt.Println(ch.Kind, ch.Instance.ID, ch.Instance.Status)
	if _, err := c.Pick("servo-drive", client.WithID(current.ID)); err != nil {
		current, _ = c.Pick("servo-drive", client.WithMeta("axis_group", "A"))
		fmt.Println("now using", current.ID)
	}
	// Output:
	// using acme-sn-0031
	// updated acme-sn-0031 critical
	// now using acme-sn-0032
}

// A controller restarted while the broker is unreachable starts from its cache file:
// the entries are stale, and only AllowStale accepts them.
func Example_cacheFile() {
	dir, err := os.MkdirTemp("", "rollcall-client-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	cache := filepath.Join(dir, "catalog.json")

	broker, err := startDemoBroker()
	if err != nil {
		fmt.Println(err)
		return
	}
	url := broker.URL()
	run := func(ctx context.Context) (*client.Client, func()) {
		c, err := client.New(client.Options{Brokers: []string{url}, CacheFile: cache, Logger: slog.New(slog.DiscardHandler),
			MaxReconnectInterval: 100 * time.Millisecond})
		if err != nil {
			panic(err)
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		return c, func() { cancel(); <-done }
	}

	// First run: the catalog arrives, and is written to the cache file when Run returns.
	c, stop := run(context.Background())
	<-c.Ready()
	stop()
	_ = broker.Close() // the broker goes away

	// Second run, broker unreachable.
	c, stop = run(context.Background())
	defer stop()
	_, err = c.Pick("servo-drive", client.WithMeta("axis", "3"))
	fmt.Println(err)
	d, err := c.Pick("servo-drive", client.WithMeta("axis", "3"), client.AllowStale(), client.LowestRTT)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(d.ID, "stale:", d.Stale, "age > 0:", d.Age > 0, "connected:", c.Status().Connected)
	// Output:
	// client: no live instance for service "servo-drive" (meta axis=3): 4 known: 2 not matching the filters, 2 stale
	// acme-sn-0032 stale: true age > 0: true connected: false
}
