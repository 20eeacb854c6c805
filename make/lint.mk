# `make lint`: ruff (lint + format check) and mypy (strict on app.py, chalicelib/, devstack/, infra/ and more),
# configured in pyproject.toml. CI runs it beside `make test` (.ci/run).
.PHONY: lint

## ruff (lint + format check) and mypy --strict on app.py, chalicelib/, devstack/, infra/ (pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
