"""Row 5: warm /predict over HTTP with a keep-alive client through our local
server class vs chalice's stock ``ThreadedHTTPServer``."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import threading
import time

from bench.common import BUCKET, Benchmark, Context, Row, ensure_bucket, ms, pct, quiet_stdout, service_env, timed


def http_p50(port: int, body: str, n: int) -> float:
    """p50 of ``n`` POST /predict on one keep-alive connection (after 5 warm-ups)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
    samples = []
    try:
        for i in range(n + 5):
            started = time.perf_counter()
            conn.request("POST", "/predict", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
            if i >= 5:  # first requests warm the connection and the cache
                samples.append(time.perf_counter() - started)
    finally:
        conn.close()
    return pct(samples, 50)


def row_http(ctx: Context) -> list[Row]:
    """Our NoDelay server against the stock one, same app and request."""
    import numpy as np
    from chalice.config import Config
    from chalice.local import LocalDevServer, ThreadedHTTPServer

    from chalicelib import s3
    from chalicelib.edge import get_settings, get_store
    from chalicelib.ingest import ingest_bytes
    from chalicelib.names import ObjectRef
    from devstack.local import NoDelayHTTPServer
    from tests.support.onnx_models import Mlp

    assert ctx.endpoint is not None
    n_ours = ctx.args.http_n
    n_stock = max(20, n_ours // 10)
    service_env(os.path.join(ctx.shm, "http"), BUCKET, ctx.endpoint)
    ensure_bucket(ctx.endpoint)
    import app

    mlp = Mlp.random(n_in=16, hidden=64, n_out=4, seed=0)
    ingest_bytes(get_store(), get_settings(), ObjectRef("models", "mlp.onnx"), mlp.onnx_bytes())
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    body = json.dumps({"fileId": "bench-http", "model": "mlp.onnx", "inputs": {"x": x.tolist()}})
    config = Config.create(chalice_stage="local", app_name="efs-ml", lambda_timeout=30)
    results = {}
    with quiet_stdout(stderr_too=True):
        for name, cls, n in (("stock", ThreadedHTTPServer, n_stock), ("ours", NoDelayHTTPServer, n_ours)):
            server = LocalDevServer(app.app, config, "127.0.0.1", 0, server_cls=cls)
            thread = threading.Thread(target=server.server.serve_forever, daemon=True)
            thread.start()
            try:
                results[name] = http_p50(server.server.server_address[1], body, n)
            finally:
                server.shutdown()
                server.server.server_close()
                thread.join(10)
        # The archive PUT each predict makes, alone: moto's share of the figure.
        document = json.dumps({"result": [0.0] * 40}).encode()
        archive = pct(
            timed(lambda: s3.put_bytes(get_settings(), BUCKET, "outputs/bench-put.result", document), 100), 50
        )
    o, s = results["ours"], results["stock"]
    return [
        Row(
            "5",
            "warm /predict over HTTP, keep-alive, local server (+S3 archive to moto), p50",
            f"{ms(o)} (archive PUT alone {ms(archive)})",
            f"{ms(s)} (stock chalice local)",
            f"{s / o:.0f}x faster",
            "a few ms (<= 5 ms)",
            o <= 0.005,
        )
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--http-n",
        type=int,
        default=500,
        help="timed requests through our server; the stock one gets a tenth (default: %(default)s)",
    )


BENCHMARK = Benchmark(
    "5",
    "HTTP keep-alive",
    row_http,
    add_arguments,
    needs_s3=True,
    notes=(
        "5: in-process LocalDevServer with each server class; http.client keep-alive connection;",
        "   every request also archives its result to the moto S3 on loopback.",
    ),
)
