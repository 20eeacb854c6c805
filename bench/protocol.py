"""Row 10: warm /v2 infer of one 1x3x224x224 float32 image on a small conv model,
binary and JSON, as Lambda runs it (the app's handler on the API Gateway proxy
event, base64 body included), vs bare ``session.run`` of the same session on
the same image (issue 18, finding 6)."""

from __future__ import annotations

import argparse
import base64
import json
import os
from typing import Any

from bench.bare import BareSession
from bench.common import Benchmark, Context, Row, interleaved, ms, pct, quiet_stdout, service_env
from bench.warm import SETTLE

BINARY_TARGET = 1.3
JSON_TARGET = 3.0


def rows_protocol(ctx: Context) -> list[Row]:
    """p50 of /v2 infer (binary, JSON) against the bare session, interleaved."""
    import numpy as np
    import orjson
    from chalice.local import LambdaContext

    from chalicelib.edge import get_settings, get_store
    from chalicelib.ingest import ingest_bytes
    from chalicelib.names import ObjectRef
    from tests.support.onnx_models import conv_model
    from tests.support.routes import proxy_event

    n = ctx.args.protocol_n
    service_env(os.path.join(ctx.shm, "protocol"), None, None)
    import app

    ref = ObjectRef("models", "conv.onnx")
    model = conv_model()
    ingest_bytes(get_store(), get_settings(), ref, model)
    image = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    tensor = {"name": "image", "datatype": "FP32", "shape": [1, 3, 224, 224]}
    head = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": image.nbytes}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    binary_body = head + image.tobytes()
    binary_headers = {
        "Content-Type": "application/octet-stream",
        "Accept": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }
    json_body = orjson.dumps({"inputs": [{**tensor, "data": image.reshape(-1)}]}, option=orjson.OPT_SERIALIZE_NUMPY)
    # The seed's /predict of the same image, for comparison (nested lists, json, stored result).
    predict_body = json.dumps(
        {"fileId": "bench-image", "model": "conv.onnx", "inputs": {"image": image.tolist()}}
    ).encode()
    infer = ("POST", "/v2/models/{name}/infer", "/v2/models/conv.onnx/infer", {"name": "conv.onnx"})
    events = {
        "binary": proxy_event(*infer, binary_body, binary_headers),
        "json": proxy_event(*infer, json_body, {"Content-Type": "application/json"}),
        "predict": proxy_event("POST", "/predict", "/predict", {}, predict_body, {"Content-Type": "application/json"}),
    }

    def handle(key: str) -> dict[str, Any]:
        # Each invocation gets its own event and context (the context's clock starts now).
        answer: dict[str, Any] = app.app(dict(events[key]), LambdaContext("api_handler", 1024, 30_000))
        assert answer["statusCode"] == 200, answer
        return answer

    # The baseline: the same model with the service's options, in a process
    # of its own (ours runs in the inference worker; see bench/bare.py).
    with BareSession(model, {"image": image}) as session, quiet_stdout():
        # The same answer each way before anything is timed.
        (want,) = session.run()
        raw = base64.b64decode(handle("binary")["body"])
        header = json.loads(raw[: int(handle("binary")["headers"]["Inference-Header-Content-Length"])])
        length = header["outputs"][0]["parameters"]["binary_data_size"]
        np.testing.assert_allclose(np.frombuffer(raw[-length:], "<f4").reshape(want.shape), want, rtol=1e-6)
        answer = json.loads(handle("json")["body"])
        np.testing.assert_allclose(np.array(answer["outputs"][0]["data"]).reshape(want.shape), want, rtol=1e-5)
        samples = interleaved(
            {
                "bare": session,
                "binary": lambda: handle("binary"),
                "json": lambda: handle("json"),
                "predict": lambda: handle("predict"),
            },
            n,
            block=10,
            settle=SETTLE,
        )
    bare = pct(samples["bare"], 50)
    rows = []
    for key, label, target, size in (
        ("binary", "/v2 infer, binary tensors", BINARY_TARGET, len(binary_body)),
        ("json", "/v2 infer, JSON (orjson)", JSON_TARGET, len(json_body)),
        ("predict", "/predict (the seed's JSON, result stored), for comparison", None, len(predict_body)),
    ):
        p50, p99 = pct(samples[key], 50), pct(samples[key], 99)
        ratio = p50 / bare
        rows.append(
            Row(
                "10",
                f"warm {label}, 1x3x224x224 FP32 image, small conv ({size / 1e6:.2f} MB body), "
                f"Lambda handler on the API Gateway event, n={n}",
                f"p50 {ms(p50)}, p99 {ms(p99)}",
                f"session.run p50 {ms(bare)}",
                f"{ratio:.2f}x (+{(p50 - bare) * 1000:.1f} ms)",
                "-" if target is None else f"<= {target}x",
                None if target is None else ratio <= target,
            )
        )
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol-n", type=int, default=200, help="timed requests per side (default: %(default)s)")


BENCHMARK = Benchmark(
    "10",
    "warm /v2 infer, binary and JSON tensors",
    rows_protocol,
    add_arguments,
    notes=(
        "10: store root on tmpfs; the app's Lambda handler on API Gateway's proxy event (a binary body",
        "    base64-encoded, decoded by pybase64; a binary answer base64-encoded); ratio = ours p50 / bare",
        "    session.run p50, same model, options and image, the bare session in a process of its own (bench/bare.py);",
        "    blocks of 10 with 60 ms of idle before each (onnxruntime's threads spin ~40 ms after a run).",
    ),
)
