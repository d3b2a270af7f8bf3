// Package natscluster runs a real NATS server cluster in-process, for tests, the bench
// and the plant demo: n nodes of github.com/nats-io/nats-server/v2 with JetStream and
// the MQTT 3.1.1 listener on loopback, routed to each other, each with its own JetStream
// store. rollcall's gateways and consumers reach it as an MQTT broker cluster (one URL
// per node).
//
// Settings that matter (docs/libraries.md, "nats-server as an MQTT broker"): every
// node has a server_name and JetStream; the MQTT streams are created with
// mqtt.stream_replicas = n (left to itself the server may create them with fewer
// replicas while the cluster forms, and then block new MQTT connections for minutes
// after a node loss).
package natscluster

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/goleak"
)

// Cluster is a running cluster; Nodes are in start order.
type Cluster struct {
	Nodes []*Node
}

// Node is one server of the cluster.
type Node struct {
	Name string
	srv  *server.Server
	opts *server.Options
	once sync.Once
}

// MQTTURL returns the node's MQTT listener as a broker URL, "tcp://127.0.0.1:<port>".
func (n *Node) MQTTURL() string {
	return "tcp://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(n.opts.MQTT.Port))
}

// Shutdown stops the node (idempotent): its clients' connections drop, as when the
// box it runs on dies; the others keep the cluster's state (JetStream, 3 replicas).
func (n *Node) Shutdown() {
	n.once.Do(func() {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
	})
}

// URLsFrom returns the MQTT broker URLs of the nodes starting at node i (i modulo the
// number of nodes) and wrapping around: the list of a client that prefers node i and
// fails over to the others in turn.
func (c *Cluster) URLsFrom(i int) []string {
	urls := c.URLs()
	i %= len(urls)
	return append(urls[i:], urls[:i]...)
}

// URLs returns the MQTT broker URLs of the nodes, in order.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.MQTTURL()
	}
	return out
}

// Start starts an n-node cluster (n ≥ 1) in the test's temporary directory (Launch)
// and shuts it down in t.Cleanup; failures end the test. Node warnings and errors go to
// the test log with -v.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	logf := func(format string, args ...any) {
		if testing.Verbose() {
			t.Logf(format, args...)
		}
	}
	c, err := Launch(t.TempDir(), n, logf)
	if c != nil {
		t.Cleanup(c.Close)
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Launch starts an n-node cluster (n ≥ 1) with its JetStream stores under dir and
// returns once every node grants an MQTT session (the MQTT layer comes up after the
// JetStream meta group has a leader), within 30 s. logf receives the nodes' warnings and
// errors (nil: dropped); a fatal error of a node is returned, never an exit of the
// process. On error the returned cluster (if not nil) holds what must be closed.
func Launch(dir string, n int, logf func(format string, args ...any)) (*Cluster, error) {
	return launch(dir, n, logf, "", "", func(int) (*server.Options, error) { return &server.Options{}, nil })
}

// LaunchFiles is Launch with every node's settings read from a nats-server config file
// (files[i] for node i: users, permissions, MQTT and JetStream settings), for testing a
// shipped configuration: the listen addresses, routes and store directory are replaced by
// loopback ones with free ports and dir, as Launch makes them. user and password are an
// account the readiness probe may connect with.
func LaunchFiles(dir string, files []string, user, password string, logf func(format string, args ...any)) (*Cluster, error) {
	return launch(dir, len(files), logf, user, password, func(i int) (*server.Options, error) {
		o, err := server.ProcessConfigFile(files[i])
		if err != nil {
			return nil, fmt.Errorf("natscluster: %s: %w", files[i], err)
		}
		return o, nil
	})
}

func launch(dir string, n int, logf func(format string, args ...any), user, password string,
	base func(i int) (*server.Options, error)) (*Cluster, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	fatal := make(chan error, n)
	c := &Cluster{}
	// Every node is given the cluster ports of all (a JetStream cluster needs its routes
	// configured before it starts); the ports are picked free just before.
	ports, err := freePorts(n)
	if err != nil {
		return nil, err
	}
	// A name of this cluster's own: a surviving node keeps dialling the route port of a
	// node that was shut down, and once that port is free another cluster (another test
	// package's, run side by side) may be given it. NATS refuses a route between
	// clusters of different names; under one shared name the two would merge.
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p))})
	}
	for i := range n {
		o, err := base(i)
		if err != nil {
			return c, err
		}
		if o.ServerName == "" {
			o.ServerName = fmt.Sprintf("node%d", i)
		}
		o.Host, o.Port, o.NoLog, o.NoSigs, o.JetStream = "127.0.0.1", server.RANDOM_PORT, true, true, true
		o.StoreDir = filepath.Join(dir, fmt.Sprintf("node%d", i))
		if o.Cluster.Name == "" {
			o.Cluster.Name = "rollcall"
		}
		o.Cluster.Name += "-" + hex.EncodeToString(suffix)
		o.Cluster.Host = "127.0.0.1"
		o.Cluster.Port = ports[i]
		o.Routes = routes
		o.MQTT.Host = "127.0.0.1"
		o.MQTT.Port = server.RANDOM_PORT
		if o.MQTT.StreamReplicas == 0 {
			o.MQTT.StreamReplicas = n
		}
		s, err := server.NewServer(o)
		if err != nil {
			return c, fmt.Errorf("natscluster: node%d: %w", i, err)
		}
		s.SetLogger(&logger{logf: logf, fatal: fatal, name: o.ServerName}, false, false)
		go s.Start()
		c.Nodes = append(c.Nodes, &Node{Name: o.ServerName, srv: s, opts: o})
	}
	check := func() error {
		select {
		case err := <-fatal:
			return err
		default:
			return nil
		}
	}
	for _, node := range c.Nodes {
		if !node.srv.ReadyForConnections(30 * time.Second) {
			return c, fmt.Errorf("natscluster: %s not ready for connections within 30 s (%v)", node.Name, check())
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := check(); err != nil {
			return c, err
		}
		ready := true
		for _, node := range c.Nodes {
			if node.srv.NumRoutes() < n-1 || !node.srv.JetStreamIsCurrent() {
				ready = false
			}
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			return c, fmt.Errorf("natscluster: %d nodes did not form a cluster with a JetStream leader within 30 s", n)
		}
		time.Sleep(20 * time.Millisecond) // polling the servers' state: no event to wait on
	}
	for _, node := range c.Nodes {
		for attempt := 1; ; attempt++ {
			err := probe(node.MQTTURL(), fmt.Sprintf("natscluster-probe-%s-%d", node.Name, attempt), user, password)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return c, fmt.Errorf("natscluster: %s accepts no MQTT session within 30 s: %w", node.Name, err)
			}
			time.Sleep(50 * time.Millisecond) // retrying a refused connection: no event to wait on
		}
	}
	return c, nil
}

// Close shuts every node down (idempotent).
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		n.Shutdown()
	}
}

// probe connects an MQTT client with a clean session to url (as user, if not empty) and
// disconnects.
func probe(url, id, user, password string) error {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetProtocolVersion(4).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetUsername(user).SetPassword(password))
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("connect %s: no CONNACK within 10 s", url)
	}
	if err := tok.Error(); err != nil {
		return err
	}
	c.Disconnect(0)
	return nil
}

// logger is a server.Logger that passes a node's warnings and errors to logf and, unlike
// the server's default logger, never exits the process on a fatal error: it reports it.
type logger struct {
	logf  func(format string, args ...any)
	fatal chan<- error
	name  string
}

func (l *logger) Noticef(string, ...any) {}
func (l *logger) Debugf(string, ...any)  {}
func (l *logger) Tracef(string, ...any)  {}
func (l *logger) Warnf(f string, a ...any) {
	l.logf("%s: warning: "+f, append([]any{l.name}, a...)...)
}
func (l *logger) Errorf(f string, a ...any) {
	l.logf("%s: error: "+f, append([]any{l.name}, a...)...)
}
func (l *logger) Fatalf(f string, a ...any) {
	select {
	case l.fatal <- fmt.Errorf("natscluster: %s: fatal: "+f, append([]any{l.name}, a...)...):
	default:
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1 (listened on and closed:
// another process could take one meanwhile, which the cluster start then reports).
func freePorts(n int) ([]int, error) {
	var out []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// LeakOptions are the goleak options for a package whose tests run a cluster:
// nats-server ends two of its goroutines asynchronously after Shutdown returns (the
// shared access-time ticker of package ats, stopped when the last file store
// unregisters, and a file store's state-flush loop), so they may outlive a test briefly.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server/ats.Register.func1"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*fileStore).flushStreamStateLoop"),
	}
}
