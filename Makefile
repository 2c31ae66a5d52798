# Orderstream: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
INFRA := $(PYTHON) deploy/local/infra.py
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: bench help install web tools test test-unit test-integration lint schemas-lock infra-install infra-start \
        infra-stop infra-status infra-clean up down status demo docs clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[dev,docs]"
	@rm -f $(VENV)/.installed-* && touch $@

# The gateway's browser libraries, from npm at the versions web/package-lock.json pins (npm ci, no install
# scripts), copied into the gateway's static files (git-ignored; the package data ships them): the web pages'
# chart library (lightweight-charts) and the interactive API docs at /api/v1/docs (swagger-ui-dist).
VENDOR := services/orderstream/gateway/static/vendor
WEB_VENDOR := $(VENDOR)/.fetched

$(WEB_VENDOR): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --ignore-scripts
	mkdir -p $(VENDOR)
	cp web/node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.js $(VENDOR)/
	cp web/node_modules/swagger-ui-dist/swagger-ui-bundle.js web/node_modules/swagger-ui-dist/swagger-ui.css $(VENDOR)/
	touch $@

web: $(WEB_VENDOR) ## Fetch the gateway's browser libraries (npm ci in web/): chart library, Swagger UI

install: $(STAMP) $(WEB_VENDOR) ## Create .venv and install Orderstream with its dev and docs tools and the browser libraries

KUSTOMIZE := .cache/bin/kustomize

$(KUSTOMIZE):
	GOBIN=$(abspath .cache/bin) go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0

tools: $(KUSTOMIZE) ## Build the test tools the suite needs (kustomize, from the Go module proxy, into .cache/bin)

test: $(STAMP) $(KUSTOMIZE) $(WEB_VENDOR) ## Run every test; starts a local Kafka + FerretDB unless KAFKA_BOOTSTRAP_SERVERS/MONGO_URL or Docker are there
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP) $(KUSTOMIZE) ## Run the unit tests only (no servers)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) $(WEB_VENDOR) ## Run the integration and end-to-end tests (real Kafka and MongoDB-wire server)
	$(BIN)/python -m pytest tests/integration tests/e2e $(PYTEST_ARGS)

bench: $(STAMP) ## Benchmarks (not part of `make test`): matching core vs pyorderbook, matcher via the broker, collector into MongoDB, gateway
	$(BIN)/pip install -q -e ".[dev,bench]"
	$(BIN)/python bench/bench_chain.py
	$(BIN)/python bench/bench_book.py
	$(BIN)/python bench/bench_matcher_service.py
	$(BIN)/python bench/bench_collector.py
	$(BIN)/python bench/bench_gateway.py
	$(BIN)/python bench/bench_fix.py

lint: $(STAMP) ## ruff and mypy (strict on services/)
	$(BIN)/ruff check services tests deploy/local bench docs/hooks docs/examples
	$(BIN)/mypy

schemas-lock: $(STAMP) ## Lock new schema versions (refuses incompatible changes) and regenerate records.py
	$(BIN)/orderstream schemas-lock

infra-install: ## Resolve the Kafka and FIX Executor jars (Maven) and build FerretDB (Go), cached in .cache/
	$(INFRA) install

infra-start: ## Start the local Kafka broker, FerretDB and the FIX venue (QuickFIX/J Executor, :9880) (idempotent)
	$(INFRA) start

infra-stop: ## Stop the local Kafka broker, FerretDB and the FIX venue
	$(INFRA) stop

infra-status: ## Show whether the local servers run
	$(INFRA) status

infra-clean: ## Stop the local servers and delete their data and logs
	$(INFRA) clean

up: $(STAMP) $(WEB_VENDOR) ## Run the system: Kafka + MongoDB-wire server + FIX venue (Executor), topics, instruments, all six services, demo keys (REPLICAS=2: two workers per worker service)
	$(BIN)/orderstream up $(if $(REPLICAS),--replicas $(REPLICAS))

down: ## Stop everything `make up` started
	@if [ -x $(BIN)/orderstream ]; then $(BIN)/orderstream down; else $(INFRA) stop; fi

status: $(STAMP) ## Show what runs: supervisor, each service's /healthz, the local servers
	$(BIN)/orderstream status

demo: $(STAMP) ## Live traffic through the gateway (after `make up`), then end-state checks
	$(BIN)/orderstream demo $(DEMO_ARGS)

DOCS_SITE := build/docs

docs: $(STAMP) ## Build the docs site (mkdocs, material theme) into build/docs, the AsyncAPI topics page included
	$(BIN)/mkdocs build --strict --site-dir $(DOCS_SITE)
	@echo "open $(DOCS_SITE)/index.html"

clean: ## Remove the virtualenv and caches (keeps .cache/ installs: see infra-clean)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
