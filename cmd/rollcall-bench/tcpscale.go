package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
)

// Figure tcp_scale: the gateway process alone polling Modbus TCP devices at 1 Hz, at
// several sizes; the headline figures are at scaleDevices, the per-device costs are the
// slopes over the sizes.
const (
	scaleDevices = 1000 // devices of the headline figures (one of every scaleSizes)
	scalePoll    = time.Second
	// Budgets (goals): at scaleDevices, the gateway's CPU share of one core (%) and
	// its peak RSS (MiB); over the sizes, the slope of peak RSS per device (KiB) and of
	// CPU time per poll (µs).
	scaleCPUGoal        = 3.0
	scaleRSSGoal        = 36.0
	scaleRSSPerDevGoal  = 16.0
	scaleCPUPerPollGoal = 25.0
	userHZ              = 100 // clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux)
	procStopGrace       = 10 * time.Second
)

// scaleSizes are the device counts tcp_scale measures, ascending, each with the window
// over which CPU is measured: 100, 1000 and 3000 devices over 20 s each (about 2
// minutes with the starts), or with -quick 100 and 1000 over 5 s.
func scaleSizes(quick bool) (sizes []int, window time.Duration) {
	if quick {
		return []int{100, scaleDevices}, 5 * time.Second
	}
	return []int{100, scaleDevices, 3000}, 20 * time.Second
}

// child is a process started by the figure; stop ends it (SIGTERM, then SIGKILL after
// procStopGrace) and waits for it.
type child struct {
	name   string
	cmd    *exec.Cmd
	log    string        // path of its stderr/stdout file
	exited chan struct{} // closed once waited for
}

// startChild starts bin with args and extra environment variables, stdout and stderr
// to logPath.
func startChild(name, bin, logPath string, env []string, args ...string) (*child, error) {
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() { // ends when the process exits; stop waits for it
		_ = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// pid is the process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// stop sends SIGTERM, waits up to procStopGrace, then kills; it waits for the exit.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		return
	case <-time.After(procStopGrace):
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
}

// waitLog polls the child's log until done returns true for its content, the child
// exits, ctx ends or the deadline passes.
func (c *child) waitLog(ctx context.Context, deadline time.Duration, what string, done func([]byte) bool) ([]byte, error) {
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		b, _ := os.ReadFile(c.log)
		if done(b) {
			return b, nil
		}
		select {
		case <-c.exited:
			return nil, fmt.Errorf("%s exited while waiting for %s; log tail: %s", c.name, what, tail(b, 800))
		case <-timer.C:
			return nil, fmt.Errorf("%s: no %s within %v; log tail: %s", c.name, what, deadline, tail(b, 800))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tail returns the last n bytes of b as trimmed text (for error messages).
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// cpuTicks returns utime+stime of pid in clock ticks (/proc/<pid>/stat fields 14, 15).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: split after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return ut + st, nil
}

// moduleRoot returns dir if set, else the nearest directory at or above the working
// directory whose go.mod declares module github.com/rollcall-edge/rollcall.
func moduleRoot(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
			bytes.Contains(b, []byte("module github.com/rollcall-edge/rollcall\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no rollcall go.mod at or above %s (use -repo)", wd)
		}
	}
}

// buildBinary builds pkg of the module at root into out as `make build` does (static,
// trimmed, stripped).
func buildBinary(ctx context.Context, root, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=bench", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", pkg, err, tail(b, 2000))
	}
	return nil
}

// simDevices is the control API's device list (the fields used here).
type simDevices []struct {
	Requests uint64 `json:"requests"` // requests the device received since the sim started
}

// simRequests sums the requests the simulator's devices received, from its control API.
func simRequests(ctx context.Context, addr string) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/devices", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var ds simDevices
	if err := json.NewDecoder(resp.Body).Decode(&ds); err != nil {
		return 0, fmt.Errorf("GET /v1/devices: %w", err)
	}
	var n uint64
	for _, d := range ds {
		n += d.Requests
	}
	return n, nil
}

// figTCPScale measures figure tcp_scale: firmware-sim (its own process) serves Modbus
// TCP listeners with one drive each; `rollcall gateway` (its own process, embedded
// broker) polls n of them at 1 Hz, for each n of scaleSizes (a fresh gateway each
// time). Once a plain paho subscriber sees n passing instances, the gateway's CPU time
// over a window (utime+stime from /proc/<pid>/stat) divided by the wall time gives its
// share of one core; its peak RSS is VmHWM from /proc/<pid>/status at the end of the
// window. The subscriber stays connected (one consumer, as in a plant). The lines: at
// scaleDevices the CPU share and the peak RSS; over the sizes the least-squares slopes
// of peak RSS per device and of CPU time per poll (against the poll rate the simulator
// counted), each against its budget.
func figTCPScale(ctx context.Context, b *bench) error {
	const fig = "tcp_scale"
	sizes, window := scaleSizes(b.opt.quick)
	maxN := sizes[len(sizes)-1]
	root, err := moduleRoot(b.opt.repo)
	if err != nil {
		return fmt.Errorf("%s: %w", fig, err)
	}
	dir := filepath.Join(b.dir, "tcp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%s: %w", fig, err)
	}
	gwBin, simBin := filepath.Join(dir, "rollcall"), filepath.Join(dir, "firmware-sim")
	b.log.Info("building", "figure", fig, "root", root)
	for _, x := range [][2]string{{"./cmd/rollcall", gwBin}, {"./cmd/firmware-sim", simBin}} {
		if err := buildBinary(ctx, root, x[0], x[1]); err != nil {
			return fmt.Errorf("%s: build: %w", fig, err)
		}
	}

	// The simulator: maxN listeners on free ports, reported in its log; each gateway
	// polls the first n.
	var sc strings.Builder
	sc.WriteString("control: {listen: \"127.0.0.1:0\"}\ntcp:\n")
	for i := 1; i <= maxN; i++ {
		fmt.Fprintf(&sc, "  - {name: t%04d, listen: \"127.0.0.1:0\", drives: [{unit: 1, serial: SIM-T%04d}]}\n", i, i)
	}
	simCfg := filepath.Join(dir, "sim.yaml")
	if err := os.WriteFile(simCfg, []byte(sc.String()), 0o600); err != nil {
		return fmt.Errorf("%s: sim config: %w", fig, err)
	}
	sim, err := startChild("firmware-sim", simBin, filepath.Join(dir, "sim.log"), nil, "--config", simCfg)
	if err != nil {
		return fmt.Errorf("%s: %w", fig, err)
	}
	defer sim.stop()
	simLog, err := sim.waitLog(ctx, 60*time.Second, "'firmware-sim running'", func(b []byte) bool {
		return bytes.Contains(b, []byte("msg=\"firmware-sim running\""))
	})
	if err != nil {
		return fmt.Errorf("%s: start sim: %w", fig, err)
	}
	addrs := regexp.MustCompile(`msg="listener ready" listener=(\S+) addr=(\S+)`).FindAllSubmatch(simLog, -1)
	if len(addrs) != maxN {
		return fmt.Errorf("%s: sim reported %d listeners, want %d", fig, len(addrs), maxN)
	}
	ctl := regexp.MustCompile(`msg="control API listening" addr=(\S+)`).FindSubmatch(simLog)
	if ctl == nil {
		return fmt.Errorf("%s: sim log names no control API address", fig)
	}
	controlAddr := string(ctl[1])

	// gwConfig is the gateway's config for the first n listeners: static TCP targets,
	// embedded broker on a free port, its own state directory.
	gwConfig := func(n int, state string) string {
		var gc strings.Builder
		fmt.Fprintf(&gc, "gateway: {id: bench-tcp, state_dir: %s}\n"+
			"mqtt: {broker: embedded, embedded_listen: \"127.0.0.1:0\", embedded_auth: {allow_anonymous: true}}\n"+
			"limits: {max_instances: %d}\n", filepath.Join(dir, state), max(2000, 2*n))
		fmt.Fprintf(&gc, "health: {poll_interval: %v}\ndiscovery:\n  tcp:\n", scalePoll)
		for _, a := range addrs[:n] {
			fmt.Fprintf(&gc, "    - {name: %s, address: \"%s\", units: \"1\"}\n", a[1], a[2])
		}
		return gc.String()
	}

	o := b.out
	var head *scaleResult
	var devs, hwm, polls, cpu []float64
	for _, n := range sizes {
		gwCfg := filepath.Join(dir, fmt.Sprintf("gateway-%d.yaml", n))
		if err := os.WriteFile(gwCfg, []byte(gwConfig(n, fmt.Sprintf("state-%d", n))), 0o600); err != nil {
			return fmt.Errorf("%s: gateway config: %w", fig, err)
		}
		r, err := scalePass(ctx, b, sim, controlAddr, n, window, "rollcall gateway", gwBin,
			filepath.Join(dir, fmt.Sprintf("gateway-%d.log", n)), "gateway", "--config", gwCfg)
		if err != nil {
			return fmt.Errorf("%s: %d devices: %w", fig, n, err)
		}
		o.note("%s %d devices: %d firmware-sim TCP listeners (one drive each, separate process), `rollcall gateway` (separate process, "+
			"embedded broker, one paho subscriber) with %d discovery.tcp targets, poll_interval %v; all passing %v after gateway start; "+
			"window %v: the sim counted %.1f requests/s (configured %d/s); gateway CPU %.2f %% of one core (%.1f µs per request), "+
			"sim process CPU %.1f %%; gateway VmHWM %.1f MiB (%.1f KiB per device), VmRSS at end %.1f MiB (file pages %.1f MiB), %d threads; last gctrace: %s",
			fig, n, n, n, scalePoll, r.allPassing.Round(time.Millisecond), r.wall.Round(time.Millisecond), r.pollRate,
			int(time.Duration(n)*time.Second/scalePoll), r.share, 1e4*r.share/max(r.pollRate, 1), r.simShare,
			float64(r.hwmKB)/1024, float64(r.hwmKB)/float64(n), float64(r.rssKB)/1024, float64(r.rssFileKB)/1024, r.threads, r.gctrace)
		devs = append(devs, float64(n))
		hwm = append(hwm, float64(r.hwmKB))
		polls = append(polls, r.pollRate)
		cpu = append(cpu, r.share/100) // core-seconds per second
		if n == scaleDevices {
			head = r
		}
	}
	rssSlope, rssBase := fitLine(devs, hwm)  // KiB per device, KiB
	cpuSlope, cpuBase := fitLine(polls, cpu) // core-seconds per request, core-seconds per second
	o.note("%s slopes (least squares over %v devices): peak RSS %.1f MiB + %.2f KiB per device; CPU %.2f %% of one core + %.1f µs per poll",
		fig, sizes, rssBase/1024, rssSlope, 100*cpuBase, 1e6*cpuSlope)
	o.line("tcp_rss_per_device", rssSlope, "KiB", scaleRSSPerDevGoal, valueOverBudget)
	o.line("tcp_cpu_per_poll", 1e6*cpuSlope, "µs", scaleCPUPerPollGoal, valueOverBudget)
	o.line("tcp_scale_cpu_share", head.share, "%core", scaleCPUGoal, valueOverBudget)
	o.line("tcp_scale_peak_rss", float64(head.hwmKB)/1024, "MiB", scaleRSSGoal, valueOverBudget)
	o.goalAtMost("tcp_rss_per_device", "gateway peak RSS per Modbus TCP device (slope)", rssSlope, scaleRSSPerDevGoal, "KiB")
	o.goalAtMost("tcp_cpu_per_poll", "gateway CPU time per poll (slope)", 1e6*cpuSlope, scaleCPUPerPollGoal, "µs")
	o.goalAtMost(fig+"_cpu", fmt.Sprintf("gateway CPU share of one core at %d devices", scaleDevices), head.share, scaleCPUGoal, "%")
	o.goalAtMost(fig+"_rss", fmt.Sprintf("gateway peak RSS (VmHWM) at %d devices", scaleDevices), float64(head.hwmKB)/1024, scaleRSSGoal, "MiB")

	if b.opt.gwProfile == "" {
		return nil
	}
	// Diagnostics: the same gateway code run by this command's -gateway-process mode,
	// which writes CPU and heap profiles and memory statistics.
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("%s: profile pass: %w", fig, err)
	}
	if err := os.MkdirAll(b.opt.gwProfile, 0o755); err != nil {
		return fmt.Errorf("%s: profile pass: %w", fig, err)
	}
	pcfgPath := filepath.Join(dir, "gateway-profile.yaml")
	if err := os.WriteFile(pcfgPath, []byte(gwConfig(scaleDevices, "state-profile")), 0o600); err != nil {
		return fmt.Errorf("%s: profile pass: %w", fig, err)
	}
	pr, err := scalePass(ctx, b, sim, controlAddr, scaleDevices, window, "profiled gateway", self,
		filepath.Join(dir, "gateway-profile.log"), "-gateway-process", pcfgPath, "-profile-dir", b.opt.gwProfile)
	if err != nil {
		return fmt.Errorf("%s: profile pass: %w", fig, err)
	}
	var mem gwMem
	if err := json.Unmarshal(mustRead(filepath.Join(b.opt.gwProfile, gwMemStats)), &mem); err != nil {
		return fmt.Errorf("%s: profile pass: memory statistics: %w", fig, err)
	}
	mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
	o.note("%s profile pass at %d devices (same gateway code in this command's -gateway-process mode, profiles in %s): CPU %.1f %% of one core, "+
		"VmHWM %.1f MiB; at the end: %d goroutines, heap in use %.1f MiB (allocated %.1f), heap idle not returned %.1f MiB, "+
		"stacks %.1f MiB, runtime metadata %.1f MiB, Go Sys %.1f MiB, next GC at %.1f MiB, %d GCs",
		fig, scaleDevices, b.opt.gwProfile, pr.share, float64(pr.hwmKB)/1024, mem.Goroutines, mib(mem.HeapInuse), mib(mem.HeapAlloc),
		mib(mem.HeapIdleRet), mib(mem.StackInuse), mib(mem.RuntimeSys), mib(mem.Sys), mib(mem.NextGC), mem.NumGC)
	for _, l := range pprofTop(ctx, self, filepath.Join(b.opt.gwProfile, gwHeapProfile), 12, "-sample_index=inuse_space") {
		o.note("%s heap: %s", fig, l)
	}
	if base := filepath.Join(b.opt.gwProfile, gwHeapBase); mustRead(base) != nil {
		// What the steady state allocates (from gwHeapBaseAfter after the start to the
		// end): the garbage collector's work is proportional to it.
		for _, l := range pprofTop(ctx, self, filepath.Join(b.opt.gwProfile, gwHeapProfile), 12,
			"-sample_index=alloc_space", "-base", base) {
			o.note("%s alloc: %s", fig, l)
		}
	}
	for _, l := range pprofTop(ctx, self, filepath.Join(b.opt.gwProfile, gwCPUProfile), 12) {
		o.note("%s cpu: %s", fig, l)
	}
	return nil
}

// fitLine is the least-squares line y = slope·x + intercept through the points (xs[i],
// ys[i]); with fewer than two distinct xs the slope is NaN.
func fitLine(xs, ys []float64) (slope, intercept float64) {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if n < 2 || d == 0 {
		return math.NaN(), math.NaN()
	}
	slope = (n*sxy - sx*sy) / d
	return slope, (sy - slope*sx) / n
}

// scaleResult is one pass of figure tcp_scale.
type scaleResult struct {
	allPassing time.Duration // gateway start → every device passing at the subscriber
	wall       time.Duration // the window
	share      float64       // gateway CPU, % of one core, over the window
	simShare   float64       // simulator CPU, % of one core, over the window
	pollRate   float64       // requests/s the simulator counted over the window
	hwmKB      int64         // VmHWM at the end of the window
	rssKB      int64         // VmRSS at the end of the window
	rssFileKB  int64         // of which file pages (RssFile: the binary's own text and data, shared and reclaimable)
	threads    int64         // OS threads at the end of the window
	gctrace    string        // the gateway's last GODEBUG=gctrace=1 line
}

// scalePass starts a gateway process (bin args…, GODEBUG=gctrace=1, log to logPath),
// waits until a subscriber on its embedded broker sees its devices (n) passing,
// measures the window and stops the gateway.
func scalePass(ctx context.Context, b *bench, sim *child, controlAddr string, devices int, window time.Duration,
	name, bin, logPath string, args ...string) (*scaleResult, error) {
	res := &scaleResult{}
	gwStart := time.Now()
	gw, err := startChild(name, bin, logPath, []string{"GODEBUG=gctrace=1"}, args...)
	if err != nil {
		return nil, err
	}
	defer gw.stop()
	gwLog, err := gw.waitLog(ctx, 30*time.Second, "'gateway starting'", func(b []byte) bool {
		return bytes.Contains(b, []byte("msg=\"gateway starting\""))
	})
	if err != nil {
		return nil, fmt.Errorf("start gateway: %w", err)
	}
	bm := regexp.MustCompile(`msg="gateway starting" .*broker=(\S+)`).FindSubmatch(gwLog)
	if bm == nil {
		return nil, fmt.Errorf("gateway log names no broker URL")
	}
	sub, err := subscribe(string(bm[1]), fmt.Sprintf("bench-tcp-sub-%d", time.Now().UnixNano()), contract.Topics{}.CatalogFilter(""))
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	defer sub.Close()
	status := map[string]contract.Status{}
	passing := 0
	for passing < devices {
		m, err := sub.next(ctx, 120*time.Second, fmt.Sprintf("%d passing instances (have %d)", devices, passing),
			func(message) bool { return true })
		if err != nil {
			return nil, fmt.Errorf("wait for %d passing: %w", devices, err)
		}
		rec, err := m.record()
		if err != nil || rec == nil {
			continue
		}
		if status[rec.ID] == contract.Passing {
			passing--
		}
		status[rec.ID] = rec.Status
		if rec.Status == contract.Passing {
			passing++
		}
	}
	res.allPassing = time.Since(gwStart)
	b.log.Info("all passing", "gateway", name, "devices", devices, "after", res.allPassing)

	t0, err := cpuTicks(gw.pid())
	if err != nil {
		return nil, fmt.Errorf("cpu: %w", err)
	}
	s0, _ := cpuTicks(sim.pid())
	r0, err := simRequests(ctx, controlAddr)
	if err != nil {
		return nil, fmt.Errorf("sim requests: %w", err)
	}
	w0 := time.Now()
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-gw.exited:
		return nil, fmt.Errorf("gateway exited during the window; log tail: %s", tail(mustRead(gw.log), 800))
	}
	t1, err := cpuTicks(gw.pid())
	if err != nil {
		return nil, fmt.Errorf("cpu: %w", err)
	}
	res.wall = time.Since(w0)
	s1, _ := cpuTicks(sim.pid())
	r1, err := simRequests(ctx, controlAddr)
	if err != nil {
		return nil, fmt.Errorf("sim requests: %w", err)
	}
	if res.hwmKB, err = testutil.ProcStatusKB(gw.pid(), "VmHWM"); err != nil {
		return nil, fmt.Errorf("rss: %w", err)
	}
	res.rssKB, _ = testutil.ProcStatusKB(gw.pid(), "VmRSS")
	res.rssFileKB, _ = testutil.ProcStatusKB(gw.pid(), "RssFile")
	res.threads, _ = testutil.ProcStatusKB(gw.pid(), "Threads")
	res.share = 100 * float64(t1-t0) / userHZ / res.wall.Seconds()
	res.simShare = 100 * float64(s1-s0) / userHZ / res.wall.Seconds()
	res.pollRate = float64(r1-r0) / res.wall.Seconds()
	if gcs := regexp.MustCompile(`(?m)^gc \d+ @.*MB goal.*$`).FindAll(mustRead(gw.log), -1); len(gcs) > 0 {
		res.gctrace = string(gcs[len(gcs)-1])
	}
	return res, nil
}

// mustRead returns the file's content, or nothing when it cannot be read.
func mustRead(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}
