package mqtt

import (
	"context"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
)

// TestWatchSkipsMalformed: malformed payloads, records that contradict their topic and
// topics that are not v1 instance topics are skipped; events arrive in order, so the
// first event seen after them is the valid record published last.
func TestWatchSkipsMalformed(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		w := startWatch(t, b.url, "")
		good := testutil.FullRecord("gw", "good", 1)
		goodPayload, err := contract.EncodeRecord(good)
		if err != nil {
			t.Fatal(err)
		}
		mismatch := testutil.FullRecord("gw", "someone-else", 1)
		mismatchPayload, _ := contract.EncodeRecord(mismatch)
		for _, m := range []struct{ topic, payload string }{
			{topics.Instance("servo-drive", "gw", "bad-json"), "{not json"},
			{topics.Instance("servo-drive", "gw", "bad-schema"), `{"schema":"rollcall.instance/v9","id":"bad-schema","service":"servo-drive","gateway":"gw"}`},
			{topics.Instance("servo-drive", "gw", "mismatch"), string(mismatchPayload)},
			{"rollcall/v1/catalog/Servo/gw/upper", string(goodPayload)},
			{topics.GatewayStatus("gw"), `{"state":"sleepy","gateway":"gw"}`},
			{topics.GatewayStatus("gw"), `{"state":"online","gateway":"another"}`},
		} {
			rawPublish(t, b.url, m.topic, false, []byte(m.payload))
		}
		rawPublish(t, b.url, topics.Instance("servo-drive", "gw", "good"), false, goodPayload)
		rawPublish(t, b.url, topics.GatewayStatus("gw"), false, []byte(`{"state":"online","gateway":"gw","epoch":5}`))

		select {
		case e := <-w.cat:
			if e.Record == nil || e.Record.ID != "good" || e.Retained {
				t.Fatalf("first catalog event %+v, want the live good record", e)
			}
		case <-time.After(waitFor):
			t.Fatal("no catalog event")
		}
		select {
		case e := <-w.gw:
			if e.Record == nil || e.Record.Epoch != 5 || e.Gateway != "gw" {
				t.Fatalf("first gateway event %+v, want epoch 5", e)
			}
		case <-time.After(waitFor):
			t.Fatal("no gateway event")
		}
	})
}

// TestWatchService: a watch of one service sees that service only, retained records
// first, and deregistrations as nil records.
func TestWatchService(t *testing.T) {
	b := startEmbedded(t)
	ioRec, servo := testutil.FullRecord("gw", "io-1", 1), testutil.FullRecord("gw", "servo-1", 1)
	ioRec.Service = "io-module"
	for _, r := range []struct {
		topic string
		rec   contract.Record
	}{{topics.Instance(ioRec.Service, "gw", ioRec.ID), ioRec}, {topics.Instance(servo.Service, "gw", servo.ID), servo}} {
		p, err := contract.EncodeRecord(r.rec)
		if err != nil {
			t.Fatal(err)
		}
		rawPublish(t, b.url, r.topic, true, p)
	}
	w := startWatch(t, b.url, "Servo-Drive")
	e := w.catalog(t, "retained servo record", func(CatalogEvent) bool { return true })
	if e.Record == nil || e.Record.ID != "servo-1" || !e.Retained || e.Service != "servo-drive" {
		t.Fatalf("first event %+v", e)
	}
	rawPublish(t, b.url, topics.Instance(ioRec.Service, "gw", ioRec.ID), true, nil)
	rawPublish(t, b.url, topics.Instance(servo.Service, "gw", servo.ID), true, nil)
	for {
		e = w.catalog(t, "deregistration", func(CatalogEvent) bool { return true })
		if e.Service != "servo-drive" {
			t.Fatalf("event of another service: %+v", e)
		}
		if e.Record == nil {
			break // (a live copy of the servo record may come first: mochi forwards after its PUBACK)
		}
	}
	if e.Instance != "servo-1" || e.Retained {
		t.Fatalf("deregistration event %+v", e)
	}
}

func TestWatchErrors(t *testing.T) {
	ctx := context.Background()
	noop := func(CatalogEvent) {}
	if err := Watch(ctx, WatchOptions{}, noop, nil); err == nil {
		t.Error("no URL accepted")
	}
	if err := Watch(ctx, WatchOptions{BrokerURL: "tcp://127.0.0.1:1"}, nil, nil); err == nil {
		t.Error("no callbacks accepted")
	}
	if err := Watch(ctx, WatchOptions{BrokerURL: "tcp://127.0.0.1:1", Topics: contract.Topics{Prefix: "#"}}, noop, nil); err == nil {
		t.Error("bad prefix accepted")
	}
}
