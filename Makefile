# clusterctl: build, test tiers, benchmarks and the local demo.
# Tiers: `make test` (unit, no root), `make integration` (real sshd test
# hosts, root), `make e2e` (real Kubernetes components, root), `make check`
# (all three: what .ci/run runs).

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN := bin/clusterctl
DEMO_DIR ?= /var/cache/clusterctl/demo
DEMO_NET ?= 172.31.0

.PHONY: build test integration e2e check bench demo demo-down deps fmt vet cue-vet fuzz lint

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/clusterctl

deps:
	bash e2e/deps.sh

# Unit tier: fast, no root, no network. Includes the fuzz seed corpora.
test: cue-vet lint
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

# Integration tier: real OpenSSH on real namespace test hosts (root).
integration:
	$(GO) test -tags integration -count=1 -p 1 -timeout 20m ./...

# End-to-end tier: clusterctl against test hosts with real Kubernetes.
e2e:
	$(GO) test -tags e2e -count=1 -p 1 -parallel 2 -timeout 80m -v ./e2e/...

check: deps
	$(MAKE) test
	$(MAKE) integration
	$(MAKE) e2e

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime 60s ./provision/spec

# golangci-lint v2 with .golangci.yml, every build tag; built by `go run`
# from the module proxy (about 3 min the first time, cached after).
lint:
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0 run ./...

fmt:
	gofmt -l -w cmd provision e2e cue

vet:
	$(GO) vet ./...

# The schema is a real CUE module: the cue tool validates the inventories too.
cue-vet:
	$(GO) tool cue vet -c ./cue/schema.cue inventories/local/cluster.cue
	$(GO) tool cue vet -c ./cue/schema.cue inventories/ha/cluster.cue
	$(GO) tool cue vet -c ./cue/schema.cue inventories/airgap/cluster.cue
	$(GO) tool cue vet -c ./cue/schema.cue inventories/k3s/cluster.cue

# The README's main command: three fresh local test hosts, Kubernetes built
# from Go modules (cached per version; 20-30 min the first time), the
# air-gapped bundle the sample inventory (inventories/local) names, a real
# apply from bare hosts to a healthy cluster with a kubeconfig context, and a
# second apply that finds nothing to do.
demo: deps build
	$(GO) run ./e2e/testhosts/cmd/testhosts down --net $(DEMO_NET) --prefix demo
	$(GO) run ./e2e/testhosts/cmd/testhosts up 3 --net $(DEMO_NET) --prefix demo --dir $(DEMO_DIR)
	bash e2e/node-debs.sh $(DEMO_DIR)/node
	out=$$(bash e2e/artifacts/build.sh | tail -n 1) && $(BIN) bundle inventories/local --from "$${out#*: }" --from $(DEMO_DIR)/node
	$(BIN) apply --yes inventories/local
	$(BIN) apply --yes inventories/local
	$(DEMO_DIR)/../artifacts/k8s-v1.37.2-$$($(GO) env GOVERSION)/bin/kubectl --context local get nodes -o wide

demo-down:
	$(GO) run ./e2e/testhosts/cmd/testhosts down --net $(DEMO_NET) --prefix demo
