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

.PHONY: all build run test test-go fmt-check vet lint policy-test bench soak clean ui-verify-test

all: build

## build: compile ./bin/gatelog
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(GATELOG) ./cli/gatelog

## run: build and start the daemon with the embedded defaults (local log, local keys, bundled policies)
run: build
	$(GATELOG) serve --addr $(ADDR) --data $(DATA)

## test: everything CI runs
test: fmt-check vet test-go policy-test lint ui-verify-test

test-go:
	$(GO) test -count=1 -timeout 15m ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

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

## bench: benchmarks (not part of make test)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf $(BIN)
