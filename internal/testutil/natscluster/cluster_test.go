package natscluster_test

import (
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/natscluster"
)

func connect(t *testing.T, url, id string, h paho.MessageHandler) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).SetDefaultPublishHandler(h))
	if tok := c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// TestClusterRetainedSurvivesNodeLoss: a retained QoS 1 message published on node 0 is
// read on node 2, and after node 0 is gone a client of node 1 still gets it.
func TestClusterRetainedSurvivesNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	start := time.Now()
	c := natscluster.Start(t, 3)
	t.Logf("3-node cluster ready in %v", time.Since(start).Round(time.Millisecond))
	pub := connect(t, c.Nodes[0].MQTTURL(), "pub", nil)
	if tok := pub.Publish("rollcall/v1/x", 1, true, "kept"); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	read := func(node int, id string) string {
		got := make(chan string, 1)
		sub := connect(t, c.Nodes[node].MQTTURL(), id, func(_ paho.Client, m paho.Message) {
			if m.Retained() {
				select {
				case got <- string(m.Payload()):
				default:
				}
			}
		})
		if tok := sub.Subscribe("rollcall/v1/#", 1, nil); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe: %v", tok.Error())
		}
		select {
		case p := <-got:
			return p
		case <-time.After(60 * time.Second): // JetStream replication on a starved machine
			t.Fatalf("no retained message on node %d", node)
			return ""
		}
	}
	if p := read(2, "sub2"); p != "kept" {
		t.Fatalf("node 2: %q", p)
	}
	c.Nodes[0].Shutdown()
	lost := time.Now()
	if p := read(1, "sub1"); p != "kept" {
		t.Fatalf("node 1 after node 0's loss: %q", p)
	}
	t.Logf("retained message read on node 1 %v after node 0 shut down", time.Since(lost).Round(time.Millisecond))
}

// TestShippedNATSConfig: the plant cluster of configs/nats (three nodes, users and
// permissions from auth.conf) forms; a gateway account writes its own subtree and
// nothing else, and a line controller reads the whole catalog and writes only its sync
// topic.
func TestShippedNATSConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	var files []string
	for i := range 3 {
		files = append(files, fmt.Sprintf("../../../configs/nats/nats-%d.conf", i))
	}
	c, err := natscluster.LaunchFiles(t.TempDir(), files, "line-controller", "line-secret", nil)
	if c != nil {
		t.Cleanup(c.Close)
	}
	if err != nil {
		t.Fatal(err)
	}
	login := func(node int, id, user, pass string) paho.Client {
		cl := paho.NewClient(paho.NewClientOptions().AddBroker(c.Nodes[node].MQTTURL()).SetClientID(id).SetProtocolVersion(4).
			SetAutoReconnect(false).SetUsername(user).SetPassword(pass).SetConnectTimeout(10 * time.Second))
		if tok := cl.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("%s connect: %v", user, tok.Error())
		}
		t.Cleanup(func() { cl.Disconnect(100) })
		return cl
	}
	if cl := paho.NewClient(paho.NewClientOptions().AddBroker(c.Nodes[0].MQTTURL()).SetClientID("nobody").
		SetProtocolVersion(4).SetAutoReconnect(false).SetUsername("cell1-gw").SetPassword("wrong")); cl.Connect().WaitTimeout(20*time.Second) && cl.IsConnected() {
		cl.Disconnect(0)
		t.Fatal("a wrong password was accepted")
	}
	gw := login(0, "rollcall-cell1-gw", "cell1-gw", "cell1-secret")
	own := "rollcall/v1/catalog/servo-drive/cell1-gw/drive-1"
	foreign := "rollcall/v1/catalog/servo-drive/cell2-gw/forged"
	if tok := gw.Publish(own, 1, true, `{"own":true}`); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("publish in its own subtree: %v", tok.Error())
	}
	gw.Publish(foreign, 0, true, `{"forged":true}`).WaitTimeout(20 * time.Second) // QoS 0: refused silently
	lc := login(1, "line1-ctrl", "line-controller", "line-secret")
	// Another node learns retained messages from the cluster's stream, a moment after
	// the publishing node acknowledged them (longer on a busy machine): read until it
	// has the record.
	got := testutil.EventuallyValue(t, 20*time.Second, "the gateway's own record, read on another node", func() (map[string][]byte, bool) {
		got := testutil.Retained(t, c.Nodes[2].MQTTURL(), "rollcall/v1/catalog/#",
			testutil.RetainedOptions{Username: "line-controller", Password: "line-secret", ClientID: "line2-ctrl"})
		return got, string(got[own]) == `{"own":true}`
	})
	if _, ok := got[foreign]; ok {
		t.Error("a gateway wrote into another gateway's subtree")
	}
	if tok := lc.Publish("rollcall/v1/catalog/servo-drive/cell1-gw/drive-1", 0, true, "{}"); tok.WaitTimeout(20 * time.Second) {
		if got := testutil.Retained(t, c.Nodes[2].MQTTURL(), own,
			testutil.RetainedOptions{Username: "line-controller", Password: "line-secret", ClientID: "line3-ctrl"}); string(got[own]) != `{"own":true}` {
			t.Errorf("a line controller overwrote a record: %q", got[own])
		}
	}
}
