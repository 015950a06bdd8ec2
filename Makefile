# tickerq — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

BIN        := $(CURDIR)/bin
RUN_DIR    := $(CURDIR)/run
WATCHLIST  ?= examples/watchlist.txt
export REDIS_URL    ?= redis://127.0.0.1:6379/0
export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tickerq?sslmode=disable

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: services
services: tools ## make Redis and PostgreSQL available (start or install them) and create the database
	@scripts/services.sh

# The tests start their own Redis; they need only the PostgreSQL server on
# which they create and drop databases of their own.
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable

.PHONY: test-services
test-services: tools ## make the tests' PostgreSQL (TEST_DATABASE_URL) available; they start their own Redis
	@DATABASE_URL="$$TEST_DATABASE_URL" scripts/services.sh postgres

.PHONY: tools
tools: ## install the C compiler (for -race), curl, Chromium (browser test) and redis-server (the tests' own Redis) when missing
	@scripts/tools.sh

.PHONY: build
build: ## build worker, producer and quoteserver into ./bin
	go build -o $(BIN)/ ./worker ./producer ./quoteserver

.PHONY: migrate
migrate: services build ## apply the schema and the DB_ROLE role
	$(BIN)/worker migrate

# make run listens on QUOTE_API_URL's host:port (quoteserver), ADMIN_ADDR
# (worker) and UI_ADDR (web UI): set them, and REDIS_URL / DATABASE_URL if
# wanted, to run a second clone beside the first (README.md, "Ports").
.PHONY: run
run: migrate stop ## services, schema, quoteserver, worker and web UI in the background, then enqueue the sample watchlist
	@scripts/run.sh "$(BIN)" "$(RUN_DIR)" "$(WATCHLIST)"

.PHONY: stop
stop: ## stop the web UI, worker and quoteserver that this clone's `make run` started, and nothing else
	@scripts/stop.sh "$(BIN)" "$(RUN_DIR)"

.PHONY: bench
bench: services ## measure tickerq against asynq's ceilings (docs/performance.md); figures in bench-output/
	@scripts/bench.sh bench-output $(BENCH_FLAGS)

.PHONY: lint
# staticcheck is a tool dependency in go.mod (`tool` directive, pinned by its
# semver module version, v0.8.2 = 2026.2.2): `go tool` builds it from the
# module proxy, so nothing has to be installed in ~/go/bin first.
lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	go vet ./...
	go tool staticcheck -version
	go tool staticcheck ./...

# scripts/test.sh starts a private redis-server for the run (free loopback
# port, nothing persisted, stopped at the end) unless TEST_REDIS_URL names
# one, runs every test with the race detector through gotestsum (a `tool`
# in go.mod, like staticcheck) with -p 2 -parallel 2 (the load one Postgres
# and 15 Redis databases are sized for) and TICKERQ_REQUIRE_REDIS_SERVER=1
# (tests that start redis-server fail, rather than skip, without it), and
# ends with the list of skipped tests and why. The tests never use
# REDIS_URL or DATABASE_URL. TEST_PKGS narrows the packages.
.PHONY: test
test: test-services lint ## tools and Postgres, lint, then every test with the race detector, on a Redis of its own
	@scripts/test.sh

# The fault suites' full forms, run by hand (docs/reliability.md). Their
# short forms run in `make test`. Built without -race: they count jobs per
# second and the packages' own tests run under the race detector.
CHAOS_JOBS ?= 100000
SOAK_JOBS  ?= 1000000

.PHONY: chaos
chaos: test-services ## chaos suite, full form: CHAOS_JOBS (100000) jobs through killed workers, Redis, Postgres and quote API faults
	TICKERQ_CHAOS_JOBS=$(CHAOS_JOBS) go test -count=1 -timeout 90m -run '^TestChaos$$' -v ./internal/e2e

.PHONY: soak
soak: test-services ## role-guard soak, full form: SOAK_JOBS (1000000) jobs through the batched writer with failing batches
	TICKERQ_SOAK_JOBS=$(SOAK_JOBS) go test -count=1 -timeout 120m -run '^TestRoleGuardSoak$$' -v ./internal/e2e

# go test -fuzz takes one target and one package, so each runs in turn.
# Failing inputs land in the package's testdata/fuzz/FuzzX/ and are then
# replayed by every plain `go test` as regression cases.
FUZZTIME ?= 1m
FUZZ_TARGETS := tasks:FuzzNormalizeSymbol internal/quote:FuzzQuoteDecode \
	internal/quote:FuzzParseRetryAfter internal/schedule:FuzzScheduleConfig \
	internal/queue:FuzzEnqueueFile

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME (default 1m), one after another
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "go test -run '^$$' -fuzz '^$${t#*:}$$' -fuzztime $(FUZZTIME) ./$${t%%:*}"; \
		go test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) ./$${t%%:*}; \
	done
