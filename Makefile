# Sluice — `make run` runs the demo on the embedded default backend; `make test` runs the full
# suite (unit, conformance on every backend against its real broker, hub end-to-end, short fuzz).

GO        ?= go
PKGS      ?= ./...
TIMEOUT   ?= 40m
FUZZTIME  ?= 3s
BENCHTIME ?= 1s
# staticcheck's version, pinned so that a new release's checks do not fail an old commit
STATICCHECK ?= v0.8.2

.PHONY: all build run test test-short vet fuzz bench bench-report clean

all: build

build:
	$(GO) build ./...

## run: the end-to-end demo on an embedded hub with a temporary bbolt directory
run:
	$(GO) run ./examples/e2e-messaging

## vet: static checks (gofmt, go vet, staticcheck)
vet:
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; exit 1)
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) -checks 'inherit,-ST1005' $(PKGS)

## test: everything, brokers required (a broker that cannot start fails)
test: vet
	SLUICE_REQUIRE_BROKERS=1 $(GO) test -race -count=1 -timeout $(TIMEOUT) $(PKGS)
	./.ci/fuzz $(FUZZTIME)

## test-short: fast local iteration; skips tests that need Kafka, Pulsar or kinesis-mock
test-short:
	$(GO) test -race -short -count=1 $(PKGS)

## fuzz: every fuzz target for longer (FUZZTIME=1m make fuzz)
fuzz:
	./.ci/fuzz $(if $(filter 3s,$(FUZZTIME)),1m,$(FUZZTIME))

## bench: Go benchmarks, 5 runs each (compare medians with benchstat)
bench:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count 5 $(PKGS)

## bench-report: run the benchmark of `sluice bench` (hub/bench) on every backend available
## here (brokers started by the launchers) and regenerate docs/benchmarks.md and its charts
## (takes about half an hour)
bench-report:
	$(GO) run ./hub/bench/cmd/benchreport -out docs

## clean: remove what `sluice hub` and `sluice conformance`/`bench` write by default here
clean:
	rm -rf sluice-data sluice-report
