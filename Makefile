# rollcall — see README.md. `make run` runs the demo, `make test` the test suite.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
export GORACE ?= atexit_sleep_ms=0

.PHONY: build run test test-short bench fuzz lint clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/rollcall ./cmd/rollcall
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/firmware-sim ./cmd/firmware-sim

# The demo: embedded broker, 4 simulated drives on a virtual RS-485 bus, the gateway and
# the live catalog, until Ctrl-C.
run: build
	./bin/rollcall demo

# Unit and integration tests, with the race detector. Integration tests need Mosquitto
# (apt-get install -y mosquitto); with CI=true a missing Mosquitto fails them.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

test-short:
	$(GO) test -count=1 -short ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...

# Every fuzz target for FUZZTIME each (go test -fuzz takes one target per run).
FUZZTIME ?= 10s
FUZZ_TARGETS := \
	./protocols/modbus:FuzzExpectedReplyLength ./protocols/modbus:FuzzParseDeviceIDReply \
	./protocols/modbus:FuzzMBAPHeader ./protocols/mqtt:FuzzInstanceTopic ./protocols/mqtt:FuzzDecodeRecord \
	./protocols/mdns:FuzzParseTXT ./gateway/config:FuzzParse ./devices:FuzzCleanString ./devices:FuzzParseProfile
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin dist
