package testutil_test

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rollcall-edge/rollcall/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a testing.TB that records Fatalf instead of ending the test, so the
// kit's failure paths can be checked. Fatalf stops the calling goroutine like the real
// one, so the helpers under test run in their own goroutine.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.failed = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	panic(r) // unwound by run
}

// run calls f with a recorder and returns the failure message ("" when f passed).
func run(t *testing.T, f func(tb testing.TB)) string {
	r := &recorder{TB: t}
	func() {
		defer func() {
			if p := recover(); p != nil && p != r {
				panic(p)
			}
		}()
		f(r)
	}()
	return r.failed
}

func TestEventually(t *testing.T) {
	var n atomic.Int32
	start := time.Now()
	if msg := run(t, func(tb testing.TB) {
		testutil.Eventually(tb, 10*time.Second, "three calls", func() bool { return n.Add(1) >= 3 })
	}); msg != "" {
		t.Fatalf("failed: %s", msg)
	}
	if n.Load() != 3 {
		t.Errorf("cond called %d times, want 3 (returns as soon as it holds)", n.Load())
	}
	if el := time.Since(start); el < 2*testutil.PollInterval {
		t.Errorf("3 checks took %v, less than 2 poll intervals: not paced", el)
	}

	msg := run(t, func(tb testing.TB) {
		testutil.Eventually(tb, 50*time.Millisecond, "the impossible", func() bool { return false })
	})
	if msg != "timed out after 50ms waiting for the impossible" {
		t.Errorf("failure message %q", msg)
	}
}

func TestEventuallyValue(t *testing.T) {
	var n atomic.Int32
	got := testutil.EventuallyValue(t, 10*time.Second, "n ≥ 2", func() (int32, bool) { v := n.Add(1); return v, v >= 2 })
	if got != 2 {
		t.Errorf("value %d, want 2 (of the first call that held)", got)
	}
	msg := run(t, func(tb testing.TB) {
		testutil.EventuallyValue(tb, 30*time.Millisecond, "a catalog", func() ([]string, bool) { return []string{"a", "b"}, false })
	})
	if msg != "timed out after 30ms waiting for a catalog; last seen: [a b]" {
		t.Errorf("failure message %q", msg)
	}
}

func TestSyncBuffer(t *testing.T) {
	var b testutil.SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				fmt.Fprintf(&b, "%d\n", i)
			}
		}()
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 800 || b.Len() != 1600 {
		t.Fatalf("%d lines, %d bytes; want 800, 1600", n, b.Len())
	}
	b.Reset()
	if b.String() != "" || b.Len() != 0 {
		t.Fatalf("after Reset: %q", b.String())
	}
}

func TestHex(t *testing.T) {
	want := []byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0xC4, 0x0B}
	for _, s := range []string{"01 03 00 00 00 02 C4 0B", "0103000000 02c40b", "01 03\n\t00 00 00 02 c4 0b"} {
		if got := testutil.Unhex(t, s); !bytes.Equal(got, want) {
			t.Errorf("Unhex(%q) = % X", s, got)
		}
	}
	if got := testutil.Hex(want); got != "01 03 00 00 00 02 C4 0B" {
		t.Errorf("Hex = %q", got)
	}
	if got := testutil.Unhex(t, testutil.Hex(want)); !bytes.Equal(got, want) {
		t.Errorf("round trip % X", got)
	}
	if msg := run(t, func(tb testing.TB) { testutil.Unhex(tb, "01 0") }); !strings.HasPrefix(msg, `bad hex "01 0"`) {
		t.Errorf("odd length: %q", msg)
	}
	if msg := run(t, func(tb testing.TB) { testutil.Unhex(tb, "zz") }); !strings.HasPrefix(msg, `bad hex "zz"`) {
		t.Errorf("not hex: %q", msg)
	}
}

func TestUnique(t *testing.T) {
	a, b := testutil.Unique(t, "axis-7"), testutil.Unique(t, "axis-7")
	re := regexp.MustCompile(`^axis-7-[0-9a-f]{8}$`)
	if !re.MatchString(a) || !re.MatchString(b) || a == b {
		t.Fatalf("Unique: %q, %q", a, b)
	}
}

func TestMDNSNames(t *testing.T) {
	a, b := testutil.NewMDNSNames(t), testutil.NewMDNSNames(t)
	if a.Suffix == b.Suffix || len(a.Suffix) != 8 {
		t.Fatalf("suffixes %q, %q", a.Suffix, b.Suffix)
	}
	re := regexp.MustCompile(a.InstancePattern())
	for name, want := range map[string]bool{
		a.Instance("axis-7"): true, a.Instance("rogue/+#$ drive"): true,
		b.Instance("axis-7"): false, "axis-7": false, a.Instance("axis-7") + "x": false,
	} {
		if re.MatchString(name) != want {
			t.Errorf("pattern %s on %q: %v, want %v", re, name, !want, want)
		}
	}
	st := a.ServiceType("plc")
	if !regexp.MustCompile(`^_plc-[0-9a-f]{8}\._tcp$`).MatchString(st) || len(st)-len("_._tcp") > 15 {
		t.Errorf("service type %q", st)
	}
	if msg := run(t, func(tb testing.TB) { testutil.NewMDNSNames(tb).ServiceType("vision") }); msg != "" {
		t.Errorf("6 characters refused: %s", msg)
	}
	if msg := run(t, func(tb testing.TB) { testutil.NewMDNSNames(tb).ServiceType("camera") }); msg != "" {
		t.Errorf("6 characters refused: %s", msg)
	}
	if msg := run(t, func(tb testing.TB) { testutil.NewMDNSNames(tb).ServiceType("visions") }); msg == "" {
		t.Error("7 characters accepted")
	}
}
