"""Row 2: warm /predict of a small MLP, in-process and through ``chalice.test.Client``,
vs bare ``InferenceSession.run`` on the same session and inputs."""

from __future__ import annotations

import argparse
import json
import os

from bench.common import Benchmark, Context, Row, interleaved, ms, pct, quiet_stdout, service_env


def rows_warm(ctx: Context) -> list[Row]:
    """p50/p99 of ours (two ways) against the bare session, interleaved."""
    import numpy as np
    from chalice.test import Client

    from chalicelib.config import get_settings
    from chalicelib.ingest import ingest_bytes
    from chalicelib.names import ObjectRef
    from chalicelib.predict import model_cache, predict
    from chalicelib.store import get_store
    from chalicelib.validation import PredictRequest
    from tests.support.onnx_models import Mlp

    n = ctx.args.warm_n
    service_env(os.path.join(ctx.shm, "warm"), None, None)
    import app

    mlp = Mlp.random(n_in=16, hidden=64, n_out=4, seed=0)
    ref = ObjectRef("models", "mlp.onnx")
    ingest_bytes(get_store(), get_settings(), ref, mlp.onnx_bytes())
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    inputs = {"x": x.tolist()}
    request = PredictRequest("bench-warm", ref, inputs)
    body = json.dumps({"fileId": "bench-warm", "model": "mlp.onnx", "inputs": inputs})
    with quiet_stdout():
        first = predict(get_store(), get_settings(), request)
    np.testing.assert_allclose(first["result"]["y"]["data"], mlp.reference(x), rtol=1e-5, atol=1e-5)
    session = model_cache().get(get_store(), ref)[0].runner.session
    feeds = {"x": x}
    with Client(app.app) as client, quiet_stdout():

        def via_client() -> None:
            r = client.http.post("/predict", body=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 200, r.body

        samples = interleaved(
            {
                "bare": lambda: session.run(None, feeds),
                "inproc": lambda: predict(get_store(), get_settings(), request),
                "client": via_client,
            },
            n,
        )
    bare50, bare99 = pct(samples["bare"], 50), pct(samples["bare"], 99)
    rows = []
    for key, label in (("inproc", "in-process predict()"), ("client", "chalice.test.Client")):
        p50, p99 = pct(samples[key], 50), pct(samples[key], 99)
        overhead = p50 - bare50
        rows.append(
            Row(
                "2",
                f"warm /predict, small MLP, {label}, n={n}",
                f"p50 {ms(p50)}, p99 {ms(p99)}",
                f"run p50 {ms(bare50)}, p99 {ms(bare99)}",
                f"+{overhead * 1000:.3f} ms p50",
                "overhead <= 0.5 ms p50",
                overhead <= 0.0005,
            )
        )
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warm-n", type=int, default=2000, help="timed requests per side (default: %(default)s)")


BENCHMARK = Benchmark(
    "2",
    "warm predict",
    rows_warm,
    add_arguments,
    notes=(
        "2: store root on tmpfs (/dev/shm); no S3 bucket (no archive); service log lines go to /dev/null.",
        "   Overhead = ours p50 - bare InferenceSession.run p50 on the same session and inputs.",
    ),
)
