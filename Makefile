# record-sync. Needs only Go; everything else is fetched by go itself.
GOLANGCI_LINT_VERSION := v2.15.0
BIN := $(CURDIR)/bin
GOLANGCI_LINT := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)

.PHONY: run test test-short lint bench bench-ingest bench-mesh build clean

## run: everything in one process (embedded NATS, services, CRM emulator)
run: build
	$(BIN)/recordsync dev

## test: every test, with the race detector, against a real embedded NATS
test:
	go test -race -count=1 ./...

## test-short: the tests without the ones that build and run the binary
test-short:
	go test -race -short -count=1 ./...

## build: the recordsync binary in bin/
build:
	go build -o $(BIN)/recordsync ./cmd/recordsync

## lint: golangci-lint, installed at a pinned version into bin/
lint: $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run ./...

$(GOLANGCI_LINT):
	GOBIN=$(BIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/golangci-lint $@

## bench-ingest: records/s through the HTTP edge, single and batch, both profiles
bench-ingest:
	go test -run '^$$' -bench 'Ingest' -benchtime 3s ./services/ingest/

## bench-mesh: 100,000 records through the whole mesh to all three CRMs (Outreach one in 20), both profiles,
## two bursts each (RECORDSYNC_BENCH_RECORDS, default 100000; RECORDSYNC_BENCH_CPUPROFILE=prefix for profiles)
bench-mesh:
	go test -run '^$$' -bench 'Mesh' -benchtime 1x -timeout 30m ./app/

## bench: the package benchmarks, then the whole mesh
bench:
	go test -run '^$$' -bench . -benchtime 2s ./services/... ./shared/...
	$(MAKE) bench-mesh

clean:
	rm -rf $(BIN) data
