# Every target builds what it needs itself: a fresh clone needs only `make demo` or `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.12: Chalice takes the Lambda runtime from the interpreter that packages the app.
PYTHON ?= $(shell command -v python3.12 2>/dev/null || echo python3.12)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: help venv test demo local bench clean

help:
	@echo "make demo    run the whole workflow locally (moto S3 + chalice local), then stop everything"
	@echo "make test    run the full test suite (unit, routes, S3, infra, reliability)"
	@echo "make local   serve the API on http://127.0.0.1:8000 with a local S3; Ctrl-C stops both"
	@echo "make bench   run the benchmarks and print one table"
	@echo "more: stress, package, deploy-local, destroy, cost (see README.md)"

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements-dev.txt
	@touch $@

test: $(STAMP)
	$(PY) -m pytest

# build/stack is kept: a deployed stack's local Terraform state lives there.
clean:
	rm -rf $(VENV) .local .pytest_cache .hypothesis
	find build -mindepth 1 -maxdepth 1 ! -name stack -exec rm -rf {} + 2>/dev/null || true

# Area-specific targets (deployment, benchmarks, ...) live beside this file.
include $(wildcard make/*.mk)

local: $(STAMP)
	$(PY) -m scripts.local $(if $(PORT),--port $(PORT))
