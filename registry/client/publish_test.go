package client_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rollcall-edge/rollcall/contract"
)

// retained is one retained publication: a record as a gateway would leave it on the
// broker, or an empty payload (a deregistration).
type retained struct {
	topic   string
	payload []byte
}

// instanceMsg is rec's retained record at its contract topic.
func instanceMsg(rec contract.Record) retained {
	b, err := contract.EncodeRecord(rec)
	if err != nil {
		panic(err)
	}
	return retained{topic: contract.Topics{}.Instance(rec.Service, rec.Gateway, rec.ID), payload: b}
}

// clearMsg deregisters an instance: an empty retained record.
func clearMsg(service, gateway, id string) retained {
	return retained{topic: contract.Topics{}.Instance(service, gateway, id), payload: []byte{}}
}

// gatewayMsg is a gateway's retained status record.
func gatewayMsg(gw, state string, epoch int64) retained {
	b, err := contract.EncodeGatewayRecord(contract.GatewayRecord{
		State: state, Gateway: gw, Epoch: epoch, Version: "test",
		Started: contract.Time{Time: time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC)},
	})
	if err != nil {
		panic(err)
	}
	return retained{topic: contract.Topics{}.GatewayStatus(gw), payload: b}
}

// publish connects a plain paho client to url and publishes msgs retained with QoS 1,
// in order, waiting for each acknowledgement, then disconnects.
func publish(url string, msgs ...retained) error {
	var b [6]byte
	_, _ = rand.Read(b[:])
	pc := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("rollcall-test-pub-" + hex.EncodeToString(b[:])).
		SetCleanSession(true).SetConnectTimeout(5 * time.Second).SetAutoReconnect(false))
	if tok := pc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("publish: connect %s: %v", url, tok.Error())
	}
	defer pc.Disconnect(100)
	for _, m := range msgs {
		tok := pc.Publish(m.topic, 1, true, m.payload)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return fmt.Errorf("publish %s: %v", m.topic, tok.Error())
		}
	}
	return nil
}

// drive builds a servo-drive record of gateway gw in the given epoch. meta is
// key, value pairs. The revision is epoch × 2^32 + rev.
func drive(gw string, epoch int64, id string, unit int, status contract.Status, rttMS float64, rev int64, meta ...string) contract.Record {
	m := map[string]string{}
	for i := 0; i+1 < len(meta); i += 2 {
		m[meta[i]] = meta[i+1]
	}
	at := contract.Time{Time: time.Date(2026, 3, 2, 6, 0, 1, 0, time.UTC)}
	return contract.Record{
		Schema: contract.Schema, ID: id, Service: "servo-drive", Gateway: gw,
		Epoch: epoch, Revision: epoch<<32 + rev, Status: status, StatusSince: at, LastSeen: at,
		Endpoint:     contract.Endpoint{Transport: "modbus-rtu", Bus: "bus1", Device: "/dev/ttyUSB0", Baud: 115200, Unit: unit},
		Identity:     contract.Identity{Vendor: "acme", ProductCode: "SD-400", Model: "SD-400-" + fmt.Sprint(unit), Serial: fmt.Sprintf("SN-%04d", unit)},
		Profile:      "acme-sd400",
		State:        map[string]any{"cia402": "operation_enabled", "fault": false, "error_code": 0},
		Check:        contract.Check{IntervalMS: 250, TimeoutMS: 50, RTTMS: rttMS, DetectBudgetMS: 800},
		DiscoveredBy: []string{"rtu-sweep"},
		Meta:         m,
	}
}
