# The two commands: `make run` (the pipeline on this machine) and `make test`.
# Both install what is missing first: Python packages from uv.lock (uv itself from PyPI),
# the emulators from package-lock.json, and a JRE / Node.js / OpenSSL from Debian if absent.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.9
UV := python3 -m uv
PY := .venv/bin/python

.PHONY: help install run test test-unit test-integration lint load bench clean

help:
	@echo "make run    - install what is missing, then run the local pipeline (Ctrl-C stops it)"
	@echo "make test   - install what is missing, then run every test"
	@echo "make lint   - ruff check and format check"
	@echo "make load ARGS='--rate 500 --duration 60'  - the load generator (python -m loadgen -h)"
	@echo "make bench  - benchmarks: ratios measured side by side in one run; scaler simulation"
	@echo "make clean  - remove the local state (.local/)"

install: .local/.system-ok .venv/.installed node_modules/.installed

.local/.system-ok:
	@missing=""; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v keytool >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  echo "installing from Debian:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	@mkdir -p .local && touch $@

.venv/.installed: pyproject.toml uv.lock .local/.system-ok
	$(UV) sync --frozen --all-extras
	@touch $@

# headless Chromium for the local dashboard's browser test (make test only, not make run)
.local/.chromium-ok: .local/.system-ok
	@command -v chromium >/dev/null || { echo "installing chromium from Debian (browser test)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@touch $@

node_modules/.installed: package.json package-lock.json .local/.system-ok
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

run: install
	$(PY) -m local_stack

test: install .local/.chromium-ok
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest tests/unit

test-integration: install .local/.chromium-ok
	$(PY) -m pytest tests/integration

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

load: install
	$(PY) -m loadgen $(ARGS)

bench: install
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	$(PY) -m benchmarks.encoder
	$(PY) -m benchmarks.http
	$(PY) -m benchmarks.memory
	$(PY) -m benchmarks.sink
	$(PY) -m scaler.simulation

clean:
	rm -rf .local
