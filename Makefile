# Scripts to rule them all: people and CI use these same targets.
#   make run    create .venv, install, seed demo items into an empty store, serve the API
#   make test   install what tests need (Debian packages too, when root), lint, type-check, test
#   make lint   ruff format --check, ruff check, mypy --strict
#   make bench  every benchmark scenario beside the baselines; the tables go into BENCHMARKS.md;
#               then 50,000 connections at the fleet rehearsal's balancer (as root)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint format bench system-deps clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "c50k needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet --constraint constraints.txt --editable '.[test]'
	@touch $@

run: $(STAMP)
	$(BIN)/c50k seed --if-empty
	$(BIN)/c50k serve

system-deps:
	@scripts/system-deps

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: system-deps $(STAMP) lint
	$(BIN)/pytest

# BENCH_ARGS=... passes options through, e.g. BENCH_ARGS="--duration 5".
bench: system-deps $(STAMP)
	$(BIN)/c50k bench all --update-benchmarks BENCHMARKS.md $(BENCH_ARGS)
	scripts/bench-fleet

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
