"""Stock inference clients (tritonclient[http], kserve's REST client) against a running server.

Runs in its own venv (.venv-clients, requirements-clients.txt: their pins
clash with the service's), started by tests/functional/test_stock_clients.py:

    .venv-clients/bin/python tests/clients/stock_clients.py http://127.0.0.1:PORT

The models are ingested by the caller: ``my model.onnx`` (multi_io_model:
a FP32 [n, 3], ids INT64 [n] -> sum, doubled) and ``id-<DATATYPE>.onnx``
(Identity, [n, 2]) for every datatype. Prints one JSON line per check:
``{"check": ..., "ok": bool, "detail": ...}``; exits 0 either way.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from typing import Any, Callable

import numpy as np

DATATYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
MODEL = "my model.onnx"
# What the deployed API Gateway needs to pass binary bodies both ways (docs/protocol.md).
BINARY_HEADERS = {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}


def sample(datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([b"a", "bé".encode(), b"", "モデル".encode()], dtype=np.object_).reshape(2, 2)
    if datatype == "BOOL":
        return np.array([[True, False], [False, True]])
    dtype = DATATYPES[datatype]
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, 1], [2, info.max]], dtype=dtype)
    return np.array([[-1.5, 0.0], [3.25, 65504.0]], dtype=dtype)


def same(got: Any, want: np.ndarray) -> bool:
    if got is None:
        return False
    if want.dtype == np.object_:
        as_bytes = [v if isinstance(v, bytes) else str(v).encode() for v in np.asarray(got).flat]
        return as_bytes == list(want.flat) and np.asarray(got).shape == want.shape
    return bool(np.asarray(got).dtype == want.dtype and np.array_equal(got, want))


def triton_checks(url: str) -> dict[str, Callable[[], Any]]:
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    client = th.InferenceServerClient(url=url.removeprefix("http://"))

    def raises(call: Callable[[], Any]) -> str:
        try:
            call()
        except InferenceServerException as exc:
            return str(exc.message())
        raise AssertionError("no InferenceServerException")

    def infer(datatype: str, binary: bool) -> Any:
        x = sample(datatype)
        tensor = th.InferInput("x", list(x.shape), datatype)
        tensor.set_data_from_numpy(x, binary_data=binary)
        result = client.infer(
            f"id-{datatype}.onnx",
            [tensor],
            outputs=[th.InferRequestedOutput("y", binary_data=binary)],
            headers=BINARY_HEADERS if binary else None,
        )
        out = result.get_output("y")
        assert out["datatype"] == datatype and out["shape"] == [2, 2], out
        assert ("binary_data_size" in out.get("parameters", {})) == binary, out
        assert same(result.as_numpy("y"), x), (result.as_numpy("y"), x)
        return out

    def binary_without_headers() -> Any:
        # tritonclient's defaults: no Content-Type, no Accept. The binary input
        # still arrives (chalice local passes bytes); outputs fall back to JSON.
        x = sample("FP32")
        tensor = th.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        result = client.infer("id-FP32.onnx", [tensor], outputs=[th.InferRequestedOutput("y", binary_data=True)])
        out = result.get_output("y")
        assert "data" in out and same(result.as_numpy("y"), x), out
        return out

    def selection() -> Any:
        a = th.InferInput("a", [2, 3], "FP32")
        a.set_data_from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
        ids = th.InferInput("ids", [2], "INT64")
        ids.set_data_from_numpy(np.array([5, 7], dtype=np.int64))
        result = client.infer(MODEL, [a, ids], outputs=[th.InferRequestedOutput("doubled")], request_id="r-1")
        assert result.get_response()["id"] == "r-1"
        assert result.as_numpy("sum") is None and result.as_numpy("doubled").tolist() == [10, 14]
        return result.get_response()

    def bad_shape() -> str:
        a = th.InferInput("a", [2, 4], "FP32")
        a.set_data_from_numpy(np.zeros((2, 4), dtype=np.float32))
        ids = th.InferInput("ids", [2], "INT64")
        ids.set_data_from_numpy(np.zeros(2, dtype=np.int64))
        message = raises(lambda: client.infer(MODEL, [a, ids]))
        assert "dimension 1 must be 3" in message, message
        return message

    def unknown_model() -> str:
        a = th.InferInput("a", [1], "FP32")
        a.set_data_from_numpy(np.zeros(1, dtype=np.float32))
        message = raises(lambda: client.infer("nope.onnx", [a]))
        assert "not found" in message.lower(), message
        return message

    def other_version() -> str:
        message = raises(lambda: client.get_model_metadata(MODEL, model_version="2"))
        assert "Version 2" in message and "not kept" in message, message
        return message

    def metadata() -> Any:
        meta = client.get_model_metadata(MODEL)
        assert meta["name"] == MODEL and meta["platform"] == "onnxruntime_onnx", meta
        assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
            ("a", "FP32", [-1, 3]),
            ("ids", "INT64", [-1]),
        ], meta
        return meta

    def server_metadata() -> Any:
        meta = client.get_server_metadata()
        assert meta["name"] == "efs-ml" and "binary_tensor_data" in meta["extensions"], meta
        return meta

    def model_ready() -> Any:
        ready = (
            client.is_model_ready(MODEL),
            client.is_model_ready(MODEL, "1"),
            client.is_model_ready(MODEL, "2"),
            client.is_model_ready("nope.onnx"),
        )
        assert ready == (True, True, False, False), ready
        return ready

    def live_ready() -> Any:
        state = (client.is_server_live(), client.is_server_ready())
        assert state == (True, True), state
        return state

    checks: dict[str, Callable[[], Any]] = {
        "triton live and ready": live_ready,
        "triton server metadata": server_metadata,
        "triton model metadata": metadata,
        "triton model ready": model_ready,
        "triton output selection and id": selection,
        "triton binary input without headers": binary_without_headers,
        "triton error: bad shape": bad_shape,
        "triton error: unknown model": unknown_model,
        "triton error: other version": other_version,
    }
    for datatype in DATATYPES:
        for binary in (False, True):
            checks[f"triton infer {datatype} {'binary' if binary else 'json'}"] = (
                lambda d=datatype, b=binary: infer(d, b)  # type: ignore[misc]
            )
    return checks


def kserve_checks(url: str) -> dict[str, Callable[[], Any]]:
    import httpx
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.infer_type import RequestedOutput

    def run(coro_fn: Callable[[Any], Any]) -> Any:
        async def main() -> Any:
            client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
            try:
                return await coro_fn(client)
            finally:
                await client.close()

        return asyncio.run(main())

    def infer(datatype: str, binary: bool) -> Any:
        x = sample(datatype)
        tensor = InferInput("x", list(x.shape), datatype)
        tensor.set_data_from_numpy(x, binary_data=binary)
        request = InferRequest(
            f"id-{datatype}.onnx",
            [tensor],
            request_id="k-1",
            request_outputs=[RequestedOutput("y", {"binary_data": binary})],
        )
        response = run(lambda c: c.infer(url, request, model_name=f"id-{datatype}.onnx"))
        (out,) = response.outputs
        assert out.name == "y" and out.datatype == datatype and list(out.shape) == [2, 2], out
        assert response.id == "k-1"
        assert same(out.as_numpy(), x), (out.as_numpy(), x)
        return {"datatype": out.datatype, "shape": list(out.shape)}

    def live_ready() -> Any:
        state = (
            run(lambda c: c.is_server_live(url)),
            run(lambda c: c.is_server_ready(url)),
            run(lambda c: c.is_model_ready(url, MODEL)),
        )
        assert state == (True, True, True), state
        return state

    def error_message() -> str:
        tensor = InferInput("x", [1], "FP32")
        tensor.set_data_from_numpy(np.zeros(1, dtype=np.float32), binary_data=False)
        try:
            run(lambda c: c.infer(url, InferRequest("nope.onnx", [tensor]), model_name="nope.onnx"))
        except httpx.HTTPStatusError as exc:
            assert "Model 'nope.onnx' not found" in str(exc) and exc.response.status_code == 404, str(exc)
            return str(exc)
        raise AssertionError("no HTTPStatusError")

    checks: dict[str, Callable[[], Any]] = {
        "kserve live and ready": live_ready,
        "kserve error message": error_message,
    }
    for datatype in DATATYPES:
        for binary in (False, True):
            if datatype == "FP16" and not binary:
                continue  # kserve's client refuses FP16 as JSON itself
            checks[f"kserve infer {datatype} {'binary' if binary else 'json'}"] = (
                lambda d=datatype, b=binary: infer(d, b)  # type: ignore[misc]
            )
    return checks


def main(url: str) -> int:
    checks = {**triton_checks(url), **kserve_checks(url)}
    for name, check in checks.items():
        try:
            detail = check()
            print(json.dumps({"check": name, "ok": True, "detail": repr(detail)[:300]}), flush=True)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, not raised
            detail = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
            print(json.dumps({"check": name, "ok": False, "detail": detail[-1500:]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
