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
    extra_models: dict[str, bytes] | None = None,
    after: list[dict] | None = None,
    idle_after: bool = False,
    concurrent: bool = False,
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
        "extra_models": [],
        "after": after or [],
        "idle_after": idle_after,
        "concurrent": concurrent,
        "env": {"EFS_ROOT": str(store), "MODEL_BUCKET": "", **(env or {})},
    }
    for extra, data in (extra_models or {}).items():
        path = tmp_path / f"extra-{extra}"
        path.write_bytes(data)
        spec["extra_models"].append([extra, str(path)])
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
    secret = "secret.bin"
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


@pytest.mark.parametrize(
    "env",
    [
        {"MODEL_CACHE_BYTES": str(32 * MIB)},  # MAX_MODEL_BYTES unset: the same
        {"MAX_MODEL_BYTES": str(32 * MIB)},  # the cache's 512 MiB would hold it
    ],
)
def test_model_larger_than_one_model_may_be_is_refused_naming_the_setting(tmp_path, env):
    from tests.support.onnx_models import big_mlp

    model, width = big_mlp(48 * MIB)
    report = run_hostile(
        tmp_path, model, [predict_body({"x": [[0.0] * width]}, model="big.onnx")], env=env, name="big.onnx"
    )
    response = report["responses"][0]
    assert response["status"] == 400, response
    message = body(response)["message"]
    assert f"MAX_MODEL_BYTES = {32 * MIB} bytes" in message and "big.onnx" in message


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


# -- issue 17: isolated inference ---------------------------------------------------------
#
# Every case runs the real app in a fresh process with small settings, then
# a legitimate model right after the attack, and measures the whole process
# tree (the service and its inference worker): peak RSS against
# INFERENCE_MEMORY_BYTES + MODEL_CACHE_BYTES + TREE_BASE_MIB, answer time
# against the deadline + MARGIN, CPU in the second after the answer.

# The tree's baseline, stated: the service (interpreter, numpy, chalice, the
# app: ~60 MiB idle, up to ~140 MiB holding a request's own copies of a
# 1 MiB input) plus the worker outside its sizing (~30 MiB of mapped
# libraries, ~75 MiB of data at start, and the 64 MiB of RLIMIT_DATA slack
# it may fill when a loaded machine delays the RSS watchdog). Idle, the tree
# measures ~120 MiB.
TREE_BASE_MIB = 320
SMALL = 256 * MIB
# Seconds past a deadline an answer may take on this loaded 2-core machine
# (load average 12-16 from other work, more under `make test`): the answer
# after a kill includes a fresh worker's start (0.2 s unloaded, over 1 s
# here under load) and the model's reload. A clean CI run of `make test`
# (two xdist workers, nothing else on the machine) measured 4.1 s for the
# second of three 1 s NonMaxSuppression runs in a row: 1 s run + ~3 s of
# respawn and reload while the other xdist worker loaded both cores.
MARGIN = 4.0
IDLE_CPU = 0.1  # CPU seconds the tree may use in the second after settling
SMALL_ENV = {
    "INFERENCE_MEMORY_BYTES": str(SMALL),
    "MODEL_CACHE_BYTES": str(SMALL),
    "PREDICT_TIMEOUT_SECONDS": "1",
    "MODEL_LOAD_TIMEOUT_SECONDS": "2",
}


def legit() -> dict[str, bytes]:
    from tests.support.onnx_models import Mlp

    return {"legit.onnx": Mlp.random(4, 8, 3).onnx_bytes()}


LEGIT_REQUEST = predict_body({"x": [[1.0, 2.0, 3.0, 4.0]]}, "legit", "legit.onnx")


def attack(tmp_path, model, requests, *, env=None, timeout=60.0, **kwargs):
    """Run ``requests`` then a legitimate predict; check the bounds every case shares."""
    report = run_hostile(
        tmp_path,
        model,
        requests,
        env={**SMALL_ENV, **(env or {})},
        extra_models=legit(),
        after=[LEGIT_REQUEST],
        timeout=timeout,
        **kwargs,
    )
    *hostile, last = report["responses"]
    assert last["status"] == 200, last  # the next request runs normally
    assert len(body(last)["result"]["y"]["data"][0]) == 3
    settings = {**SMALL_ENV, **(env or {})}
    bound = TREE_BASE_MIB * MIB + int(settings["INFERENCE_MEMORY_BYTES"]) + int(settings["MODEL_CACHE_BYTES"])
    print(
        f"peak RSS of the tree {report['peak_rss'] / MIB:.0f} MiB (bound {bound / MIB:.0f} MiB; "
        f"service {report['own_peak_rss'] / MIB:.0f} MiB)"
    )
    assert report["peak_rss"] < bound, (report["peak_rss"] / MIB, bound / MIB)
    for response in hostile:
        assert_no_internals(response["body"])
    report["hostile"] = hostile
    return report


def assert_refused(response: dict, setting: str, seconds: float = 3.0) -> None:
    assert response["status"] == 400, response
    error = body(response)
    assert error["error"] == "INVALID_REQUEST" and setting in error["message"], error
    assert "hostile.onnx" in error["message"], error
    assert response["seconds"] < seconds, response


def assert_timeout(response: dict, stage: str, deadline: float) -> None:
    assert response["status"] == 504, response
    error = body(response)
    assert error["error"] == "TIMEOUT" and error["stage"] == stage, error
    assert response["seconds"] < deadline + MARGIN, response
    if "idle_cpu" in response:
        assert response["idle_cpu"] < IDLE_CPU, response  # nothing kept running after the answer


# Finding 1: model load has no time limit.


def test_function_inlining_bomb_is_refused_before_load(tmp_path):
    # 1.3 KB, 16 levels of functions calling the previous one twice: on main
    # no answer within 150 s (onnxruntime inlines 2^16 levels of calls).
    model = hm.function_bomb(16)
    assert len(model) < 1400
    report = attack(tmp_path, model, [predict_body({"x": [1.0]})])
    assert_refused(report["hostile"][0], "MAX_MODEL_NODES")


def test_node_chain_over_the_node_limit_is_refused_before_load(tmp_path):
    # 150,000 nodes: on main 15 s of load for one request.
    report = attack(tmp_path, hm.node_chain(150_000), [predict_body({"x": [1.0]})])
    assert_refused(report["hostile"][0], "MAX_MODEL_NODES", seconds=5.0)


@pytest.mark.parametrize("model", ["function_bomb", "node_chain"])
def test_a_load_bomb_the_scan_misses_is_a_504_at_the_load_deadline(tmp_path, model):
    # The node limit raised out of the way: session creation itself is bounded.
    # 50k nodes: ~2 s of session creation here, 0.2 s of scan.
    data = hm.function_bomb(16) if model == "function_bomb" else hm.node_chain(50_000)
    report = attack(
        tmp_path,
        data,
        [predict_body({"x": [1.0]})],
        env={"MAX_MODEL_NODES": str(10**12), "MAX_MODEL_NESTING": "64", "MODEL_LOAD_TIMEOUT_SECONDS": "1"},
        idle_after=True,
    )
    assert_timeout(report["hostile"][0], "load", 1.0)
    assert "MODEL_LOAD_TIMEOUT_SECONDS" in body(report["hostile"][0])["message"]


# Finding 2: sparse tensors densified before any check.


@pytest.mark.parametrize("where", ["initializer", "constant"])
def test_sparse_tensor_of_huge_dense_shape_is_refused_before_load(tmp_path, where):
    # Under 200 bytes: on main 3.9 GB peak RSS before the 400.
    model = hm.huge_sparse(1_000_000_000, where=where)
    assert len(model) < 200
    report = attack(tmp_path, model, [predict_body({"idx": [0]})])
    assert_refused(report["hostile"][0], "MAX_MODEL_BYTES")


def test_sparse_tensor_that_fits_still_loads(tmp_path):
    report = run_hostile(
        tmp_path, hm.huge_sparse(1000, where="initializer"), [predict_body({"idx": [999]})], env=SMALL_ENV
    )
    assert report["responses"][0]["status"] == 200 and body(report["responses"][0])["result"]["y"]["data"] == [1.0]


# Finding 3: one operator allocating outside the capped arena.


def test_string_tile_outside_the_arena_is_stopped_at_the_memory_bound(tmp_path):
    # A 1 MiB string tiled 3,000 times: on main 3.1 GB with a 512 MiB cap.
    report = attack(tmp_path, hm.string_tile(3000), [predict_body({"s": ["x" * MIB]})], idle_after=True)
    assert_refused(report["hostile"][0], "INFERENCE_MEMORY_BYTES", seconds=5.0)
    assert report["hostile"][0]["idle_cpu"] < IDLE_CPU


def test_tree_ensemble_with_100m_targets_is_stopped_at_the_memory_bound(tmp_path):
    # ai.onnx.ml TreeEnsembleRegressor, n_targets = 100M: on main 1.24 GB
    # with a 512 MiB cap (its 400 MB output fits the arena; the kernel's own
    # per-target vector does not live there).
    report = attack(
        tmp_path,
        hm.tree_ensemble_targets(100_000_000),
        [predict_body({"x": [[1.0]]})],
        env={"INFERENCE_MEMORY_BYTES": str(512 * MIB)},
    )
    assert_refused(report["hostile"][0], "INFERENCE_MEMORY_BYTES", seconds=5.0)


# Finding 4: a timed-out run abandoned, not stopped.


def test_quadratic_nms_is_stopped_and_the_cpu_is_idle_after_the_answer(tmp_path):
    # 300k disjoint boxes: minutes of one NonMaxSuppression. On main the 504
    # came on time and a core stayed busy for ~30 minutes.
    report = attack(tmp_path, hm.quadratic_nms(), [predict_body({"n": 300_000.0})], idle_after=True)
    assert_timeout(report["hostile"][0], "inference", 1.0)


def test_three_quadratic_nms_in_a_row_leave_nothing_running(tmp_path):
    # On main: 11.4 CPU-s in 10 s of idle service, and the next predict 400.
    requests = [predict_body({"n": 300_000.0}, f"nms-{i}") for i in range(3)]
    report = attack(tmp_path, hm.quadratic_nms(), requests, idle_after=True)
    for response in report["hostile"]:
        assert_timeout(response, "inference", 1.0)


# Finding 5: waiting for another request's load of the same model.


def test_two_concurrent_predicts_of_a_load_bomb_both_answer_by_the_deadline(tmp_path):
    # On main over HTTP: both unanswered after 45 s. One request loads, the
    # other joins that load: both answer by their own deadline (503
    # MODEL_LOADING, issue 19: the load goes on), and the load still stops
    # at its own bound (MODEL_LOAD_TIMEOUT_SECONDS), so nothing runs a
    # second after it and the next request is served.
    report = attack(
        tmp_path,
        hm.function_bomb(16),
        [predict_body({"x": [1.0]}, "a"), predict_body({"x": [1.0]}, "b")],
        env={
            "MAX_MODEL_NODES": str(10**12),
            "MAX_MODEL_NESTING": "64",
            "MODEL_LOAD_TIMEOUT_SECONDS": "2",
            "REQUEST_TIMEOUT_SECONDS": "2",
        },
        concurrent=True,
    )
    for response in report["hostile"]:
        assert response["status"] == 503, response
        assert body(response)["error"] == "MODEL_LOADING", response
        assert response["seconds"] < 2.0 + MARGIN, response
    assert report["idle_cpu"] < IDLE_CPU, report["idle_cpu"]
