# Sendfleet: `make run` (first command on a fresh machine), `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install services debs vendor test lint typecheck run bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# PostgreSQL and Redis are expected on 127.0.0.1; start the local ones if they are down.
services:
	@bash ops/dev/services.sh

# Debian packages the tests need (chromium, prometheus, smtp-sink ...): ops/dev/debs.txt.
debs:
	@bash ops/dev/debs.sh

# The web UI's browser libraries (htmx, Chart.js), pinned in package-lock.json, copied into
# app/web/static/vendor/ (not committed).
VENDOR := app/web/static/vendor
vendor: $(VENDOR)/.installed

$(VENDOR)/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel error
	mkdir -p $(VENDOR)
	cp node_modules/htmx.org/dist/htmx.min.js node_modules/chart.js/dist/chart.umd.min.js $(VENDOR)/
	touch $@

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy --strict rotator

test: install services debs vendor lint typecheck
	$(PY) -m pytest -q $(PYTEST_ARGS)

run: install services vendor
	@bash ops/dev/run.sh

bench: install services
	@bash ops/dev/bench.sh

# The database and .env stay: `make run` comes up on them again (ops/dev/bootstrap.sh).
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache var node_modules $(VENDOR)
