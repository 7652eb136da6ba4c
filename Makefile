# OpenEPP — see README.md. Every target is one line of intent.
GO      ?= go
BIN     := $(CURDIR)/bin
PKGS    := ./...

.PHONY: run build test test-short bench bench-overhead bench-fleet lint fmt docs clean

run: build ## Local demo, no cluster: 4 simulated model servers + EPP + gateway on localhost:8080
	$(BIN)/demo --bin $(BIN)

build: ## Build every binary into ./bin
	$(GO) build -o $(BIN)/ ./cmd/...

test: ## All tests (unit + integration, race detector); what CI runs
	hack/test.sh

test-short: ## Unit tests only, no race detector (fast inner loop)
	$(GO) test -short $(PKGS)

bench: ## Go micro-benchmarks (scheduler, parser, scraper, ext_proc round trip)
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

lint: ## gofmt, go vet and the dependency-direction check
	hack/lint.sh

docs: ## Regenerate generated documentation
	$(GO) run ./hack/gendocs

clean: ## Remove build output
	rm -rf $(BIN)
