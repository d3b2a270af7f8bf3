// Package deps pins module requirements while the code that uses them is being written.
// Temporary: removed once every module is imported by real code.
package deps

import (
	_ "github.com/creack/pty"
	_ "github.com/eclipse/paho.mqtt.golang"
	_ "github.com/goburrow/modbus"
	_ "github.com/grandcat/zeroconf"
	_ "github.com/mochi-mqtt/server/v2"
	_ "github.com/mochi-mqtt/server/v2/hooks/auth"
	_ "github.com/mochi-mqtt/server/v2/listeners"
	_ "go.bug.st/serial"
	_ "go.uber.org/goleak"
	_ "golang.org/x/sys/unix"
	_ "gopkg.in/yaml.v3"
)
