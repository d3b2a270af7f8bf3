package natscluster_test

import (
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

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
		case <-time.After(20 * time.Second):
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
