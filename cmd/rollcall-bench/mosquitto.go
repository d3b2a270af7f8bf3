package main

import (
	"fmt"
	"os"

	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
)

// startMosquitto starts the same Mosquitto the integration tests use
// (internal/testutil/mosquitto: a free loopback port, anonymous, no persistence,
// TCP_NODELAY on client sockets so Nagle's algorithm adds no broker-side delay to the
// latencies measured) with its config and log in a new directory under dir. The caller
// stops it with Stop.
func startMosquitto(dir string) (*mosquitto.Mosquitto, error) {
	brokerDir, err := os.MkdirTemp(dir, "mosquitto-")
	if err != nil {
		return nil, fmt.Errorf("mosquitto: %w", err)
	}
	return mosquitto.Launch(mosquitto.Options{Dir: brokerDir})
}
