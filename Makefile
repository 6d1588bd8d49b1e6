# record-sync. Needs only Go; everything else is fetched by go itself.
GOLANGCI_LINT_VERSION := v2.15.0
BIN := $(CURDIR)/bin
GOLANGCI_LINT := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
# helm, built from the Go module proxy at a pinned version (make helm-check).
HELM_VERSION := v3.22.0
HELM := $(BIN)/helm-$(HELM_VERSION)

# What `recordsync version` reports; the Dockerfile passes them in, as it
# has no .git.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
GO_LDFLAGS := -s -w -X main.buildVersion=$(VERSION) -X main.buildCommit=$(COMMIT)
GO_BUILD := CGO_ENABLED=0 go build -trimpath -ldflags '$(GO_LDFLAGS)'
IMAGE ?= recordsync:$(VERSION)

.PHONY: help run test test-short test-chaos lint bench bench-ingest bench-singles bench-backlog bench-soak bench-mesh bench-services bench-pipeline bench-failover bench-pushers build install lint-openapi fuzz example-client image helm-check deploy-check clean

## help: this list
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## //' | awk '/^[a-z-]+: / { i = index($$0, ": "); printf "  %-14s %s\n", substr($$0, 1, i - 1), substr($$0, i + 2); next } { printf "  %-14s %s\n", "", $$0 }'

## run: everything in one process (embedded NATS, services, CRM emulator)
run: build
	$(BIN)/recordsync dev

## test: every test, with the race detector, against a real embedded NATS
test:
	go test -race -count=1 -timeout 25m ./...

## test-short: the tests without the ones that build and run the binary
test-short:
	go test -race -short -count=1 ./...

## test-chaos: the long variants of the tests that break NATS and kill processes under load (a single
## server restarted, an R3 cluster losing its leader's server and a server cut off for 30 s, each
## service SIGKILLed, three pushers with one SIGKILLed: 1,000 records x 30 versions); make test runs the short variants (RECORDSYNC_CHAOS=off skips them)
test-chaos:
	RECORDSYNC_CHAOS=long go test -race -count=1 -run 'TestChaos|TestPusherKilledUnderLoad|TestFaultyCRMs' -timeout 20m -v ./app/

## build: the recordsync binary in bin/ (static, -trimpath, version and commit from git)
build:
	$(GO_BUILD) -o $(BIN)/recordsync ./cmd/recordsync

## install: the recordsync binary into GOBIN (go env GOBIN, else GOPATH/bin)
install:
	CGO_ENABLED=0 go install -trimpath -ldflags '$(GO_LDFLAGS)' ./cmd/recordsync

## image: the container image (needs Docker): IMAGE=recordsync:<version>
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

## helm-check: helm lint and helm template of deploy/helm/record-sync with each values file in deploy/helm/ci, manifests checked
helm-check: $(HELM)
	HELM=$(HELM) go test -count=1 -run 'TestHelmChart' ./deploy/

## deploy-check: compose file, Dockerfile and chart checks that need no helm (part of make test)
deploy-check:
	go test -count=1 ./deploy/

$(HELM):
	GOBIN=$(BIN) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(BIN)/helm $@

## lint: golangci-lint, installed at a pinned version into bin/
lint: $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run ./...

## lint-openapi: Redocly CLI (pinned in tools/openapi/package-lock.json) on the HTTP edge's description
lint-openapi:
	cd tools/openapi && npm ci --no-audit --no-fund && npm run lint

## example-client: the example client generated from the OpenAPI description, run against dev in process
example-client:
	cd examples/client && go vet ./... && go test -race -count=1 ./...

## fuzz: the HTTP edge's fuzzers (requests, status receipts) for FUZZTIME each (default 30s); go test runs their seeds
FUZZTIME ?= 30s
fuzz:
	go test -run '^$$' -fuzz '^FuzzEdge$$' -fuzztime $(FUZZTIME) ./services/ingest/
	go test -run '^$$' -fuzz '^FuzzReceiptJSON$$' -fuzztime $(FUZZTIME) ./services/ingest/

$(GOLANGCI_LINT):
	GOBIN=$(BIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/golangci-lint $@

## bench-ingest: records/s through the HTTP edge, single and batch, both profiles
bench-ingest:
	go test -run '^$$' -bench 'Ingest' -benchtime 3s ./services/ingest/

## bench-singles: 50,000 single-event requests from 64 clients to HubSpot, both profiles, gathering on and off
bench-singles:
	go test -run '^$$' -bench 'Singles' -benchtime 1x -timeout 30m ./app/

## bench-backlog: 1,000,000 records queued while HubSpot is down, then drained: peak memory, no record lost
bench-backlog:
	go test -run '^$$' -bench 'Backlog' -benchtime 1x -timeout 60m ./app/

## bench-soak: 3,000 records/s to HubSpot and Salesforce for 10 minutes: memory growth after the first minute, synced visibility p99
bench-soak:
	go test -run '^$$' -bench 'Soak' -benchtime 1x -timeout 40m ./app/

## bench-services: the 100,000-record burst of bench-mesh with NATS, the emulator and each service a process of
## its own: each process's peak memory and CPU per record (RECORDSYNC_BENCH_RECORDS sets the count)
bench-services:
	go test -run '^$$' -bench 'Services' -benchtime 1x -timeout 30m ./app/

## bench-mesh: 100,000 records through the whole mesh to all three CRMs (Outreach one in 20), both profiles,
## two bursts each (RECORDSYNC_BENCH_RECORDS, default 100000; RECORDSYNC_BENCH_CPUPROFILE=prefix for profiles)
bench-mesh:
	go test -run '^$$' -bench 'Mesh' -benchtime 1x -timeout 30m ./app/

## bench-pipeline: 50,000 contacts to HubSpot alone in batches of 100 from 16 clients (the issue's side-by-side case)
bench-pipeline:
	go test -run '^$$' -bench 'Pipeline' -benchtime 1x -timeout 30m ./app/

## bench-failover: how long records stop reaching the CRMs after a server kill (one server, and the
## streams' leader of an R3 cluster) and how long statuses lag after a status kill
bench-failover:
	go test -run '^$$' -bench 'Failover' -benchtime 1x -timeout 20m ./app/

## bench-pushers: one latency-bound target (200 ms per CRM request) with 1, 2 and 3 pusher processes:
## records/s and pusher CPU per record (RECORDSYNC_BENCH_RECORDS, default 6000)
bench-pushers:
	go test -run '^$$' -bench 'Pushers' -benchtime 1x -timeout 20m ./app/

## bench: the package benchmarks, then the whole mesh
bench:
	go test -run '^$$' -bench . -benchtime 2s ./services/... ./shared/...
	$(MAKE) bench-mesh

clean:
	rm -rf $(BIN) data

.PHONY: tour
## tour: the front page's five-minute tour, pasted and checked (examples/tour.sh), against a running make run
tour:
	examples/tour.sh
