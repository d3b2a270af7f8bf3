package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/sim"
	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/protocols/mqtt"
)

// simBusYAML is a firmware-sim config with one bus "bus1" at link, baud bits/s,
// turnaround, and a drive at each unit (serial SIM-<unit, 4 digits>).
func simBusYAML(link string, baud int, turnaround time.Duration, units []int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "buses:\n  - name: bus1\n    link: %s\n    baud: %d\n    turnaround: %s\n", link, baud, turnaround)
	if len(units) == 0 {
		b.WriteString("    drives: []\n")
	} else {
		b.WriteString("    drives:\n")
	}
	for _, u := range units {
		fmt.Fprintf(&b, "      - {unit: %d, serial: SIM-%04d}\n", u, u)
	}
	return b.String()
}

// runningSim is a firmware-sim run in-process until Stop.
type runningSim struct {
	*sim.Sim
	cancel context.CancelFunc
}

// startSim starts firmware-sim in-process from YAML; it runs until Stop or ctx ends.
func startSim(ctx context.Context, text string, log *slog.Logger) (*runningSim, error) {
	cfg, err := sim.ParseConfig("bench-sim.yaml", []byte(text))
	if err != nil {
		return nil, fmt.Errorf("sim config: %w", err)
	}
	s, err := sim.New(cfg, log.With("component", "sim"))
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	if err := s.Start(sctx); err != nil {
		cancel()
		return nil, fmt.Errorf("sim start: %w", err)
	}
	return &runningSim{Sim: s, cancel: cancel}, nil
}

// Stop ends the simulator and waits until it has released its terminals and listeners.
func (s *runningSim) Stop() {
	s.cancel()
	_ = s.Wait()
}

// runningGateway is a gateway run in-process until Stop.
type runningGateway struct {
	*gateway.Gateway
	cancel context.CancelFunc
	done   chan struct{}
}

// startGateway parses text as a gateway config, starts the gateway in-process and
// waits until it has started (broker connection set up, buses being swept).
func startGateway(ctx context.Context, text string, log *slog.Logger) (*runningGateway, *config.Config, error) {
	cfg, err := config.Parse("bench-gateway.yaml", []byte(text))
	if err != nil {
		return nil, nil, fmt.Errorf("gateway config: %w", err)
	}
	g, err := gateway.New(gateway.Options{Config: cfg, Logger: log.With("component", "gateway"), Version: "bench"})
	if err != nil {
		return nil, nil, fmt.Errorf("gateway: %w", err)
	}
	gctx, cancel := context.WithCancel(ctx)
	rg := &runningGateway{Gateway: g, cancel: cancel, done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		defer close(rg.done)
		errc <- g.Run(gctx)
	}()
	select {
	case <-g.Started():
		return rg, cfg, nil
	case err := <-errc:
		cancel()
		if err == nil {
			err = ctx.Err()
		}
		return nil, nil, fmt.Errorf("gateway start: %w", err)
	}
}

// Stop shuts the gateway down (offline status published) and waits for Run to return.
func (g *runningGateway) Stop() {
	g.cancel()
	<-g.done
}

// logFile returns a logger writing to a file in dir (for post-mortems of a figure),
// and a function closing it.
func logFile(dir, name string) (*slog.Logger, func(), error) {
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return nil, nil, err
	}
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo})), func() { _ = f.Close() }, nil
}

// message is one MQTT message received by a subscriber, stamped on arrival.
type message struct {
	topic    string
	payload  []byte
	retained bool
	at       time.Time // arrival in paho's handler (monotonic clock reading included)
}

// record decodes the payload as an instance record; nil for an empty payload.
func (m message) record() (*contract.Record, error) {
	if len(m.payload) == 0 {
		return nil, nil
	}
	var r contract.Record
	if err := json.Unmarshal(m.payload, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", m.topic, err)
	}
	return &r, nil
}

// subscriber is a plain paho client (not rollcall's code), as a line controller would
// use, subscribed to one topic filter at QoS 1. Its handler only stamps and queues.
type subscriber struct {
	client  paho.Client
	msgs    chan message
	dropped atomic.Int64 // messages lost because the queue was full
}

// subscribe connects to broker and subscribes to filter.
func subscribe(broker, clientID, filter string) (*subscriber, error) {
	s := &subscriber{msgs: make(chan message, 1<<14)}
	s.client = paho.NewClient(mqtt.Session{Brokers: []string{broker}, ClientID: clientID, CleanSession: true}.Options())
	if tok := s.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("subscriber connect %s: %v", broker, tok.Error())
	}
	tok := s.client.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		msg := message{topic: m.Topic(), payload: append([]byte(nil), m.Payload()...), retained: m.Retained(), at: time.Now()}
		select {
		case s.msgs <- msg:
		default:
			s.dropped.Add(1)
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		s.client.Disconnect(0)
		return nil, fmt.Errorf("subscribe %s: %v", filter, tok.Error())
	}
	return s, nil
}

// Close disconnects.
func (s *subscriber) Close() { s.client.Disconnect(100) }

// next returns the next message for which match returns true, or an error at the
// deadline or when ctx ends.
func (s *subscriber) next(ctx context.Context, deadline time.Duration, what string, match func(message) bool) (message, error) {
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		select {
		case m := <-s.msgs:
			if match(m) {
				return m, nil
			}
		case <-timer.C:
			return message{}, fmt.Errorf("no %s within %v", what, deadline)
		case <-ctx.Done():
			return message{}, ctx.Err()
		}
	}
}
