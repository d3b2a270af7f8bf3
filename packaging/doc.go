// Package packaging holds what ships next to the rollcall binary — the systemd unit, the
// Prometheus rules (prometheus/) and the Grafana dashboard (grafana/) — and a test that
// every metric name they use is defined by gateway/metrics (no Go code of the product).
package packaging
