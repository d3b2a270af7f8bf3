package gateway

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway/config"
)

// TestTargetCheckHTTPAndTCP: an http check is passing on 2xx, warning on 429 and
// critical otherwise or when nothing answers; a tcp check is passing when a connection
// opens and critical when it is refused.
func TestTargetCheckHTTPAndTCP(t *testing.T) {
	code := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }))
	defer srv.Close()
	client := &http.Client{}
	defer client.CloseIdleConnections()
	ck := config.TargetCheck{Name: "web", Type: "http", URL: srv.URL + "/health", Timeout: 5 * time.Second}
	for _, tt := range []struct {
		code int
		want contract.Status
	}{{200, contract.Passing}, {204, contract.Passing}, {429, contract.Warning}, {503, contract.Critical}, {404, contract.Critical}} {
		code = tt.code
		if st, note := targetCheckOnce(context.Background(), client, ck); st != tt.want || note == "" {
			t.Errorf("HTTP %d: %s %q, want %s with a note", tt.code, st, note, tt.want)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	tcp := config.TargetCheck{Name: "port", Type: "tcp", Address: addr, Timeout: 5 * time.Second}
	if st, _ := targetCheckOnce(context.Background(), client, tcp); st != contract.Passing {
		t.Errorf("tcp check of a listening port: %s", st)
	}
	ln.Close()
	if st, note := targetCheckOnce(context.Background(), client, tcp); st != contract.Critical || note == "" {
		t.Errorf("tcp check of a closed port: %s %q, want critical", st, note)
	}
	srv.Close()
	if st, _ := targetCheckOnce(context.Background(), client, ck); st != contract.Critical {
		t.Errorf("http check of a closed server: %s, want critical", st)
	}
}
