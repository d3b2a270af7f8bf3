package gateway_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser is one page of a headless Chromium driven by chromedp over the DevTools
// protocol (through a pipe: no debugging port is opened). The browser runs with a
// throw-away profile and stops in t.Cleanup.
type browser struct {
	t   *testing.T
	ctx context.Context // the page's chromedp context
}

// browserActionTimeout bounds one navigation, evaluation or screenshot.
const browserActionTimeout = 20 * time.Second

// findChromium returns Debian's /usr/bin/chromium, or a Chromium found on PATH. Without
// one the test is skipped, or fails when CI=true.
func findChromium(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/usr/bin/chromium"); err == nil && !fi.IsDir() {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found (apt-get install -y chromium); required with CI=true")
	}
	t.Skip("chromium not found (apt-get install -y chromium)")
	return ""
}

// startBrowser starts headless Chromium and opens one blank page.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(findChromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 800),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		// Close the browser gracefully, then make sure the process is gone.
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		_ = chromedp.Cancel(cctx)
		ccancel()
		cancel()
		cancelAlloc()
	})
	// The first action on the context starts the browser and opens the page. It runs on
	// ctx itself: a context derived from it (with a timeout) would own the browser, which
	// would then end with it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx}
}

// navigate loads url in the page and waits for it to load.
func (b *browser) navigate(url string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserActionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		b.t.Fatalf("navigate %s: %v", url, err)
	}
}

// eval evaluates a JavaScript expression in the page and decodes its JSON-able value
// into out (nil: the value is ignored).
func (b *browser) eval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(b.ctx, browserActionTimeout)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr))
	if err != nil || out == nil || len(raw) == 0 {
		return err
	}
	return json.Unmarshal(raw, out)
}

// screenshot saves a PNG of the page at path.
func (b *browser) screenshot(path string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserActionTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// click clicks the element that the CSS selector sel matches first, with the mouse
// (chromedp.Click: the page gets real pointer events), once it is visible.
func (b *browser) click(sel string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserActionTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)); err != nil {
		b.t.Fatalf("click %s: %v", sel, err)
	}
}

// press sends one key (a character, or a kb constant such as kb.Escape) to the element
// that has the focus, as the keyboard would.
func (b *browser) press(key string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserActionTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.KeyEvent(key)); err != nil {
		b.t.Fatalf("press %q: %v", key, err)
	}
}

// viewport sets the page's viewport to width × height CSS pixels (the window's size
// until then).
func (b *browser) viewport(width, height int64) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserActionTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.EmulateViewport(width, height)); err != nil {
		b.t.Fatalf("viewport %d×%d: %v", width, height, err)
	}
}
