package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// NeedTool returns the path of an external program a test runs as an independent peer
// (a Modbus master, a DNS client), skipping the test without it, unless CI=true: then it
// fails, since .ci/run installs it (Debian package pkg).
func NeedTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (Debian package %s; .ci/run installs it)", name, pkg)
		}
		t.Skipf("%s not found (apt-get install -y %s)", name, pkg)
	}
	return p
}

// MbpollSerial reads the serial number of a firmware-sim drive (holding registers
// 100–107, ASCII, 2 characters per register, NUL padded; docs/registers.md) at unit of
// the Modbus TCP server addr (host:port) with mbpoll, libmodbus's command-line master,
// and returns it; on failure it returns mbpoll's output and error.
func MbpollSerial(mbpoll, addr string, unit int) (serial, out string, err error) {
	host, port, _ := net.SplitHostPort(addr)
	b, err := exec.Command(mbpoll, "-m", "tcp", "-a", strconv.Itoa(unit), "-0", "-r", "100", "-c", "8", "-t", "4:hex",
		"-1", "-o", "5", "-p", port, host).CombinedOutput()
	if err != nil {
		return "", string(b), err
	}
	var s []byte
	for _, line := range strings.Split(string(b), "\n") {
		// "[100]: 	0x5349"
		_, v, ok := strings.Cut(line, "]:")
		if !strings.HasPrefix(line, "[") || !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(v), "0x"), 16, 16)
		if err != nil {
			return "", string(b), fmt.Errorf("register value %q: %w", v, err)
		}
		s = append(s, byte(n>>8), byte(n))
	}
	return strings.TrimRight(string(s), "\x00"), string(b), nil
}

// MbpollWrite writes value to holding register reg (0-based) of unit at the Modbus TCP
// server addr with mbpoll and returns its output.
func MbpollWrite(mbpoll, addr string, unit, reg, value int) (string, error) {
	host, port, _ := net.SplitHostPort(addr)
	b, err := exec.Command(mbpoll, "-m", "tcp", "-a", strconv.Itoa(unit), "-0", "-r", strconv.Itoa(reg), "-t", "4",
		"-1", "-o", "5", "-p", port, host, strconv.Itoa(value)).CombinedOutput()
	return string(b), err
}

// Dig asks the DNS server at addr (host:port) for name and qtype with dig (bind9-
// dnsutils) and returns the lines of its +short answer; it fails the test when dig fails.
func Dig(t testing.TB, dig, addr, name, qtype string) []string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	b, err := exec.Command(dig, "@"+host, "-p", port, "+short", "+time=5", "+tries=1", name, qtype).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s %s: %v\n%s", name, qtype, err, b)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// ProtocDecode decodes payload as message msg of the .proto file proto with protoc
// --decode (protobuf-compiler), a decoder that is not rollcall's, and returns its text
// format output; it fails the test when protoc fails.
func ProtocDecode(t testing.TB, protoc, proto, msg string, payload []byte) string {
	t.Helper()
	cmd := exec.Command(protoc, "--decode="+msg, "--proto_path="+filepath.Dir(proto), filepath.Base(proto))
	cmd.Stdin = bytes.NewReader(payload)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("protoc --decode=%s: %v\n%s", msg, err, out)
	}
	return string(out)
}
