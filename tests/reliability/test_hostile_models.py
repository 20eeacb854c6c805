"""Hostile models, each in a fresh process: peak RSS and hangs measured for real.

Every case starts ``tests/support/hostile_run.py`` with its own settings,
ingests a model built by ``tests/support/hostile_models.py`` through the
real routes, sends /predict requests and reads back the statuses, bodies,
the process's peak RSS (``ru_maxrss``) and the wall time. A hard timeout on
the child turns a hang into a failure. Issue 9, findings 1-4 and 8.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import hostile_models as hm

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
# What the interpreter, numpy, onnxruntime and the app hold before any model:
# measured ~130 MiB; the budget of each case is on top of this.
BASE_MIB = 200


def run_hostile(
    tmp_path: Path,
    model: bytes,
    requests: list[dict],
    *,
    env: dict | None = None,
    ingest: list[dict] | None = None,
    timeout: float = 60.0,
    name: str = "hostile.onnx",
    copies: list[str] | None = None,
    store_inputs: list | None = None,
) -> dict:
    """Run the requests in a child process; its report (JSON) or a failure on hang."""
    model_path = tmp_path / "model.onnx"
    model_path.write_bytes(model)
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    spec = {
        "model_path": str(model_path),
        "model": name,
        "requests": requests,
        "ingest": ingest or [],
        "copies": copies or [],
        "store_inputs": store_inputs or [],
        "env": {"EFS_ROOT": str(store), "MODEL_BUCKET": "", **(env or {})},
    }
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    child_env = {k: v for k, v in os.environ.items() if k not in ("MODEL_BUCKET", "AWS_ENDPOINT_URL_S3")}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.support.hostile_run", str(spec_path)],
            cwd=ROOT,
            env=child_env,
            capture_output=True,
            timeout=timeout,
            text=True,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the request did not return within {timeout} s (hang)")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["stderr"] = done.stderr
    report["store"] = store
    return report


def body(response: dict) -> dict:
    return json.loads(response["body"])


def assert_no_internals(text: str) -> None:
    for marker in ("onnxruntime_src", ".cc:", "/tmp/", "/proc/", "Traceback", str(ROOT)):
        assert marker not in text, text


def predict_body(inputs: dict | None = None, file_id: str = "req-1", model: str = "hostile.onnx") -> dict:
    request = {"fileId": file_id, "model": model}
    if inputs is not None:
        request["inputs"] = inputs
    return request


# -- 1. external data ------------------------------------------------------------------


@pytest.mark.parametrize("where", sorted(hm.external_data_models("x").keys()))
def test_external_data_anywhere_in_the_model_is_refused_before_load(tmp_path, where):
    # The location points at another stored model; on main, an initializer
    # like this returned its bytes (finding 1).
    store = tmp_path / "store"
    secret = "secret.onnx"
    location = os.path.relpath(store / "models" / secret, "/tmp/onnx-xxxxxxxx")
    model = hm.external_data_models(location)[where]
    report = run_hostile(
        tmp_path,
        model,
        [predict_body({"x": [1.0]})],
        ingest=[{"data": base64.b64encode(b"TOP-SECRET-WEIGHTS").decode(), "encoding": "base64", "filename": secret}],
    )
    response = report["responses"][0]
    assert response["status"] == 400, response
    error = body(response)
    assert error["error"] == "INVALID_REQUEST"
    assert "hostile.onnx" in error["message"] and "external data" in error["message"]
    assert "TOP-SECRET" not in response["body"]
    assert_no_internals(response["body"])
    assert not (store / "outputs").exists() or not any((store / "outputs").iterdir())


# -- 2. memory materialised at load or at run time --------------------------------------


@pytest.mark.parametrize("n", [250_000_000, 1_000_000_000])
def test_constant_of_shape_cannot_take_the_process_past_its_budget(tmp_path, n):
    # 164 bytes of model: on main, constant folding made a 1 GB (or 4 GB)
    # initializer at load (finding 2).
    budget = 256 * MIB
    report = run_hostile(
        tmp_path,
        hm.constant_of_shape_gather(n),
        [predict_body({"idx": [3]}, "a"), predict_body({"idx": [3]}, "b")],
        env={"INFERENCE_MEMORY_BYTES": str(budget), "MODEL_CACHE_BYTES": str(budget)},
    )
    for response in report["responses"]:
        assert response["status"] == 400, response
        error = body(response)
        assert error["error"] == "INVALID_REQUEST" and "INFERENCE_MEMORY_BYTES" in error["message"]
        assert "rejected the inputs" not in error["message"]
        assert_no_internals(response["body"])
    assert report["peak_rss"] < (BASE_MIB * MIB + budget), report["peak_rss"] / MIB
    assert "onnxruntime" not in report["stderr"]  # its own logger printed nothing


def test_many_cached_folding_models_stay_within_the_budget(tmp_path):
    # On main six cached copies held 5.8 GiB against a 512 MiB budget.
    budget = 256 * MIB
    names = [f"cos{i}.onnx" for i in range(6)]
    report = run_hostile(
        tmp_path,
        hm.constant_of_shape_gather(250_000_000),
        [predict_body({"idx": [1]}, f"r{i}", name) for i, name in enumerate(names)],
        name=names[0],
        copies=names[1:],
        env={"INFERENCE_MEMORY_BYTES": str(budget), "MODEL_CACHE_BYTES": str(budget)},
    )
    assert [r["status"] for r in report["responses"]] == [400] * 6
    assert report["peak_rss"] < BASE_MIB * MIB + budget, report["peak_rss"] / MIB


def test_run_time_materialisation_is_capped_and_the_next_request_works(tmp_path):
    # Range(0, n): the size comes from the request, no load-time check sees it.
    budget = 256 * MIB
    report = run_hostile(
        tmp_path,
        hm.range_sum(1),
        [predict_body({"n": 4e8}, "big"), predict_body({"n": 4.0}, "small")],
        env={"INFERENCE_MEMORY_BYTES": str(budget)},
    )
    big, small = report["responses"]
    assert big["status"] == 400 and "INFERENCE_MEMORY_BYTES" in body(big)["message"], big
    assert small["status"] == 200 and body(small)["result"]["y"]["data"] == 6.0, small
    assert report["peak_rss"] < BASE_MIB * MIB + budget, report["peak_rss"] / MIB


def test_model_whose_footprint_exceeds_the_cache_is_refused_naming_the_setting(tmp_path):
    from tests.support.onnx_models import big_mlp

    model, width = big_mlp(48 * MIB)
    report = run_hostile(
        tmp_path,
        model,
        [predict_body({"x": [[0.0] * width]}, model="big.onnx")],
        env={"MODEL_CACHE_BYTES": str(32 * MIB)},
        name="big.onnx",
    )
    response = report["responses"][0]
    assert response["status"] == 400, response
    assert "MODEL_CACHE_BYTES" in body(response)["message"] and "big.onnx" in body(response)["message"]


def test_string_growth_outside_the_arena_is_stopped_by_the_memory_watchdog(tmp_path):
    budget = 256 * MIB
    report = run_hostile(
        tmp_path, hm.string_doubling(), [predict_body({"s": ["ab"]})], env={"INFERENCE_MEMORY_BYTES": str(budget)}
    )
    response = report["responses"][0]
    assert response["status"] == 400 and "INFERENCE_MEMORY_BYTES" in body(response)["message"], response
    # The watchdog polls every 20 ms; one doubling step may overshoot once.
    assert report["peak_rss"] < BASE_MIB * MIB + 3 * budget, report["peak_rss"] / MIB


# -- 3. outputs -----------------------------------------------------------------------


@pytest.mark.parametrize("static", [True, False])
def test_output_over_the_limit_is_400_and_writes_nothing(tmp_path, static):
    # 40M floats: on main a 160 MB result file was written and archived (finding 3).
    report = run_hostile(tmp_path, hm.constant_of_shape_output(40_000_000, static=static), [predict_body({"x": [1.0]})])
    response = report["responses"][0]
    assert response["status"] == 400, response
    error = body(response)
    assert error["error"] == "INVALID_REQUEST" and "MAX_OUTPUT_ELEMENTS" in error["message"]
    outputs = report["store"] / "outputs"
    assert not outputs.exists() or not any(p.is_file() for p in outputs.rglob("*"))
    assert report["peak_rss"] < (BASE_MIB + 512) * MIB


def test_sequence_outputs_count_against_the_limit(tmp_path):
    report = run_hostile(tmp_path, hm.sequence_output(2_000), [predict_body({"x": [1.0] * 1000})])
    response = report["responses"][0]
    assert response["status"] == 400 and "MAX_OUTPUT_ELEMENTS" in body(response)["message"], response


def test_result_over_the_response_limit_is_answered_by_reference(tmp_path):
    report = run_hostile(
        tmp_path,
        hm.constant_of_shape_output(200_000, static=False),
        [predict_body({"x": [1.0]})],
        env={"MAX_RESPONSE_BYTES": "100000"},
    )
    response = report["responses"][0]
    assert response["status"] == 200, response
    answer = body(response)
    assert answer["resultByReference"] is True and answer["result"] is None
    assert answer["resultBytes"] > 100_000 and len(json.dumps(answer)) < 100_000
    stored = report["store"] / "outputs" / "req-1.result"
    assert stored.stat().st_size == answer["resultBytes"]
    assert len(json.loads(stored.read_bytes())["result"]) > 0


# -- 9. reads ------------------------------------------------------------------------


def test_opaque_model_reads_none_of_a_large_input(tmp_path):
    # On main naming a 600 MiB input added 600 MiB of RSS (finding 9).
    size = 300 * MIB
    report = run_hostile(
        tmp_path,
        b"opaque model bytes",
        [predict_body(file_id="@big.bin", model="blob.bin")],
        name="blob.bin",
        store_inputs=[["big.bin", size]],
    )
    response = report["responses"][0]
    assert response["status"] == 200 and body(response)["result"]["processed"] is True, response
    assert body(response)["fileId"] != "@big.bin"  # the stored input's own id
    assert report["peak_rss"] - report["baseline_rss"] < 64 * MIB, (report["peak_rss"] - report["baseline_rss"]) / MIB


# -- 4. time --------------------------------------------------------------------------


def test_endless_loop_is_stopped_and_the_warm_session_still_answers(tmp_path):
    # On main a Loop with 2^62 trips never returned (finding 4).
    report = run_hostile(
        tmp_path,
        hm.endless_loop(),
        [predict_body({"x": [1.0]}, "a"), predict_body({"x": [1.0]}, "b")],
        env={"PREDICT_TIMEOUT_SECONDS": "1"},
        timeout=60,
    )
    for response in report["responses"]:
        assert response["status"] == 504, response
        error = body(response)
        assert error["error"] == "TIMEOUT" and error["stage"] == "inference"
        assert "PREDICT_TIMEOUT_SECONDS" in error["message"]
        assert response["seconds"] < 5
    # The same warm session answers a run that fits.
    report = run_hostile(
        tmp_path, hm.endless_loop(1000), [predict_body({"x": [1.0]})], env={"PREDICT_TIMEOUT_SECONDS": "1"}
    )
    assert report["responses"][0]["status"] == 200


def test_one_long_operator_still_answers_timeout_in_time(tmp_path):
    # terminate is only checked between operators: a single MatMul of
    # 8000x8000 (~6 s here, far longer on a loaded machine) must not hold the
    # answer past the limit plus a grace. The grace is wide (a 2-core CI
    # machine under load answered in 3.5 s): what fails here is an answer that
    # waits for the operator, not a slow scheduler.
    report = run_hostile(
        tmp_path,
        hm.one_long_matmul(8),
        [predict_body({"x": [[1.0] * 1000] * 1000})],
        env={"PREDICT_TIMEOUT_SECONDS": "1", "INFERENCE_MEMORY_BYTES": str(1024 * MIB)},
        timeout=120,
    )
    response = report["responses"][0]
    assert response["status"] == 504 and body(response)["stage"] == "inference", response
    assert response["seconds"] < 5.0, response


def test_inference_is_bounded_by_the_request_deadline(tmp_path):
    report = run_hostile(
        tmp_path,
        hm.endless_loop(),
        [predict_body({"x": [1.0]})],
        env={"PREDICT_TIMEOUT_SECONDS": "60", "REQUEST_TIMEOUT_SECONDS": "2"},
        timeout=60,
    )
    response = report["responses"][0]
    assert response["status"] == 504 and body(response)["stage"] == "inference", response
    assert response["seconds"] < 4


# -- recursion through subgraphs --------------------------------------------------------


def test_deeply_nested_subgraphs_are_refused_by_the_bounded_scan(tmp_path):
    report = run_hostile(tmp_path, hm.deep_if(25), [predict_body({"x": [1.0]})])
    response = report["responses"][0]
    # Over MAX_MODEL_NESTING (16): the model is client input, so a 400 naming the limit.
    assert response["status"] == 400 and "MAX_MODEL_NESTING" in body(response)["message"], response
    assert "hostile.onnx" in body(response)["message"]
