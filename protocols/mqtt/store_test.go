package mqtt

import (
	"io"
	"sync"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// TestCopyStoreKeepsPublishApart does to a CopyStore what paho v1.5.1 does around a
// reconnection: the comms goroutine writes the packet it was given (Write sets
// RemainingLength) while resume() reads the store, sets Dup on what Get returned and
// sends that on. Under -race, a store that hands out or keeps the sent object fails here.
func TestCopyStoreKeepsPublishApart(t *testing.T) {
	for name, s := range map[string]interface {
		Put(string, packets.ControlPacket)
		Get(string) packets.ControlPacket
	}{"CopyStore": NewCopyStore(), "trackingStore": newTrackingStore()} {
		t.Run(name, func(t *testing.T) {
			if o, ok := s.(interface{ Open() }); ok {
				o.Open()
			}
			pub := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
			pub.Qos, pub.MessageID, pub.TopicName, pub.Payload = 1, 7, "rollcall/t", []byte("x")
			s.Put("o.7", pub)

			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // the first connection's comms goroutine
				defer wg.Done()
				if err := pub.Write(io.Discard); err != nil {
					t.Error(err)
				}
			}()
			for range 2 { // two resumes, each sending what Get returned
				got, ok := s.Get("o.7").(*packets.PublishPacket)
				if !ok {
					t.Fatalf("Get returned %T, want the stored PUBLISH", got)
				}
				if got == pub {
					t.Fatal("Get returned the packet paho sent")
				}
				got.Dup = true
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := got.Write(io.Discard); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			stored := s.Get("o.7").(*packets.PublishPacket)
			if stored.Dup || stored.MessageID != 7 || string(stored.Payload) != "x" {
				t.Fatalf("stored packet changed: dup %v id %d payload %q", stored.Dup, stored.MessageID, stored.Payload)
			}
		})
	}
}
