"""Row 10: warm /v2 infer of one 1x3x224x224 float32 image on a small conv model,
binary and JSON, through ``chalice.test.Client``, vs bare ``session.run`` of
the same session on the same image (issue 18, finding 6)."""

from __future__ import annotations

import argparse
import json
import os

from bench.common import Benchmark, Context, Row, interleaved, ms, pct, quiet_stdout, service_env

BINARY_TARGET = 1.3
JSON_TARGET = 3.0


def rows_protocol(ctx: Context) -> list[Row]:
    """p50 of /v2 infer (binary, JSON) against the bare session, interleaved."""
    import numpy as np
    import orjson
    from chalice.test import Client

    from chalicelib.config import get_settings
    from chalicelib.ingest import ingest_bytes
    from chalicelib.names import ObjectRef
    from chalicelib.predict import model_cache
    from chalicelib.store import get_store
    from tests.support.onnx_models import conv_model

    n = ctx.args.protocol_n
    service_env(os.path.join(ctx.shm, "protocol"), None, None)
    import app

    ref = ObjectRef("models", "conv.onnx")
    ingest_bytes(get_store(), get_settings(), ref, conv_model())
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
    url = "/v2/models/conv.onnx/infer"
    with Client(app.app) as client, quiet_stdout():

        def post(body: bytes, headers: dict[str, str]) -> bytes:
            r = client.http.post(url, body=body, headers=headers)
            assert r.status_code == 200, r.body
            return bytes(r.body)

        # The same answer three ways before anything is timed.
        session = model_cache().get(get_store(), ref)[0].runner.session  # type: ignore[attr-defined]
        (want,) = session.run(None, {"image": image})
        raw = post(binary_body, binary_headers)
        length = int(json.loads(raw[: raw.index(b"}]}") + 3])["outputs"][0]["parameters"]["binary_data_size"])
        np.testing.assert_allclose(np.frombuffer(raw[-length:], "<f4").reshape(want.shape), want, rtol=1e-6)
        answer = json.loads(post(json_body, {"Content-Type": "application/json"}))
        np.testing.assert_allclose(np.array(answer["outputs"][0]["data"]).reshape(want.shape), want, rtol=1e-5)
        samples = interleaved(
            {
                "bare": lambda: session.run(None, {"image": image}),
                "binary": lambda: post(binary_body, binary_headers),
                "json": lambda: post(json_body, {"Content-Type": "application/json"}),
            },
            n,
            block=10,
        )
    bare = pct(samples["bare"], 50)
    rows = []
    for key, label, target, size in (
        ("binary", "binary tensors", BINARY_TARGET, len(binary_body)),
        ("json", "JSON (orjson)", JSON_TARGET, len(json_body)),
    ):
        p50, p99 = pct(samples[key], 50), pct(samples[key], 99)
        ratio = p50 / bare
        rows.append(
            Row(
                "10",
                f"warm /v2 infer, 1x3x224x224 FP32 image, small conv, {label} ({size / 1e6:.2f} MB body), "
                f"chalice.test.Client, n={n}",
                f"p50 {ms(p50)}, p99 {ms(p99)}",
                f"session.run p50 {ms(bare)}",
                f"{ratio:.2f}x",
                f"<= {target}x",
                ratio <= target,
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
        "10: store root on tmpfs; the binary body goes through chalice.test.Client as API Gateway sends it to Lambda",
        "    (base64, decoded by Chalice); ratio = ours p50 / bare InferenceSession.run p50, same session and image.",
    ),
)
