package gateway

import (
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

// rtuMaster describes the master of one configured serial bus.
func rtuMaster(b config.SerialBus) (masterConfig, hints) {
	cfg := masterConfig{
		Name: b.Name, Owner: "rtu:" + b.Name, IDScope: b.Name,
		Units: b.UnitList, PollInterval: b.PollInterval, Timeout: b.Timeout, ProbeShare: b.ProbeShare,
		Endpoint: func(unit int) contract.Endpoint {
			return contract.Endpoint{Transport: "modbus-rtu", Bus: b.Name, Device: b.Device, Baud: b.Baud, Unit: unit}
		},
		Open: func() (modbus.Client, error) {
			// FrameGap 0: modbus.OpenRTU picks the margin over t3.5 for the kind of port.
			// The bus's default resync is the frame gap (a Resync below it is raised to it):
			// every request's timeout already covers its device's slowest reply.
			return modbus.OpenRTU(modbus.SerialConfig{
				Device: b.Device, Baud: b.Baud, Parity: b.Parity, StopBits: b.StopBits, Timeout: b.Timeout,
				FrameGap: b.FrameGap, Resync: time.Nanosecond,
			})
		},
		Baud:       b.Baud,
		Turnaround: b.Turnaround,
		Adaptive:   b.AdaptiveTimeout,
	}
	return cfg, hints{DiscoveredBy: []string{"rtu-sweep"}, Meta: b.Meta, UnitMeta: unitMeta(b.Devices)}
}

func unitMeta(us []config.UnitMeta) map[int]map[string]string {
	out := map[int]map[string]string{}
	for _, u := range us {
		out[u.Unit] = u.Meta
	}
	return out
}
