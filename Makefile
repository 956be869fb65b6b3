# AutoFlow developer tasks. `make example` and `make test` are the two set-up commands.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
# Debian packages AutoFlow needs at run time (PDF reports, workflow graphs) and for the tests
# (PDF checks; the report site in a headless browser and behind the stack's nginx configuration)
RUNTIME_DEBS := pandoc ruby-asciidoctor-pdf graphviz
TEST_DEBS := poppler-utils chromium nginx-light
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PIPENV_VENV_IN_PROJECT := 1

.PHONY: help install system-deps test-deps postgres-deps example test test-fast test-faults lint lock clean

help:
	@echo "make example   set everything up and run the self-contained example"
	@echo "make test      set everything up and run the whole test suite"
	@echo "make test-faults       only the fault-injection suite (tests/faults)"
	@echo "make test-container    build the Docker image with buildah and run the example in it"
	@echo "make bench / bench-quick   benchmarks into benchmarks/results/latest.md"
	@echo "make lint      mypy"
	@echo "make lock      refresh requirements.lock from pyproject.toml"

$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || $(MAKE) --no-print-directory debs DEBS=python3-venv
	$(PYTHON) -m venv $(VENV)

# Exact versions from requirements.lock; re-run when the lock or the package metadata change.
# Bytecode is compiled at install time: with PYTHONDONTWRITEBYTECODE set (as on many CI machines
# and in containers) every process would otherwise compile Prefect and the rest from source,
# about 3 CPU-seconds more for each AutoFlow command and each worker's flow run (measured: importing
# autoflow.flows took 5.0 CPU-s without bytecode, 2.1 with).
$(VENV)/.installed: $(BIN)/python requirements.lock pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/python -m uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/python -m uv pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m compileall -q -j 0 autoflow
	@touch $@

install: $(VENV)/.installed system-deps

system-deps:
	@$(MAKE) --no-print-directory debs DEBS="$(RUNTIME_DEBS)" CHECK="pandoc asciidoctor-pdf dot"

test-deps: $(VENV)/.installed
	@$(MAKE) --no-print-directory debs DEBS="$(TEST_DEBS)" CHECK="pdftotext pdfimages chromium /usr/sbin/nginx"
	@$(MAKE) --no-print-directory postgres-deps

# PostgreSQL for the database tests: the server AUTOFLOW_TEST_POSTGRES names (default 127.0.0.1:5432),
# else initdb to start a throwaway cluster for the session (tests/databases.py), else Debian's server.
# An AUTOFLOW_TEST_POSTGRES set explicitly is never replaced: installing would not help (exit 3).
postgres-deps: $(VENV)/.installed
	@$(BIN)/python -m tests.pgcluster check; rc=$$?; \
	if [ $$rc = 1 ]; then $(MAKE) --no-print-directory debs DEBS=postgresql; elif [ $$rc != 0 ]; then exit $$rc; fi

# Installs missing Debian packages when root; otherwise says what to install.
debs:
	@missing=""; for c in $(or $(CHECK),none); do [ "$$c" = none ] || command -v $$c >/dev/null || missing=1; done; \
	if [ -z "$(CHECK)" ] || [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages: $(DEBS)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBS)) >/dev/null || exit 1; \
	  else \
	    echo "AutoFlow needs these Debian packages: $(DEBS). Install them with: sudo apt-get install $(DEBS)"; exit 1; \
	  fi; \
	fi

# The self-contained example (examples/local: no FlowKit) once, into examples/outputs; then where it all is.
example: install
	AUTOFLOW_INPUTS_DIR=examples/local AUTOFLOW_OUTPUTS_DIR=examples/outputs AUTOFLOW_DB_URI= $(BIN)/python -m autoflow
	@echo
	@echo "Executed notebooks: examples/outputs/notebooks/ ($$(ls examples/outputs/notebooks | wc -l) files)"
	@echo "PDF reports:        examples/outputs/reports/ ($$(ls examples/outputs/reports | wc -l) files)"
	@echo "Run history:        examples/outputs/autoflow.db; show it with"
	@echo "                    AUTOFLOW_OUTPUTS_DIR=examples/outputs $(BIN)/python -m autoflow status"
	@echo "Report site:        $$(pwd)/examples/outputs/site/index.html"

test: install test-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install postgres-deps
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-faults: install test-deps
	$(BIN)/python -m pytest tests/faults $(PYTEST_ARGS)

# The Docker image, built from the Dockerfile with buildah and run on examples/local (slow, so
# not part of `make test`; see tests/container/harness.py).
.PHONY: test-container container-deps
test-container: install test-deps container-deps
	$(BIN)/python -m pytest -m container tests/container $(PYTEST_ARGS)

container-deps:
	@$(MAKE) --no-print-directory debs DEBS="buildah debootstrap" CHECK="buildah debootstrap"

lint: install
	$(BIN)/python -m mypy

# Refresh the lock (exact versions of everything, dev tools included). uv writes no index URL.
lock: $(BIN)/python
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/python -m uv pip compile pyproject.toml --extra dev --python-version 3.11 --quiet -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache examples/outputs/notebooks examples/outputs/reports examples/outputs/logs examples/outputs/.autoflow examples/outputs/*.db*

# Benchmarks (see benchmarks/README.md); both write benchmarks/results/latest.{md,json}.
# `make bench` waits (up to 20 min) for a quiet machine first; pass more with BENCH_ARGS="--only b3".
.PHONY: bench bench-quick
bench: install
	$(BIN)/python -m benchmarks --wait-for-load 1.0 --max-wait 1200 $(BENCH_ARGS)

bench-quick: install
	$(BIN)/python -m benchmarks --quick $(BENCH_ARGS)
