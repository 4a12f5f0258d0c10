# Two commands matter: `make demo` and `make test`. Both set themselves up from PyPI on a fresh machine.
#   make test       tests + ruff + mypy on Airflow 3.3, then the tests again on Airflow 2.11 (a second venv)
#   make test-fast  tests + ruff + mypy on Airflow 3.3 only
#   make bench      the performance benchmarks (ratios measured side by side), see docs/performance.md
#   make demo       a sample warehouse, the local sandbox, the example DAGs through Airflow, and a summary
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV211 := .venv-af211
AIRFLOW_33 ?= apache-airflow==3.3.*
AIRFLOW_211 ?= apache-airflow==2.11.*
UV := $(VENV)/bin/uv
PYTEST_ARGS ?=
ARTIFACTS ?= test-artifacts

.PHONY: venv venv-211 test test-fast test-33 test-211 lint system-deps demo bench clean

$(VENV)/.installed: pyproject.toml Makefile
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip uv
	$(UV) pip install --python $(VENV)/bin/python -e '.[test,openlineage]' '$(AIRFLOW_33)'
	@touch $@

$(VENV211)/.installed: pyproject.toml Makefile $(VENV)/.installed
	@test -x $(VENV211)/bin/python || $(PYTHON) -m venv $(VENV211)
	$(UV) pip install --python $(VENV211)/bin/python -e '.[test,openlineage]' '$(AIRFLOW_211)'
	@touch $@

venv: $(VENV)/.installed
venv-211: $(VENV211)/.installed

# Debian packages the tests need (headless Chromium for the page tests, a MariaDB server for the MySQL-family sync state).
# Installed only where missing; needs root or sudo. Neither is left running: the tests start their own throwaway servers.
system-deps:
	@bash scripts/system-deps.sh

test: test-33 test-211

test-fast: test-33

test-33: $(VENV)/.installed system-deps
	mkdir -p $(ARTIFACTS)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)
	$(MAKE) lint

test-211: $(VENV211)/.installed system-deps
	$(VENV211)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(VENV)/.installed
	$(VENV)/bin/python -m benchmarks $(BENCH_ARGS)

demo: $(VENV)/.installed
	$(VENV)/bin/python scripts/demo.py $(DEMO_ARGS)

clean:
	rm -rf $(VENV) $(VENV211) $(ARTIFACTS) .demo
