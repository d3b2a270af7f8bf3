package main

import (
	"net"
	"os"
	"strings"
)

// sdNotify sends state (e.g. "READY=1", "STOPPING=1", "STATUS=…") to the service
// manager when the process runs under systemd with Type=notify: a datagram to the
// AF_UNIX socket named by $NOTIFY_SOCKET (sd_notify(3); a name starting with '@' is in
// the abstract namespace). It reports whether it was sent; without $NOTIFY_SOCKET it
// does nothing.
func sdNotify(state string) bool {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return false
	}
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err == nil
}
