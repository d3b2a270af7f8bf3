package gateway

import (
	"net"
	"strconv"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

// rtuMaster describes the master of one configured serial bus.
func rtuMaster(b config.SerialBus) (masterConfig, hints) {
	cfg := masterConfig{
		Name: b.Name, Owner: rtuOwner(b.Name), IDScope: b.Name,
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

// rtuOwner and tcpOwner are the registry owner keys of masters (registry.Registration
// Owner): "rtu:<bus>" and "tcp:<host:port>". Routed requests find an instance's master
// by the same rule, from its endpoint (endpointOwner).
func rtuOwner(bus string) string { return "rtu:" + bus }

func tcpOwner(host string, port int) string {
	return "tcp:" + net.JoinHostPort(host, strconv.Itoa(port))
}

// endpointOwner is the owner key of the master that polls a Modbus endpoint; false for
// other transports.
func endpointOwner(ep contract.Endpoint) (string, bool) {
	switch ep.Transport {
	case "modbus-rtu":
		return rtuOwner(ep.Bus), true
	case "modbus-tcp":
		return tcpOwner(ep.Host, ep.Port), true
	}
	return "", false
}

func unitMeta(us []config.UnitMeta) map[int]map[string]string {
	out := map[int]map[string]string{}
	for _, u := range us {
		out[u.Unit] = u.Meta
	}
	return out
}
