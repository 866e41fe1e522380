# Two commands for a newcomer: `make demo` and `make test`. Both build .venv from the lock first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test dev serve lock bench lint clean

venv: $(STAMP)

# Top-level packages too: the editable install maps each one, so a new package re-installs.
$(STAMP): requirements.lock pyproject.toml $(wildcard */__init__.py)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	# Bytecode compiled once here: nothing can write it later where PYTHONDONTWRITEBYTECODE is
	# set, and then every process (API worker, Dagster run, dbt) compiles what it imports again -
	# 1.1-3 s more per start-up (docs/architecture.md section 9).
	$(BIN)/uv pip sync --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/clearhouse demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

dev: $(STAMP)
	$(BIN)/clearhouse dev

serve: $(STAMP)
	$(BIN)/clearhouse serve

# Re-resolve the pinned dependencies after editing pyproject.toml.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock

bench: $(STAMP)
	$(BIN)/python bench/pipeline.py --payments 1000000

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf var dbt_project/target dbt_project/logs
