# The two commands of the README: `make run` and `make test`. Both install what they need and
# are safe to run twice.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: run test check unit integration e2e ui bench proto system-deps web clean

$(VENV)/.run-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@ $(VENV)/.run-installed

## run: start Hodei (embedded PostgreSQL, server, local workers, web UI). Ctrl-C stops it.
run: $(VENV)/.run-installed web
	$(BIN)/hodei up

## test: every check and test; installs the system packages the tests need (as root).
test: system-deps $(VENV)/.dev-installed check
	HODEI_WEB_TESTS=1 VENV=$(VENV) bash scripts/build-web.sh
	HODEI_REQUIRE_DOCKER=1 $(BIN)/pytest -q

check: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

unit: $(VENV)/.dev-installed
	$(BIN)/pytest -q tests/unit

integration: $(VENV)/.dev-installed
	$(BIN)/pytest -q tests/integration

e2e: $(VENV)/.dev-installed
	$(BIN)/pytest -q tests/e2e

## ui: the browser tests (headless Chromium against a real `hodei up`); writes screenshots.
ui: $(VENV)/.dev-installed web
	$(BIN)/pytest -q tests/ui

## web: build the web UI into src/hodei/webui (skipped when web/ did not change).
web: $(VENV)/.run-installed
	VENV=$(VENV) bash scripts/build-web.sh

system-deps:
	bash scripts/install-system-deps.sh

bench: $(VENV)/.dev-installed
	$(PY) bench/dispatch.py

proto: $(VENV)/.dev-installed
	$(PY) scripts/gen_protos.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
