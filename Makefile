# rollcall — see README.md. `make run` runs the demo, `make test` the test suite.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
export GORACE ?= atexit_sleep_ms=0

.PHONY: build run test test-short bench fuzz lint dist deb check-deb clean plant nats-server check-packaging

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/rollcall ./cmd/rollcall
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/firmware-sim ./cmd/firmware-sim

# The demo: embedded broker, 4 simulated drives on a virtual RS-485 bus, the gateway and
# the live catalog, until Ctrl-C.
run: build
	./bin/rollcall demo

# A plant on one machine: a 3-node NATS cluster (in-process), three gateways with their
# simulated buses and Modbus TCP drives (one drive polled by two of them), and the merged
# live catalog on screen; NATS node 0 is shut down after 30 s to show the failover.
# Ctrl-C stops it. README: "A plant: many gateways on a NATS cluster".
plant:
	$(GO) run ./cmd/rollcall-plant

# The pinned nats-server (go.mod) as a binary, for running the cluster of configs/nats.
nats-server:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/nats-server github.com/nats-io/nats-server/v2

# Unit and integration tests, with the race detector. Integration tests need Mosquitto
# (apt-get install -y mosquitto); with CI=true a missing Mosquitto fails them.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

test-short:
	$(GO) test -count=1 -short ./...

# The Prometheus rules (packaging/prometheus) and their unit tests, with promtool (Debian:
# apt-get install -y prometheus); the metric names of the rules and of the Grafana dashboard
# (packaging/grafana) are checked against gateway/metrics by go test ./packaging/.
check-packaging:
	promtool check rules packaging/prometheus/rollcall.rules.yml
	promtool test rules packaging/prometheus/rollcall.rules.test.yml
	$(GO) test -count=1 ./packaging/

# Go micro-benchmarks, then the figures of issue 4 against their floors (cmd/rollcall-bench:
# needs Mosquitto; about 2–3 minutes). BENCHFLAGS=-quick for a smoke run, e.g.
# BENCHFLAGS='-only rtu_poll,sweep'. A failing micro-benchmark or figure does not stop
# the others: every figure is printed, the failures are listed at the end, and only then
# does the target fail.
BENCHFLAGS ?=
bench:
	@log=$$(mktemp); rc=0; \
	{ $(GO) test -run '^$$' -bench . -benchmem -count=1 ./... 2>&1 || echo "FAILED: go test -bench (exit $$?)"; } | tee $$log; \
	grep -q '^FAILED: ' $$log && rc=1; \
	$(GO) run ./cmd/rollcall-bench $(BENCHFLAGS) || { st=$$?; rc=1; echo "FAILED: rollcall-bench (exit $$st)" | tee -a $$log; }; \
	if [ $$rc -ne 0 ]; then echo; echo "bench: failures:"; grep -E '^(--- FAIL|FAIL|FAILED: )' $$log; fi; \
	rm -f $$log; exit $$rc

# Every fuzz target for FUZZTIME each (go test -fuzz takes one target per run): a duration
# (10s) or an execution count (20000x). CI uses a count: with a duration, Go 1.26's fuzz
# coordinator may report "context deadline exceeded" as a failure when the time runs out
# while a worker is busy on a loaded machine (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 10s
FUZZ_TARGETS := \
	./protocols/modbus:FuzzExpectedReplyLength ./protocols/modbus:FuzzParseDeviceIDReply \
	./protocols/modbus:FuzzMBAPHeader ./contract:FuzzInstanceTopic ./contract:FuzzDecodeRecord \
	./protocols/mdns:FuzzParseTXT ./protocols/mdns:FuzzResponse ./contract:FuzzVerify \
	./gateway/config:FuzzParse ./internal/yamlx:FuzzDecode ./devices:FuzzCleanString ./devices:FuzzParseProfile \
	./gateway/router:FuzzHandle ./gateway/dnsserver:FuzzAnswer ./protocols/sparkplug:FuzzDecode
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Static binaries (CGO off) for the edge boxes rollcall runs on, version stamped in
# (`rollcall version`), with SHA256SUMS. Targets: linux/amd64, linux/arm64, linux/arm/v7.
DIST_TARGETS := linux/amd64 linux/arm64 linux/arm/7
DIST_BUILD = CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
dist:
	@rm -rf dist && mkdir -p dist
	@set -e; for t in $(DIST_TARGETS); do \
		os=$${t%%/*}; rest=$${t#*/}; arch=$${rest%%/*}; arm=$${rest#*/}; [ "$$arm" = "$$rest" ] && arm=""; \
		suffix=$$os-$$arch$${arm:+v$$arm}; \
		for cmd in rollcall firmware-sim; do \
			echo "dist/$$cmd-$$suffix"; \
			GOOS=$$os GOARCH=$$arch GOARM=$$arm $(DIST_BUILD) -o dist/$$cmd-$$suffix ./cmd/$$cmd; \
		done; \
	done
	cp packaging/systemd/rollcall.service configs/edge-box.yaml dist/
	cd dist && sha256sum rollcall-* firmware-sim-* > SHA256SUMS

# Debian packages (README: "Install on an edge box"): dist/rollcall_<version>_<arch>.deb
# for amd64, arm64 and armhf (the linux/arm/v7 binary), built by nfpm from
# packaging/deb/nfpm.yaml. The version is VERSION made a Debian one (packaging/deb/
# version.sh). Each binary is built as `make dist` builds it: right after `make dist` Go's
# cache answers, nothing is compiled twice. The packaged unit is packaging/systemd/
# rollcall.service with ExecStart=/usr/bin/rollcall. nfpm is pinned in packaging/tools/
# go.mod, apart from the product's go.mod.
DEB_ARCHS := amd64:amd64 arm64:arm64 arm/7:armhf
DEB_VERSION = $(shell packaging/deb/version.sh '$(VERSION)' "$$(git rev-list --count HEAD 2>/dev/null)")
DEB_MAINTAINER ?= rollcall maintainers <maintainers@rollcall-edge.invalid>
NFPM := bin/nfpm
deb: $(NFPM)
	@set -e; v='$(DEB_VERSION)'; test -n "$$v"; \
	mkdir -p dist/deb; rm -f dist/rollcall_*.deb; \
	{ echo '# rollcall gateway, installed by the rollcall Debian package (packaging/systemd/rollcall.service).'; \
	  echo '# Local changes: systemctl edit rollcall (kept across upgrades).'; \
	  sed -e '1,/^\[Unit\]/{/^#/d;}' -e 's|/usr/local/bin/rollcall|/usr/bin/rollcall|g' packaging/systemd/rollcall.service; \
	} > dist/deb/rollcall.service; \
	grep -q '^ExecStart=/usr/bin/rollcall gateway ' dist/deb/rollcall.service; \
	if grep -n /usr/local dist/deb/rollcall.service; then echo "dist/deb/rollcall.service: /usr/local left"; exit 1; fi; \
	for t in $(DEB_ARCHS); do \
		debarch=$${t##*:}; p=$${t%%:*}; arch=$${p%%/*}; arm=$${p#*/}; [ "$$arm" = "$$p" ] && arm=""; \
		bin=dist/rollcall-linux-$$arch$${arm:+v$$arm}; \
		GOOS=linux GOARCH=$$arch GOARM=$$arm $(DIST_BUILD) -o $$bin ./cmd/rollcall; \
		DEB_ARCH=$$debarch DEB_VERSION=$$v DEB_BIN=$$bin DEB_UNIT=dist/deb/rollcall.service \
		DEB_MAINTAINER='$(DEB_MAINTAINER)' SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || date +%s) \
			$(NFPM) package --config packaging/deb/nfpm.yaml --packager deb --target dist/rollcall_$${v}_$$debarch.deb; \
	done
	cd dist && sha256sum $$(ls rollcall-* firmware-sim-* rollcall_*.deb 2>/dev/null) > SHA256SUMS

$(NFPM): packaging/tools/go.mod packaging/tools/go.sum
	$(GO) -C packaging/tools build -o $(CURDIR)/$(NFPM) github.com/goreleaser/nfpm/v2/cmd/nfpm

# The package of this machine's architecture installed with dpkg, the gateway started as
# its unit would start it, then the package removed and purged (packaging/deb/test.sh:
# root, on Debian; it refuses to run where rollcall is installed).
check-deb: deb
	packaging/deb/test.sh dist/rollcall_$(DEB_VERSION)_$$(dpkg --print-architecture).deb

clean:
	rm -rf bin dist
