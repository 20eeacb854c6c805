# Every target builds what it needs itself: a fresh clone needs only `make demo` or `make test`.
# A `## text` line right above a target is its line in `make help`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.12: Chalice takes the Lambda runtime from the interpreter that packages the app.
PYTHON ?= $(shell command -v python3.12 2>/dev/null || echo python3.12)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: help venv clients-venv test demo local bench clean s3-put

## list every target with what it does
help:
	@echo "usage: make TARGET [VAR=value ...]   (README.md has the details)"
	@awk '/^## /{desc=substr($$0,4); next} /^[a-zA-Z0-9_-]+:/ && desc {split($$0,t,":"); printf "  make %-13s %s\n", t[1], desc} {desc=""}' $(MAKEFILE_LIST)

## create .venv with the pinned requirements (every target does this itself)
venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements-dev.txt
	@touch $@

# The stock inference clients (tritonclient, kserve) that the protocol's tests
# drive: a venv of their own, since kserve's pins clash with the service's.
CLIENTS_VENV := .venv-clients
CLIENTS_STAMP := $(CLIENTS_VENV)/.installed

## create .venv-clients with tritonclient and kserve for the protocol tests (make test does this itself)
clients-venv: $(CLIENTS_STAMP)

$(CLIENTS_STAMP): requirements-clients.txt
	@test -x $(CLIENTS_VENV)/bin/python || $(PYTHON) -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/pip install -q -r requirements-clients.txt
	@touch $@

# pytest-xdist workers: on the shared 2-core machine (load average ~12 for
# both runs), `make test` took 301 s with 2 workers and 466 s in one process.
# loadgroup: every infra test on one worker (tests/infra/conftest.py).
TEST_WORKERS ?= 2
# Extra pytest options, e.g. PYTEST_ARGS="-x -k ingest".
PYTEST_ARGS ?=

## the full test suite: unit, routes, S3, infra, reliability (TEST_WORKERS=1 for one process)
test: $(STAMP) $(CLIENTS_STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# build/stacks (and a pre-stage build/stack) are kept: deployed stacks' local Terraform state lives there.
## remove the virtualenvs, .local and build output (build/stacks is kept)
clean:
	rm -rf $(VENV) $(CLIENTS_VENV) .venv-convert .local .pytest_cache .hypothesis
	find build -mindepth 1 -maxdepth 1 ! -name stack ! -name stacks -exec rm -rf {} + 2>/dev/null || true

# Area-specific targets (deployment, benchmarks, ...) live beside this file.
include $(wildcard make/*.mk)

## serve the API on http://127.0.0.1:8000 with a local S3 until Ctrl-C (PORT=8001: another port)
local: $(STAMP)
	$(PY) -m scripts.local $(if $(PORT),--port $(PORT))

## put FILE into the local bucket of a running `make local` as KEY (models/<name> or inputs/<name>)
s3-put: $(STAMP)
	@test -n "$(FILE)" -a -n "$(KEY)" || { echo "usage: make s3-put FILE=path/to/file KEY=models/<name>" >&2; exit 2; }
	$(PY) -m scripts.s3_put "$(FILE)" "$(KEY)"
