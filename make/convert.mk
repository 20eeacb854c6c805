# The model-conversion examples that need large frameworks (docs/models.md):
# PyTorch's exporters run in .venv-convert, and the service's .venv ingests
# and runs what they write. `make test` (and CI) skip them, saying so.
CONVERT_VENV := .venv-convert
CONVERT_STAMP := $(CONVERT_VENV)/.installed
# Python 3.11: the CPU build of torch 2.13.0 that pip takes from this machine's disk is for 3.11.
CONVERT_BASE_PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3.12 2>/dev/null || echo python3)

.PHONY: convert-venv test-convert

$(CONVERT_STAMP): requirements-convert.txt
	@test -x $(CONVERT_VENV)/bin/python || $(CONVERT_BASE_PYTHON) -m venv $(CONVERT_VENV)
	@$(CONVERT_VENV)/bin/pip install -q -r requirements-convert.txt || { \
	  echo "make test-convert: could not install torch and the exporters (requirements-convert.txt) into $(CONVERT_VENV); the PyTorch examples were not run" >&2; exit 1; }
	@touch $@

## the PyTorch export examples of docs/models.md: both exporters, ingest, predict (builds .venv-convert with torch)
test-convert: $(STAMP) $(CONVERT_STAMP)
	CONVERT_PYTHON=$(abspath $(CONVERT_VENV))/bin/python $(PY) -m pytest -n 0 tests/convert
