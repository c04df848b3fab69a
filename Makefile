# The two commands: `make run` (the pipeline on this machine) and `make test`.
# Both install what is missing first: a JRE / Node.js / OpenSSL from Debian or Ubuntu if absent
# (as root, or with sudo; without either they are named and make stops), uv (pinned, from PyPI,
# into .local/uv), the Python packages from uv.lock into .venv, the emulators from
# package-lock.json.
# Works with a distribution's own python3 (PEP 668 "externally managed"): nothing is installed
# into it; uv goes to .local/uv with `pip install --target`, the packages to .venv.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.9
# the Python that installs uv and that .venv is built from (3.11-3.13)
PYTHON ?= python3
UV_DIR ?= .local/uv
VENV ?= .venv
UV := $(UV_DIR)/bin/uv
UV_STAMP := $(UV_DIR)/.installed-$(UV_VERSION)
PY := $(VENV)/bin/python
export UV_PROJECT_ENVIRONMENT := $(VENV)
# only the Python given, never one fetched from elsewhere
export UV_PYTHON_DOWNLOADS := never
ARGS ?=

# Debian/Ubuntu packages $(1) (a shell word list): apt-get as root, with sudo as another user;
# where neither can be used, name them and stop.
APT_INSTALL = pkgs="$(1)"; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo=sudo; \
	else sudo=none; fi; \
	if ! command -v apt-get >/dev/null || [ "$$sudo" = none ]; then \
	  echo "make: missing system packages:$$pkgs" >&2; \
	  echo "make: install them (Debian/Ubuntu: sudo apt-get install$$pkgs; elsewhere the same tools from your package manager), then run make again" >&2; \
	  exit 1; \
	fi; \
	echo "installing from Debian/Ubuntu:$$pkgs$${sudo:+ (with sudo)}"; \
	{ $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs; } || { \
	  echo "make: could not install$$pkgs: install them by hand, then run make again" >&2; \
	  exit 1; }

.PHONY: help install python-env run test test-unit test-integration lint load bench clean

help:
	@echo "make run    - install what is missing, then run the local pipeline (Ctrl-C stops it)"
	@echo "              options: make run ARGS='--shards 2 --producer-port 9080' (python -m local_stack -h)"
	@echo "make test   - install what is missing, then run every test"
	@echo "make lint   - ruff check and format check; mypy; audit of uv.lock for known vulnerabilities"
	@echo "make load ARGS='--rate 500 --duration 60'  - the load generator (python -m loadgen -h)"
	@echo "make bench  - benchmarks: ratios measured side by side in one run; scaler simulation"
	@echo "make clean  - remove the local state (.local/)"

install: .local/.system-ok $(VENV)/.installed node_modules/.installed

.local/.system-ok:
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null || { \
	  echo "make: needs Python 3.11-3.13 as $(PYTHON) (found: $$($(PYTHON) --version 2>&1)); install one and run make PYTHON=python3.12 (for example)" >&2; \
	  exit 1; }
	@missing=""; \
	{ command -v java && command -v keytool; } >/dev/null || missing="$$missing default-jre-headless"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	$(PYTHON) -m pip --version >/dev/null 2>&1 || missing="$$missing python3-pip"; \
	if [ -n "$$missing" ]; then $(call APT_INSTALL,$$missing); fi
	@mkdir -p .local && touch $@

# uv, pinned, into .local/uv: `pip install --target` installs into a directory of its own, which
# PEP 668 allows where `pip install` (even --user) into the system's Python is refused
$(UV_STAMP): .local/.system-ok
	@rm -rf $(UV_DIR)
	PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip install --quiet --disable-pip-version-check \
	  --target $(UV_DIR) "uv==$(UV_VERSION)"
	@touch $@

$(VENV)/.installed: pyproject.toml uv.lock $(UV_STAMP)
	$(UV) sync --frozen --all-extras --python $(PYTHON)
	@touch $@

# the Python side alone (CI builds it from Debian's own python3 into a temporary place)
python-env: $(VENV)/.installed

# headless Chromium for the local dashboard's browser test (make test only, not make run)
.local/.chromium-ok: .local/.system-ok
	@command -v chromium >/dev/null || { $(call APT_INSTALL, chromium); }
	@touch $@

node_modules/.installed: package.json package-lock.json .local/.system-ok
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# the first record's time is counted from here, installs included
run: STARTED := $(shell date +%s.%N 2>/dev/null)
run: install
	$(PY) -m local_stack --started-at $(STARTED) $(ARGS)

test: install .local/.chromium-ok
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest tests/unit

test-integration: install .local/.chromium-ok
	$(PY) -m pytest tests/integration

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) .ci/audit.py

load: install
	$(PY) -m loadgen $(ARGS)

# the official KPL (its jars from Maven Central) and our harness class, for benchmarks.kpl
KPL_HARNESS := .local/kpl/classes/bench/KplHarness.class
$(KPL_HARNESS): benchmarks/kpl/pom.xml benchmarks/kpl/src/main/java/bench/KplHarness.java .local/.system-ok
	@command -v mvn >/dev/null || { $(call APT_INSTALL, maven); }
	mvn -q -B -f benchmarks/kpl/pom.xml compile
	@touch $@

bench: install $(KPL_HARNESS)
	@command -v wrk >/dev/null || { $(call APT_INSTALL, wrk); }
	$(PY) -m benchmarks.kpl
	$(PY) -m benchmarks.encoder
	$(PY) -m benchmarks.http
	$(PY) -m benchmarks.protocol
	$(PY) -m benchmarks.memory
	$(PY) -m benchmarks.sink
	$(PY) -m benchmarks.end_to_end
	$(PY) -m scaler.simulation

clean:
	rm -rf .local
