package testutil

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Logger returns a text logger at level that writes to t.Log until the test's last
// cleanup has run; later writes (from goroutines of libraries winding down after the
// test) are dropped instead of panicking in t.Log.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	w := &guardedWriter{t: t}
	t.Cleanup(w.close) // registered first, so it runs last
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// guardedWriter forwards lines to t.Log until closed.
type guardedWriter struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func (g *guardedWriter) Write(b []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.t.Log(strings.TrimSuffix(string(b), "\n"))
	}
	return len(b), nil
}

func (g *guardedWriter) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}
