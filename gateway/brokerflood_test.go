package gateway_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// TestEmbeddedBrokerUnderAttack runs the real `rollcall gateway` with its embedded
// broker open to anonymous clients (as the demo is) and attacks it as the report did:
// anonymous clients with a retained will on an instance topic and on the gateway's
// status topic, eight 10.7 MB retained publishes, then 400 retained 200 KiB publishes
// on a topic anonymous clients may write. The wills are refused at CONNECT, nothing
// is stored, the gateway's catalog is intact, and the process's resident memory stays
// bounded (the report measured 21 → 355 MB).
func TestEmbeddedBrokerUnderAttack(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	h.StartSim(1)
	bin := buildRollcall(t, h.Dir)
	cfgPath := filepath.Join(h.Dir, "gateway.yaml")
	cfg := fmt.Sprintf(`gateway: {id: flood-gw, state_dir: %s}
mqtt: {broker: embedded, embedded_listen: "127.0.0.1:0", embedded_auth: {allow_anonymous: true}}
http: {listen: "127.0.0.1:0"}
discovery:
  serial: [{name: bus1, device: %s, baud: 115200, units: "1"}]
`, filepath.Join(h.Dir, "state"), h.Link)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs testutil.SyncBuffer
	cmd := exec.Command(bin, "gateway", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	brokerRE := regexp.MustCompile(`broker=(tcp://127\.0\.0\.1:[0-9]+).* http=(127\.0\.0\.1:[0-9]+)`)
	addrs := testutil.EventuallyValue(t, 15*time.Second, "the gateway's broker and HTTP addresses in its log", func() ([]string, bool) {
		m := brokerRE.FindStringSubmatch(logs.String())
		return m, m != nil
	})
	url, metrics := addrs[1], "http://"+addrs[2]+"/metrics"
	const prefix = "rollcall/v1"
	instance := prefix + "/catalog/servo-drive/flood-gw/rollcall-firmware-sim-sim-0001"
	catalog := func() map[string][]byte { return testutil.Retained(t, url, prefix+"/#", testutil.RetainedOptions{}) }
	testutil.Eventually(t, 15*time.Second, "the drive's record retained", func() bool { _, ok := catalog()[instance]; return ok })
	pid := cmd.Process.Pid
	before, err := testutil.ProcStatusKB(pid, "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // measurement only: sample the child's RSS until the attack is over
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if kb, err := testutil.ProcStatusKB(pid, "VmRSS"); err == nil && kb > peak.Load() {
				peak.Store(kb)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	// Wills: refused at CONNECT.
	for _, will := range []string{prefix + "/catalog/servo-drive/flood-gw/evil-w", prefix + "/gateways/flood-gw/status"} {
		o := anonOptions(url).SetWill(will, `{"state":"online","gateway":"flood-gw","epoch":999999}`, 1, true)
		c := paho.NewClient(o)
		if tok := c.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
			c.Disconnect(0)
			t.Fatalf("an anonymous client with a will on %s was let in", will)
		}
	}
	// Oversized retained publishes: each connection is dropped at the packet header.
	big := bytes.Repeat([]byte("x"), 10_700_000)
	for range 8 {
		c := paho.NewClient(anonOptions(url))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("anonymous connect: %v", tok.Error())
		}
		c.Publish(prefix+"/consumers/x/sync", 1, true, big).WaitTimeout(10 * time.Second)
		c.Disconnect(0)
	}
	// Retained publishes within the packet limit, on the one topic anonymous clients
	// may write: acknowledged, never stored.
	o := anonOptions(url)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("anonymous connect: %v", tok.Error())
	}
	own := prefix + "/consumers/" + o.ClientID + "/sync"
	mid := bytes.Repeat([]byte("y"), 200<<10)
	for i := range 400 {
		if tok := c.Publish(fmt.Sprintf("%s/%d", own, i), 1, true, mid); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	c.Disconnect(0)
	close(stop)
	<-sampled

	got := catalog()
	if len(got) != 2 { // the gateway's status and the drive's record, nothing else
		keys := make([]string, 0, len(got))
		for k := range got {
			keys = append(keys, k)
		}
		t.Fatalf("retained after the attack: %v", keys)
	}
	if _, ok := got[instance]; !ok {
		t.Fatal("the drive's record is gone")
	}
	// 2 wills refused at CONNECT, 400 retained publishes dropped (anonymous clients
	// store nothing); the oversized packets are cut by the packet limit, before any hook.
	if n := scrape(t, metrics)["rollcall_broker_refused_total"]; n != 402 {
		t.Errorf("rollcall_broker_refused_total = %v, want 402", n)
	}
	growth := peak.Load() - before
	t.Logf("embedded broker under attack: VmRSS %.1f MiB before, peak %.1f MiB (+%.1f MiB) during 2 refused wills, "+
		"8 × 10.7 MB and 400 × 200 KiB retained publishes",
		float64(before)/1024, float64(peak.Load())/1024, float64(growth)/1024)
	if growth > 48<<10 {
		t.Errorf("resident memory grew by %d KiB during the attack; bound 48 MiB (the broker stores none of it)", growth)
	}
}

// anonOptions are paho options for an anonymous client of url with a fresh client id.
func anonOptions(url string) *paho.ClientOptions {
	return paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("anon-%d", time.Now().UnixNano())).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetWriteTimeout(10 * time.Second)
}
