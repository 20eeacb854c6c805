"""Row 3: cold /predict of a ~100 MB model vs bare ``InferenceSession`` creation
(plus the same first run) from the same file."""

from __future__ import annotations

import argparse
import os
import statistics

from bench.common import MIB, Benchmark, Context, Row, ms, quiet_stdout, service_env, timed


def row_cold(ctx: Context) -> list[Row]:
    """Median whole cold predict against a bare session's create + run."""
    import numpy as np
    import onnxruntime as ort

    from chalicelib.edge import get_settings, get_store, model_cache
    from chalicelib.ingest import ingest_bytes
    from chalicelib.names import ObjectRef
    from chalicelib.predict import predict
    from chalicelib.validation import PredictRequest
    from tests.support.onnx_models import big_mlp

    rounds = ctx.args.cold_rounds
    service_env(os.path.join(ctx.disk, "cold"), None, None)
    data, width = big_mlp(ctx.args.cold_mib * MIB)
    ref = ObjectRef("models", "big.onnx")
    ingest_bytes(get_store(), get_settings(), ref, data)
    del data
    path = get_store().path(ref)
    size = os.path.getsize(path)
    x = np.random.default_rng(0).standard_normal((1, width)).astype(np.float32)
    request = PredictRequest("bench-cold", ref, {"x": x.tolist()})

    def bare() -> None:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        session.run(None, {"x": x})

    def bare_create_only() -> None:
        ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def ours() -> None:
        model_cache().clear()
        result = predict(get_store(), get_settings(), model_cache(), request)
        assert result["cache"] == "miss"

    with quiet_stdout():
        ours()  # warms the page cache and onnxruntime's own first-use costs for both
        samples: dict[str, list[float]] = {"ours": [], "bare": [], "create": []}
        for _ in range(rounds):
            for name, fn in (("bare", bare), ("ours", ours), ("create", bare_create_only)):
                samples[name].extend(timed(fn, 1))
    o, b, c = (statistics.median(samples[k]) for k in ("ours", "bare", "create"))
    ratio = o / b
    return [
        Row(
            "3",
            f"cold /predict, {size / MIB:.0f} MiB model, median of {rounds}",
            ms(o),
            f"{ms(b)} (create {ms(c)} + run)",
            f"{ratio:.2f}x",
            "<= 1.2x",
            ratio <= 1.2,
        )
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cold-mib", type=int, default=100, help="model size in MiB (default: %(default)s)")
    parser.add_argument("--cold-rounds", type=int, default=15, help="rounds of each side (default: %(default)s)")


BENCHMARK = Benchmark(
    "3",
    "cold predict",
    row_cold,
    add_arguments,
    notes=(
        "3: onnxruntime already imported in both; page cache warm for both; ours = whole cold /predict",
        "   (manifest, open, sha256 verify overlapped with session creation, run, result write).",
    ),
)
