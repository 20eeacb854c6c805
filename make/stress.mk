# Heavier variants of the reliability suite (tests/reliability): more
# processes and operations, 200 SIGKILLs on 4-16 MiB ingests, 20,000 fuzz
# cases with a fresh random seed. `make test` runs the fast variants of the
# same kinds; `-m slow` selects only the heavy ones.
.PHONY: stress

## the heavier concurrency, crash and fuzzing variants of tests/reliability
stress: $(STAMP)
	$(PY) -m pytest tests/reliability -m slow -p no:cacheprovider
