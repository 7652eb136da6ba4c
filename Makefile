# OpenEPP — see README.md. Every target is one line of intent.
GO      ?= go
BIN     := $(CURDIR)/bin
PKGS    := ./...

.PHONY: run build image test test-short fuzz bench bench-overhead bench-fleet lint fmt docs clean

run: build ## Local demo, no cluster: 4 simulated model servers + EPP + gateway on localhost:8080
	$(BIN)/demo --bin $(BIN)

build: ## Build every binary into ./bin
	$(GO) build -buildvcs=auto -o $(BIN)/ ./cmd/... # auto: stamp the commit (inference_extension_info) when git is there

IMAGE ?= openepp/epp:dev
image: ## Build the EPP container image (needs docker or podman; IMAGE=<registry>/openepp:<tag>)
	$(or $(shell command -v docker || command -v podman),$(error image: neither docker nor podman is installed)) build -t $(IMAGE) .

test: ## All tests (unit + integration, race detector); what CI runs
	hack/test.sh

test-short: ## Unit tests only, no race detector (fast inner loop)
	$(GO) test -short $(PKGS)

FUZZTIME ?= 20s
fuzz: ## Every Go fuzz target in turn, FUZZTIME each (default 20s; a failure stops it, its input saved in testdata/fuzz)
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

bench: ## All benchmarks (Go micro-benchmarks, overhead, fleet), then regenerate docs/benchmarks.md
	$(MAKE) bench-overhead
	$(MAKE) bench-fleet
	$(GO) run ./hack/benchreport --run-micro

bench-overhead: ## EPP vs a no-op ext_proc floor, open-loop over loopback, pinned cores, 3 alternating repeats (~15 min; docs/benchmarks/overhead.json)
	$(GO) build -o $(BIN)/ ./cmd/epp ./hack/benchoverhead
	$(BIN)/benchoverhead --epp $(BIN)/epp --out docs/benchmarks/overhead.json

bench-fleet: ## Routing quality in virtual time: 9 workloads × 9 policies × QPS ladder, priority, fairness, P/D, replica and multimodal studies (~15–25 min on 2 cores; bench/results/fleet, docs/benchmarks/fleet.md)
	$(GO) run ./hack/benchfleet --out bench/results/fleet --docs docs/benchmarks

lint: ## gofmt, go vet and the dependency-direction check
	hack/lint.sh

docs: ## Regenerate generated documentation
	$(GO) run ./hack/gendocs

clean: ## Remove build output
	rm -rf $(BIN)
