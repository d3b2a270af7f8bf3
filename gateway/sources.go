package gateway

import (
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
	"github.com/rollcall-edge/rollcall/registry"
)

// rtuMaster describes the master of one configured serial bus.
func rtuMaster(b config.SerialBus) (masterConfig, hints) {
	cfg := masterConfig{
		Name: b.Name, Owner: "rtu:" + b.Name, IDScope: b.Name,
		Units: b.UnitList, PollInterval: b.PollInterval, Timeout: b.Timeout, ProbeShare: b.ProbeShare,
		Endpoint: func(unit int) registry.Endpoint {
			return registry.Endpoint{Transport: "modbus-rtu", Bus: b.Name, Device: b.Device, Baud: b.Baud, Unit: unit}
		},
		Open: func() (modbus.Client, error) {
			return modbus.OpenRTU(modbus.SerialConfig{
				Device: b.Device, Baud: b.Baud, Parity: b.Parity, StopBits: b.StopBits, Timeout: b.Timeout,
			})
		},
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
