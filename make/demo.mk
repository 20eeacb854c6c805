# `make demo`: the demonstration client (demonstration.py) against a local
# stack (moto S3 + chalice local) that demo/run_local.py starts on free ports
# and always stops, checking that no process is left. Exit status: the client's.
# Extra client options: make demo DEMO_ARGS="--large-mb 64"
DEMO_ARGS ?=

.PHONY: demo
## the whole workflow on a private local stack, then stop and clean up everything (DEMO_ARGS=...)
demo: $(STAMP)
	$(PY) -m demo.run_local -- $(DEMO_ARGS)
