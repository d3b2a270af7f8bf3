package gateway

import (
	"path/filepath"
	"strings"
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
			gap := b.FrameGap
			if gap == 0 {
				gap = modbus.T35(b.Baud) + frameGapMargin(b.Device)
			}
			return modbus.OpenRTU(modbus.SerialConfig{
				Device: b.Device, Baud: b.Baud, Parity: b.Parity, StopBits: b.StopBits, Timeout: b.Timeout,
				FrameGap: gap, Resync: gap,
			})
		},
		Baud:       b.Baud,
		Turnaround: b.Turnaround,
	}
	return cfg, hints{DiscoveredBy: []string{"rtu-sweep"}, Meta: b.Meta, UnitMeta: unitMeta(b.Devices)}
}

// frameGapMargin is the silence, beyond t3.5, after which a partial reply counts as
// ended: a pseudo-terminal (firmware-sim) delivers bytes at once (1 ms); a USB adapter
// (ttyUSB*, ttyACM*) buffers received bytes for its latency timer, 16 ms by default on
// FTDI chips (20 ms); a native UART needs little (2 ms).
func frameGapMargin(device string) time.Duration {
	real, err := filepath.EvalSymlinks(device)
	if err != nil {
		real = device
	}
	base := filepath.Base(real)
	switch {
	case strings.HasPrefix(real, "/dev/pts/"):
		return time.Millisecond
	case strings.HasPrefix(base, "ttyUSB"), strings.HasPrefix(base, "ttyACM"):
		return 20 * time.Millisecond
	}
	return 2 * time.Millisecond
}

func unitMeta(us []config.UnitMeta) map[int]map[string]string {
	out := map[int]map[string]string{}
	for _, u := range us {
		out[u.Unit] = u.Meta
	}
	return out
}
