# gatelog — the two commands that matter: `make run` and `make test`.

GO          ?= go
BIN         := bin
GATELOG     := $(BIN)/gatelog
OPA_VERSION := v1.22.2
OPA         := $(BIN)/opa-$(OPA_VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X main.version=$(VERSION)
ADDR        ?= 127.0.0.1:8080
DATA        ?= ./gatelog-data

PHONY_PROTO := proto proto-check
.PHONY: $(PHONY_PROTO) all build run test test-go fmt-check vet lint policy-test bench bench-quick bench-long soak crash fuzz interop clean ui-verify-test ui-test

all: build

## build: compile ./bin/gatelog
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(GATELOG) ./cli/gatelog

## auditor: compile ./bin/gatelog-auditor, the clients and offline verifiers only (no daemon,
## no policy engine: no OPA), for an auditor who wants to read what they run
auditor:
	$(GO) build -tags auditor -ldflags "$(LDFLAGS)" -o $(BIN)/gatelog-auditor ./cli/gatelog

## run: build and start the daemon with the embedded defaults (local log, local keys, bundled policies)
run: build
	$(GATELOG) serve --addr $(ADDR) --data $(DATA)

## test: everything CI runs
test: proto-check fmt-check vet test-go policy-test lint ui-verify-test ui-test

# The bench smoke test runs the real opa; build it first.
test-go: $(OPA)
	$(GO) test -count=1 -timeout 15m ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) build -tags auditor -o /dev/null ./cli/gatelog

## proto: regenerate plugins/adapter/v1 (Debian protobuf-compiler, pinned generators)
proto:
	plugins/adapter/v1/gen.sh

## proto-check: fail when the committed generated code is not what the .proto gives
proto-check:
	scripts/check-proto.sh

## lint: staticcheck, pinned
lint:
	$(GO) run $(STATICCHECK) ./...

# The real opa CLI, built from the pinned module, runs the Rego tests and the
# strict check unchanged.
$(OPA):
	@mkdir -p $(BIN)/.opa
	GOBIN=$(CURDIR)/$(BIN)/.opa $(GO) install github.com/open-policy-agent/opa@$(OPA_VERSION)
	mv $(BIN)/.opa/opa $(OPA)

## policy-test: opa test and opa check --strict on the bundled policies
policy-test: $(OPA)
	$(OPA) check --strict policies/
	$(OPA) test policies/

## ui-verify-test: the console's in-browser verifier (ui/web/verify.js) over the Go-made vectors, in Node
ui-verify-test:
	node --test ui/test/verify.test.mjs

## ui-test: the console in a real browser (installs Debian chromium and ui/ npm packages if missing)
ui-test:
	bash scripts/ui-test.sh

## bench: gatelog vs opa run --server (3 runs, medians), the append path alone, the policy
## library alone per decision, start-up, one daemon vs two sharing a log in MariaDB, and the
## log grown to 10^6 entries; prints tables and writes bench/results.json
## (about half an hour on 2 cores and ~10 GB of scratch disk; not part of make test)
BENCH := $(GO) run ./bench/cmd/gatelog-bench
bench: build $(OPA)
	$(BENCH) startup -gatelog $(GATELOG) -out bench/results.json
	$(BENCH) append -duration 5s -out bench/results.json
	$(BENCH) policy -duration 2s -out bench/results.json
	$(BENCH) compare -gatelog $(GATELOG) -opa $(OPA) -runs 3 -duration 5s -warmup 1s -profile 16 -profile-out bench/profiles/gatelog-cpu-16.pprof -out bench/results.json
	$(BENCH) scaleout -gatelog $(GATELOG) -duration 5s -out bench/results.json
	$(BENCH) growth -gatelog $(GATELOG) -points $(GROWTH_POINTS) -out bench/results.json
	$(BENCH) report -update bench/README.md

## bench-quick: one short run of the comparison (under a minute), results not saved
bench-quick: build $(OPA)
	$(BENCH) compare -gatelog $(GATELOG) -opa $(OPA) -runs 1 -duration 2s -warmup 500ms

## bench-long: the growth run alone, to 10^7 entries (hours; ~60 GB of scratch disk in LONG_WORK).
## Stopped, it resumes: run it again and it continues the log in LONG_WORK, keeping the points
## it saved; the log is removed once the run is complete.
GROWTH_POINTS ?= 1000,10000,100000,1000000
LONG_WORK ?= /var/tmp/gatelog-bench-long
bench-long: build
	$(BENCH) growth -gatelog $(GATELOG) -points $(GROWTH_POINTS),3000000,5000000,10000000 -work $(LONG_WORK) -resume -out bench/results.json
	$(BENCH) report -update bench/README.md
	rm -rf $(LONG_WORK)

## soak: the kill -9 crash test in its long form (SOAK_CYCLES restarts of the real daemon;
## make test runs 20); prints the seed and acknowledged/found/lost
SOAK_CYCLES ?= 150
soak:
	GATELOG_SOAK_CYCLES=$(SOAK_CYCLES) $(GO) test -count=1 -v -timeout 60m -run '^TestCrashRecovery$$' ./cli/gatelog/

## crash: the power-cut drill in its long form: CRASH_CUTS power cuts (make test runs 10) of
## the real daemon on a FUSE file system that keeps only what was fsync'd; needs /dev/fuse
## and root. Prints "power cuts: N, acknowledged: A, lost: L, unrecoverable starts: U".
CRASH_CUTS ?= 100
crash:
	@mkdir -p $(BIN)
	@rm -f $(BIN)/crash-summary.txt
	@GATELOG_POWER_CUTS=$(CRASH_CUTS) GATELOG_POWERCUT_SUMMARY=$(CURDIR)/$(BIN)/crash-summary.txt \
		$(GO) test -count=1 -timeout 120m -run '^TestPowerCut$$' ./cli/gatelog/; rc=$$?; \
		cat $(BIN)/crash-summary.txt 2>/dev/null || echo "power-cut drill: no summary (it stopped early; see above)"; exit $$rc

## fuzz: every go test -fuzz target for FUZZTIME each (default 10s; about 6 minutes in all);
## make test runs their seed corpora only
FUZZTIME ?= 10s
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

## interop: the unmodified cosign v2.6.5 (built from its module into bin/ on first use, a few
## minutes) verifies gatelog log bundle output offline, claims checked, and refuses tampered
## bundles (scripts/interop-cosign.sh; not part of make test)
interop:
	scripts/interop-cosign.sh

clean:
	rm -rf $(BIN)
