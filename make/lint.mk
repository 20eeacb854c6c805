# `make lint`: ruff (lint + format check) and mypy (strict on chalicelib/ and devstack/),
# configured in pyproject.toml. CI runs it beside `make test` (.ci/run).
.PHONY: lint

## ruff (lint + format check) and mypy --strict on chalicelib/ and devstack/
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
