# `make cost`: the seed's monthly cost table for your usage (scripts/cost.py;
# unit prices in scripts/prices.json). Standard library only, so no venv needed.
#   make cost COST_ARGS="--consumer-invocations 200000 --throughput-mode elastic --efs-read-gb 500"
COST_ARGS ?=

.PHONY: cost
## the monthly cost table for your usage (COST_ARGS=--help lists every option)
cost:
	@$(if $(wildcard $(PY)),$(PY),python3) scripts/cost.py $(COST_ARGS)
