# Benchmarks (issue 4): one table, each figure beside its baseline measured in the same run.
# Not part of `make test`; takes a few minutes (1 GiB ingest, ~100 MB model).
## the benchmarks, one table, each figure beside its baseline (BENCH_ARGS="--rows 2,4 ...")
bench: $(STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)
