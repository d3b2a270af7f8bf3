package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/gateway/config"
)

// Files written by a profiled gateway process into its profile directory.
const (
	gwCPUProfile  = "gateway-cpu.pprof"  // CPU profile of the steady state: from gwHeapBaseAfter to SIGTERM
	gwHeapProfile = "gateway-heap.pprof" // heap profile at SIGTERM, after a GC
	// gwHeapBase is a heap profile taken gwHeapBaseAfter after the start: its
	// allocation counts are the base of those at SIGTERM (pprof -base), which leaves
	// what the steady state allocates.
	gwHeapBase      = "gateway-heap-base.pprof"
	gwHeapBaseAfter = 10 * time.Second
	gwMemStats      = "gateway-mem.json" // gwMem at SIGTERM, before that GC
)

// gwMem is what a profiled gateway process reports about its memory at SIGTERM. Sizes
// are bytes.
type gwMem struct {
	Goroutines  int    `json:"goroutines"`             // goroutines running
	HeapInuse   uint64 `json:"heap_inuse"`             // bytes in in-use heap spans
	HeapAlloc   uint64 `json:"heap_alloc"`             // bytes of allocated heap objects (live and not yet collected)
	HeapIdleRet uint64 `json:"heap_idle_not_released"` // bytes of idle heap spans not returned to the OS
	StackInuse  uint64 `json:"stack_inuse"`            // bytes of goroutine stacks
	RuntimeSys  uint64 `json:"runtime_other_sys"`      // bytes of runtime metadata: span, cache, profiling bucket, GC and other
	Sys         uint64 `json:"sys"`                    // bytes obtained from the OS by the Go runtime in total
	NumGC       uint32 `json:"num_gc"`                 // completed GC cycles
	NextGC      uint64 `json:"next_gc"`                // heap size in bytes at which the next GC starts
}

// runGatewayProcess is the hidden -gateway-process mode of tcp_scale's -gwprofile pass:
// the same gateway as `rollcall gateway --config cfgPath`, plus a CPU profile of the
// run and, when ctx ends (SIGTERM), memory statistics and a heap profile in profDir;
// then a clean shutdown. It returns the exit status.
func runGatewayProcess(ctx context.Context, cfgPath, profDir string, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "rollcall-bench gateway process:", err)
		return 1
	}
	runtime.MemProfileRate = 4096 // a finer heap profile than the default 512 KiB sampling
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fail(err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	g, err := gateway.New(gateway.Options{Config: cfg, Logger: log, Version: "bench-profile"})
	if err != nil {
		return fail(err)
	}
	gateway.TuneGC(os.Getenv) // as `rollcall gateway` does
	cpu, err := os.Create(filepath.Join(profDir, gwCPUProfile))
	if err != nil {
		return fail(err)
	}
	defer cpu.Close()
	gctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	base := time.NewTimer(gwHeapBaseAfter)
	defer base.Stop()
	select {
	case err := <-done:
		return fail(fmt.Errorf("gateway: %v", err))
	case <-ctx.Done():
	case <-base.C:
		if f, err := os.Create(filepath.Join(profDir, gwHeapBase)); err == nil {
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
		// The CPU profile, like the heap base, leaves out the start (probes,
		// registrations), which the measured window leaves out too.
		if err := pprof.StartCPUProfile(cpu); err != nil {
			stop()
			<-done
			return fail(err)
		}
	}
	select {
	case err := <-done:
		pprof.StopCPUProfile()
		return fail(fmt.Errorf("gateway: %v", err))
	case <-ctx.Done():
	}
	pprof.StopCPUProfile()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mem := gwMem{
		Goroutines: runtime.NumGoroutine(), HeapInuse: ms.HeapInuse, HeapAlloc: ms.HeapAlloc,
		HeapIdleRet: ms.HeapIdle - ms.HeapReleased, StackInuse: ms.StackInuse,
		RuntimeSys: ms.MSpanSys + ms.MCacheSys + ms.BuckHashSys + ms.GCSys + ms.OtherSys,
		Sys:        ms.Sys, NumGC: ms.NumGC, NextGC: ms.NextGC,
	}
	if b, err := json.Marshal(mem); err == nil {
		_ = os.WriteFile(filepath.Join(profDir, gwMemStats), b, 0o600)
	}
	runtime.GC()
	if f, err := os.Create(filepath.Join(profDir, gwHeapProfile)); err == nil {
		_ = pprof.WriteHeapProfile(f)
		f.Close()
	}
	stop()
	<-done
	return 0
}

// pprofTop returns the first n lines of `go tool pprof -top` for a profile, with the
// given extra options (e.g. -sample_index=inuse_space), or an error text.
func pprofTop(ctx context.Context, binary, profile string, n int, opts ...string) []string {
	args := append([]string{"tool", "pprof", "-top", "-nodecount", fmt.Sprint(n)}, opts...)
	args = append(args, binary, profile)
	out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		return []string{fmt.Sprintf("go tool pprof: %v: %s", err, tail(out, 300))}
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Type:") ||
			strings.HasPrefix(l, "Time:") || strings.HasPrefix(l, "Showing top") {
			continue
		}
		lines = append(lines, l)
	}
	return lines
}
