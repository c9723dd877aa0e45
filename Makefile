# fbsflow: `make run` runs the card for the example municipality; `make test` runs the tests.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3
EXAMPLE := config/municipalities/eksempel-kommune.yaml
# The demo approves sending and confirms the manual steps up front, so it ends complete.
DEMO_CONFIRM := inform.website inform.faq inform.poster.hovedbiblioteket \
	inform.poster.soeby-bibliotek inform.self_service inform.info_screen inform.social_post
# Keep Prefect's local database inside the project, not in the user's home.
export PREFECT_HOME ?= $(CURDIR)/.prefect
# Prefect's usage analytics stay off: nothing phones home from a municipal server.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
# Tools the project calls outside Python: WeasyPrint's Pango, poppler (PDF text, PDF to PNG),
# zbar (QR decoding in tests), Chromium (accessibility check, UI screenshot), fonts with æøå.
APT_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0 poppler-utils zbar-tools fonts-dejavu-core chromium
APT_COMMANDS := pdftotext pdftoppm zbarimg chromium

.PHONY: run test test-slow test-fast bench lint system-deps serve clean

# The demo keeps its state (ledger, key, checklist with the demo's confirmations) in a folder of
# its own, so "Projektleder (demo)" never turns up in a real run's checklist (`.fbsflow/`).
DEMO_DATA_DIR := $(CURDIR)/.fbsflow-demo

run: $(VENV)/.run-installed system-deps
	FBSFLOW_DATA_DIR=$(DEMO_DATA_DIR) $(BIN)/fbsflow run $(EXAMPLE) --approve \
	  $(foreach s,$(DEMO_CONFIRM),--confirm $(s)) --by "Projektleder (demo)"

# Everything but the multi-minute end-to-end proofs (crash and rerun, parallel runs): those run
# in `make test-slow`, which CI runs after `make test`.
test: $(VENV)/.dev-installed system-deps node_modules/axe-core/axe.min.js
	$(BIN)/pytest -q -m "not slow"

test-slow: $(VENV)/.dev-installed system-deps node_modules/axe-core/axe.min.js
	$(BIN)/pytest -q -m slow

test-fast: $(VENV)/.dev-installed
	$(BIN)/pytest -q -m "not integration and not slow"

bench: $(VENV)/.dev-installed system-deps
	$(BIN)/python bench/email.py
	$(BIN)/python bench/sms.py
	$(BIN)/python bench/latency.py --flow 1M
	$(BIN)/python bench/receipts.py --events 1M

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

serve: $(VENV)/.run-installed system-deps
	$(BIN)/fbsflow serve $(EXAMPLE)

# pip -qq: errors only. A machine's pip config may list package folders that are not there,
# and pip warns about each of them for every package it installs.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -qq -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -qq -e '.[dev]'
	touch $@ $(VENV)/.run-installed

# Installs the Debian packages only when one of their commands is missing (needs root, as here).
system-deps:
	@missing=0; for c in $(APT_COMMANDS); do command -v $$c >/dev/null || missing=1; done; \
	fc-list 2>/dev/null | grep -qi dejavu || missing=1; \
	if [ $$missing = 1 ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	  else echo "Missing system packages; run: sudo apt-get install $(APT_PACKAGES)"; exit 1; fi; \
	fi

node_modules/axe-core/axe.min.js: package.json
	npm install --no-audit --no-fund --silent
	touch $@

# Never the ledger, its key or the checklist (`.fbsflow/` beside each config, or FBSFLOW_DATA_DIR):
# without them the next run would send to every borrower again. The demo's `.fbsflow-demo/` is
# kept for the same reason (a `make run` with provider variables set does send). To clear a
# municipality's checklist, and only that: `fbsflow reset CONFIG` (it asks; the ledger stays).
clean:
	rm -rf $(VENV) outbox .prefect node_modules .pytest_cache
