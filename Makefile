# The project's front door. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
ARGS ?=

.PHONY: install test-deps dev-deps js-deps bench-deps redis-server chromium run test test-fast bench bench-cpu bench-dashboard soak lint options-table clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e .
	touch $@

test-deps: $(VENV)/.test-installed

$(VENV)/.test-installed: $(VENV)/.installed
	$(PIP) -e '.[test]'
	touch $@

# Lint and type-check tools (ruff, mypy, stubs) on top of the test dependencies mypy checks against.
dev-deps: $(VENV)/.dev-installed

$(VENV)/.dev-installed: $(VENV)/.test-installed
	$(PIP) -e '.[dev]'
	touch $@

# The JS client suite (tests/js) needs @fal-ai/client, installed from the committed lock file.
js-deps: tests/js/node_modules/.package-lock.json

tests/js/node_modules/.package-lock.json: tests/js/package-lock.json tests/js/package.json
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error

# The shared-store tests start a real redis-server (Debian's package); install it when missing (CI is root).
redis-server:
	@command -v redis-server >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server \
		|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

# The dashboard's browser tests drive Debian's chromium through its chromedriver; install them when missing.
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null \
		|| DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
		|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

run: install
	$(VENV)/bin/any-llm-emulator serve $(ARGS)

# The in-process suite only: no sockets, processes, Redis, node or browser (see the markers in pyproject.toml).
test-fast: test-deps
	$(PY) -m pytest -q -m "not (socket or process or redis or js or browser)" $(ARGS)

test: test-deps js-deps redis-server chromium
	$(PY) -m pytest $(ARGS)
	# The plugin example, as a user's project runs it: its own pytest.ini, two xdist workers.
	cd examples && ../$(PY) -m pytest -n 2 -p no:cacheprovider

# aimock, measured beside the emulator by make bench, from its own lock file in bench/aimock (not tests/js).
bench-deps: bench/aimock/node_modules/.package-lock.json

bench/aimock/node_modules/.package-lock.json: bench/aimock/package-lock.json bench/aimock/package.json
	cd bench/aimock && npm ci --no-audit --no-fund --loglevel=error

bench: test-deps bench-deps chromium
	$(PY) bench/run.py $(ARGS)
	$(PY) bench/webhooks.py
	$(PY) bench/dashboard.py

# CPU time per call in-process (no server, no wrk): steady where loopback numbers are noisy.
bench-cpu: install
	$(PY) bench/cpu.py $(ARGS)

# The dashboard's first paint and page size with 1,000 requests in one namespace.
bench-dashboard: test-deps chromium
	$(PY) bench/dashboard.py $(ARGS)

# Steady lifecycle load for SOAK seconds, reporting the server's RSS slope.
SOAK ?= 600
soak: test-deps
	$(PY) bench/run.py --skip-throughput --streams 0 --soak $(SOAK) $(ARGS)

lint: dev-deps
	$(VENV)/bin/ruff check emulator tests bench
	$(VENV)/bin/ruff format --check emulator tests bench
	$(VENV)/bin/mypy

# Regenerate the options table in docs/options.md from the one declaration (emulator/config.py).
options-table: install
	$(PY) -m emulator.runtime.cli options-table --update docs/options.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tests/js/node_modules
