// Package packaging holds what ships next to the rollcall binary — the systemd unit, the
// Debian package (deb/: the nfpm config, the maintainer scripts, the conffile, the
// version mapping and the install test of `make check-deb`; nfpm itself is pinned in the
// module tools/), the Prometheus rules (prometheus/) and the Grafana dashboard
// (grafana/) — and tests: every metric name the rules and the dashboard use is defined by
// gateway/metrics, and the package's config, contents and versions are right (no Go code
// of the product).
package packaging
