# Two entry points for a fresh machine with Python 3.11 and make:
#   make demo   the example batch end to end on the embedded default
#   make test   the whole test suite (what CI runs)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# Two layers: what the local stack runs (make demo, make up), then the test bench on top.
LOCAL_STAMP := $(VENV)/.local-$(shell cat requirements.txt requirements-local.txt | cksum | cut -d' ' -f1)
DEV_STAMP := $(VENV)/.dev-$(shell cat requirements.txt requirements-local.txt requirements-dev.txt | cksum | cut -d' ' -f1)
# Azurite (Azure's storage emulator) for tests/storage, from npm; node is on our machines.
NODE_STAMP := node_modules/.installed-$(shell cat package.json package-lock.json | cksum | cut -d' ' -f1)

.PHONY: demo up test lint typecheck unit bench clean screenshots

$(LOCAL_STAMP): requirements.txt requirements-local.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-local.txt
	rm -f $(VENV)/.local-*
	touch $(LOCAL_STAMP)

$(DEV_STAMP): $(LOCAL_STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.dev-*
	touch $(DEV_STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

demo: $(LOCAL_STAMP)  ## Temporal dev server + gateway emulator + worker, run examples/batch.jsonl, stop
	$(PY) -m scripts.stack demo

up: $(LOCAL_STAMP)  ## the same stack, kept up for interactive use (Ctrl-C stops it)
	$(PY) -m scripts.stack up

screenshots: $(DEV_STAMP)  ## docs/screenshots/*.png: a running job in the Temporal Web UI (docs/web-ui.md)
	command -v chromium >/dev/null || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update && $$SUDO apt-get install -y chromium; }
	$(PY) -m scripts.screenshots

lint: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(DEV_STAMP)
	$(PY) -m mypy

unit: $(DEV_STAMP) $(NODE_STAMP)  ## tests that start no server processes
	$(PY) -m pytest -m "not e2e"

test: lint typecheck $(NODE_STAMP)  ## everything CI runs
	$(PY) -m pytest

bench: $(DEV_STAMP)
	@echo "benchmarks: python -m bench.<name>; see README"

clean:
	rm -rf .local batched-response.jsonl batched-errors.jsonl
