// Package natscluster runs a real NATS server cluster in-process for tests: n nodes of
// github.com/nats-io/nats-server/v2 with JetStream and the MQTT 3.1.1 listener on
// loopback, routed to each other, each with its own JetStream store in the test's
// temporary directory. rollcall's gateways and consumers reach it as an MQTT broker
// cluster (one URL per node).
//
// Settings that matter (docs/libraries.md, "nats-server as an MQTT broker"): every
// node has a server_name and JetStream; the MQTT streams are created with
// mqtt.stream_replicas = n (left to itself the server may create them with fewer
// replicas while the cluster forms, and then block new MQTT connections for minutes
// after a node loss).
package natscluster

import (
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
)

// Cluster is a running cluster; Nodes are in start order.
type Cluster struct {
	Nodes []*Node
	t     testing.TB
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

// URLs returns the MQTT broker URLs of the nodes, in order.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.MQTTURL()
	}
	return out
}

// Start starts an n-node cluster (n ≥ 1) and returns once every node accepts
// connections and the JetStream meta group has a leader; t.Cleanup shuts every node
// down. Failures end the test.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	dir := t.TempDir()
	c := &Cluster{t: t}
	// Every node is given the cluster ports of all (a JetStream cluster needs its routes
	// configured before it starts); the ports are picked free just before.
	ports := freePorts(t, n)
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p))})
	}
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("node%d", i),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			NoLog:      true,
			NoSigs:     true,
			JetStream:  true,
			StoreDir:   filepath.Join(dir, fmt.Sprintf("node%d", i)),
		}
		o.Cluster.Name = "rollcall-test"
		o.Cluster.Host = "127.0.0.1"
		o.Cluster.Port = ports[i]
		o.Routes = routes
		o.MQTT.Host = "127.0.0.1"
		o.MQTT.Port = server.RANDOM_PORT
		o.MQTT.StreamReplicas = n
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatalf("natscluster: node%d: %v", i, err)
		}
		s.SetLogger(&logger{t: t, name: o.ServerName}, false, false)
		go s.Start()
		node := &Node{Name: o.ServerName, srv: s, opts: o}
		c.Nodes = append(c.Nodes, node)
		t.Cleanup(node.Shutdown)
	}
	for _, node := range c.Nodes {
		if !node.srv.ReadyForConnections(30 * time.Second) {
			t.Fatalf("natscluster: %s not ready for connections within 30 s", node.Name)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
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
			t.Fatalf("natscluster: %d nodes did not form a cluster with a JetStream leader within 30 s", n)
		}
		time.Sleep(20 * time.Millisecond) // polling the servers' state: no event to wait on
	}
	// The MQTT layer comes up after JetStream (its streams are created with the first
	// session): the cluster is ready when an MQTT client gets a session on every node.
	for _, node := range c.Nodes {
		for attempt := 1; ; attempt++ {
			err := probe(node.MQTTURL(), fmt.Sprintf("natscluster-probe-%s-%d", node.Name, attempt))
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("natscluster: %s accepts no MQTT session within 30 s: %v", node.Name, err)
			}
			time.Sleep(50 * time.Millisecond) // retrying a refused connection: no event to wait on
		}
	}
	return c
}

// probe connects an MQTT client with a clean session to url and disconnects.
func probe(url, id string) error {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetProtocolVersion(4).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
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

// logger is a server.Logger that writes a node's errors and warnings to the test log
// (with -v) and, unlike the server's default logger, never exits the process on a
// fatal error: Fatalf fails the test instead.
type logger struct {
	t    testing.TB
	name string
}

func (l *logger) Noticef(string, ...any) {}
func (l *logger) Debugf(string, ...any)  {}
func (l *logger) Tracef(string, ...any)  {}
func (l *logger) Warnf(f string, a ...any) {
	if testing.Verbose() {
		l.t.Logf("%s: warning: "+f, append([]any{l.name}, a...)...)
	}
}
func (l *logger) Errorf(f string, a ...any) {
	if testing.Verbose() {
		l.t.Logf("%s: error: "+f, append([]any{l.name}, a...)...)
	}
}
func (l *logger) Fatalf(f string, a ...any) {
	l.t.Errorf("%s: fatal: "+f, append([]any{l.name}, a...)...)
}

// freePorts returns n distinct free TCP ports on 127.0.0.1 (listened on and closed:
// another process could take one meanwhile, which the cluster start then reports).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var out []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}
