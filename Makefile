# Two commands on a fresh machine with python3 and make: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint typecheck unit demo ui ui-deps scale scale-deps bench constraints clean
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

venv: $(STAMP)

# Install the package with its dev extras from the tested, pinned set (constraints.txt).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq -c constraints.txt -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

unit: venv ui-deps scale-deps
	$(BIN)/pytest

test: lint typecheck unit

# The browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
ui-deps:
	@test -x /usr/bin/chromium || { echo "Installing Debian's chromium for the browser tests ..."; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

# PostgreSQL and Redis for `make scale` and the Celery fault test; they are started and stopped by the runs.
# Debian's packages start no service in a container (policy-rc.d); elsewhere, stop the system ones if you like.
scale-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v redis-server >/dev/null || { \
	  echo "Installing Debian's postgresql and redis-server for the scale runs ..."; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql redis-server; }

# The sample DAGs on the CeleryExecutor: PostgreSQL, Redis, two workers; PROFILES=20000 make scale for another size.
PROFILES ?= 100000
scale: venv scale-deps
	$(BIN)/python -m demo.scale --dags-folder dags --state-dir .scale --profiles $(PROFILES)

# A local Airflow web UI on the sample DAGs, with the demo API, SMTP server and connections. Ctrl-C stops it all.
ui: venv
	$(BIN)/python -m demo.ui --dags-folder dags --airflow-home .ui/airflow --state-dir .ui/demo

# Side by side with HttpHook, HttpOperator and plain requests, in one run each (about 3 minutes).
bench: venv
	$(BIN)/python -m tests.benchmarks.bench_external_api
	$(BIN)/python -m tests.benchmarks.bench_pagination

# The sample DAGs end to end, against the local campaign API and SMTP server.
demo: venv
	$(BIN)/python -m demo.run --dags-folder dags --airflow-home .airflow --state-dir .demo

# Re-pin the tested set after changing dependencies: resolves from pyproject.toml, writes constraints.txt.
constraints:
	rm -rf .venv-pin && $(PYTHON) -m venv .venv-pin
	.venv-pin/bin/python -m pip install -qq --upgrade pip
	.venv-pin/bin/python -m pip install -qq -e '.[dev]'
	.venv-pin/bin/python -m pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt
	rm -rf .venv-pin

clean:
	rm -rf $(VENV) .airflow .demo .ui .scale .pytest_cache .mypy_cache .ruff_cache
