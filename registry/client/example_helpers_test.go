package client_test

import (
	"log/slog"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/protocols/mqtt/embedded"
)

// startDemoBroker starts an in-process broker on a free loopback port and leaves in it
// what gateway "cell2-gw" (epoch 7, online) would publish for cell 2: two drives for
// axis 3 (axis group A), a critical one for axis 4, one in warning for axis 5.
func startDemoBroker() (*embedded.Broker, error) {
	b, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	err = publish(b.URL(),
		gatewayMsg("cell2-gw", "online", 7),
		instanceMsg(drive("cell2-gw", 7, "acme-sn-0031", 3, contract.Passing, 2.4, 1, "cell", "2", "axis", "3", "axis_group", "A")),
		instanceMsg(drive("cell2-gw", 7, "acme-sn-0032", 4, contract.Passing, 1.9, 1, "cell", "2", "axis", "3", "axis_group", "A")),
		instanceMsg(drive("cell2-gw", 7, "acme-sn-0041", 5, contract.Critical, 0, 3, "cell", "2", "axis", "4")),
		instanceMsg(drive("cell2-gw", 7, "acme-sn-0051", 6, contract.Warning, 2.2, 2, "cell", "2", "axis", "5")),
	)
	if err != nil {
		_ = b.Close()
		return nil, err
	}
	return b, nil
}
