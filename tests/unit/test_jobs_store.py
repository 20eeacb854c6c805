"""Jobs on the store: planning reads only headers, blocks map only their rows, state files never race."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest

from chalicelib.config import load_settings
from chalicelib.errors import InvalidRequest
from chalicelib.jobs import plan, service, worker
from chalicelib.jobs.state import JobFiles, is_job_id, new_job_id
from chalicelib.names import ObjectRef
from chalicelib.store import Store
from tests.support.jobs import plan_doc


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path))


def put_npy(store: Store, name: str, array: np.ndarray, fortran: bool = False) -> ObjectRef:
    buf = io.BytesIO()
    np.save(buf, np.asfortranarray(array) if fortran else array)
    ref = ObjectRef("inputs", name)
    store.put_bytes(ref, buf.getvalue(), source="test")
    return ref


def request(**body):
    return plan.parse_job({"model": "m.onnx", **body})


def test_blocks_cover_every_row_once_in_order(store):
    put_npy(store, "x.npy", np.zeros((103, 2, 5), np.float32))
    inputs, blocks = plan.plan_blocks(store, load_settings({}), request(input="inputs/x.npy", batchSize=10))
    assert [(b["start"], b["stop"]) for b in blocks] == [(s, min(s + 10, 103)) for s in range(0, 103, 10)]
    assert inputs[0]["shape"] == [103, 2, 5] and inputs[0]["offset"] == 128
    # The default is JOB_BATCH_SIZE, lowered to what MAX_TENSOR_ELEMENTS allows.
    _, default = plan.plan_blocks(store, load_settings({"MAX_TENSOR_ELEMENTS": "300"}), request(input="inputs/x.npy"))
    assert default[0]["stop"] == 30


def test_a_prefix_makes_one_block_per_input_in_name_order(store):
    for name in ("day1-001.npy", "day1-000.npy", "day2-000.npy"):
        put_npy(store, name, np.zeros((4, 3), np.float32))
    inputs, blocks = plan.plan_blocks(store, load_settings({}), request(inputPrefix="inputs/day1-"))
    assert [i["key"] for i in inputs] == ["inputs/day1-000.npy", "inputs/day1-001.npy"]
    assert blocks == [{"input": 0, "start": 0, "stop": 4}, {"input": 1, "start": 0, "stop": 4}]


@pytest.mark.parametrize(
    "array, fortran, message",
    [
        (np.zeros((4, 3), np.float32), True, "Fortran"),
        (np.array(["a", "b"]), False, "numeric"),
        (np.float32(1.0), False, "scalar"),
        (np.zeros((0, 3), np.float32), False, "no rows"),
    ],
)
def test_inputs_that_cannot_be_split_are_refused_at_planning(store, array, fortran, message):
    put_npy(store, "bad.npy", array, fortran)
    with pytest.raises(InvalidRequest, match=message):
        plan.plan_blocks(store, load_settings({}), request(input="inputs/bad.npy"))


def test_a_truncated_npy_is_refused(store):
    buf = io.BytesIO()
    np.save(buf, np.zeros((10, 3), np.float32))
    store.put_bytes(ObjectRef("inputs", "cut.npy"), buf.getvalue()[:-4], source="test")
    with pytest.raises(InvalidRequest, match="truncated"):
        plan.plan_blocks(store, load_settings({}), request(input="inputs/cut.npy"))


def test_a_block_maps_only_its_rows_of_the_shared_file(store):
    x = np.arange(1000 * 4, dtype=np.float32).reshape(1000, 4)
    put_npy(store, "x.npy", x)
    inputs, blocks = plan.plan_blocks(store, load_settings({}), request(input="inputs/x.npy", batchSize=100))
    rows = worker._rows(store, {"inputs": inputs}, blocks[3])
    assert isinstance(rows, np.memmap) and rows.shape == (100, 4) and not rows.flags.writeable
    assert rows.offset == 128 + 300 * 16  # the mapping starts at its first row: no copy, no other rows
    assert np.array_equal(rows, x[300:400])


def test_a_replaced_input_fails_the_block_rather_than_mixing_inputs(store):
    put_npy(store, "x.npy", np.zeros((10, 4), np.float32))
    inputs, blocks = plan.plan_blocks(store, load_settings({}), request(input="inputs/x.npy", batchSize=5))
    put_npy(store, "x.npy", np.ones((10, 4), np.float32))
    with pytest.raises(InvalidRequest, match="replaced"):
        worker._rows(store, {"inputs": inputs}, blocks[0])


def test_job_ids_sort_by_time_and_nothing_else_passes_for_one(tmp_path):
    a, b = new_job_id(1_000_000_000), new_job_id(2_000_000_000)
    assert a < b and is_job_id(a) and is_job_id(b)
    for bad in ("../x", "", "20260101T000000Z-zz", a + "/blocks"):
        assert not is_job_id(bad)
    files = JobFiles(str(tmp_path))
    for job_id in (a, b):
        files.write_json(job_id, ("job.json",), {"jobId": job_id})
    os.makedirs(os.path.join(files.root, "not-a-job"))
    assert files.job_ids() == [b, a]


def test_the_first_start_marker_is_created_once(tmp_path):
    files = JobFiles(str(tmp_path))
    job_id = new_job_id()
    files.write_json(job_id, ("job.json",), {})
    assert files.create_once(job_id, "started", {"at": 1}) is True
    assert files.create_once(job_id, "started", {"at": 2}) is False
    assert files.read_json(job_id, "started") == {"at": 1}


def test_progress_counts_block_files_not_a_counter(tmp_path):
    files = JobFiles(str(tmp_path))
    job_id = new_job_id()
    for i in (0, 2, 2):  # a repeat replaces block 2's file: still one block
        files.write(job_id, ("blocks", f"{i}.npz"), b"x")
    files.write(job_id, ("blocks", ".3.npz.0123.tmp"), b"half")  # a dead writer's temp is not a block
    files.write_json(job_id, ("failed", "1.json"), {"error": "INVALID_REQUEST"})
    progress = files.progress(job_id)
    assert progress.done == {0, 2} and set(progress.failed) == {1} and progress.results is None


@pytest.mark.parametrize(
    "body",
    [
        {"input": "inputs/x.npy", "outputs": []},
        {"input": "inputs/x.npy", "outputs": ["y", "y"]},
        {"input": "inputs/x.npy", "version": True},
        {"inputPrefix": "models/x"},
        {"inputPrefix": "inputs/"},
        {"inputPrefix": "inputs/a", "batchSize": 2},
        {"input": "models/x.npy"},
    ],
)
def test_bad_bodies_are_refused_before_any_io(body):
    with pytest.raises(InvalidRequest):
        request(**body)


def _job(tmp_path, blocks: int = 2) -> tuple[Store, JobFiles, str]:
    store, files, job_id = Store(str(tmp_path)), JobFiles(str(tmp_path)), new_job_id()
    files.write_json(job_id, ("job.json",), plan_doc(job_id, blocks, "2026-12-04T00:00:00.000Z"))
    files.create_once(job_id, "started", {})
    return store, files, job_id


def _attempt(ago: float, attempt: int = 2, last: bool = True) -> dict:
    return {"attempt": attempt, "last": last, "t": time.time() - ago}


def test_a_last_attempt_that_records_nothing_within_the_bound_fails_the_block(tmp_path):
    store, files, job_id = _job(tmp_path)
    settings = load_settings({"JOB_MAX_RECEIVE_COUNT": "2", "JOB_ATTEMPT_TIMEOUT_SECONDS": "30"})
    files.write(job_id, ("blocks", "0.npz"), b"x")
    files.write_json(job_id, ("last-attempt", "1.json"), _attempt(ago=10))
    running = service.job_status(store, settings, job_id)
    assert running["state"] == "running" and running["blocks"]["failed"] == 0  # it may still be running
    files.write_json(job_id, ("last-attempt", "1.json"), _attempt(ago=31))  # its worker was stopped
    failed = service.job_status(store, settings, job_id)
    assert failed["state"] == "failed" and failed["blocks"] == {"total": 2, "done": 1, "failed": 1, "pending": 0}
    (err,) = failed["errors"]
    assert err["block"] == 1 and err["rows"] == [10, 20] and err["attempts"] == 2
    assert "worker stopped during its last attempt" in err["message"] and failed["finishedAt"] == err["at"]
    files.write(job_id, ("blocks", "1.npz"), b"x")  # a late result (a redrive from the DLQ) still counts
    assert service.job_status(store, settings, job_id)["blocks"]["failed"] == 0


def test_an_assembly_ends_failed_only_once_no_attempt_can_come(tmp_path):
    store, files, job_id = _job(tmp_path)
    settings = load_settings({"JOB_MAX_RECEIVE_COUNT": "2", "JOB_ATTEMPT_TIMEOUT_SECONDS": "30"})
    for i in (0, 1):
        files.write(job_id, ("blocks", f"{i}.npz"), b"x")
    files.write_json(job_id, ("assembling", "1.json"), _attempt(ago=100, attempt=1, last=False))
    assert service.job_status(store, settings, job_id)["state"] == "running"  # its message comes back
    files.write_json(job_id, ("assembling", "1.json"), _attempt(ago=10))
    assert service.job_status(store, settings, job_id)["state"] == "running"  # the last attempt may still run
    files.write_json(job_id, ("assembling", "0.json"), _attempt(ago=100))  # killed while assembling
    assert service.job_status(store, settings, job_id)["state"] == "running"  # block 1's attempt may still win
    doc = {"error": "PROCESSING_FAILED", "message": "S3 down", "attempts": 2, "at": "2026-12-04T00:00:09.000Z"}
    files.write_json(job_id, ("assembly-failed", "1.json"), doc)
    failed = service.job_status(store, settings, job_id)
    assert failed["state"] == "failed" and failed["blocks"]["failed"] == 0
    (err,) = failed["errors"]
    assert err["block"] is None and err["stage"] == "assembly" and err["attempts"] == 2
    assert "stopped while assembling" in err["message"]  # the later of the two reasons
    assert failed["finishedAt"] == err["at"]


def test_the_attempt_timeout_outlasts_the_workers_lambda_timeout_in_every_stage():
    # A last attempt counts as stopped only once Lambda has surely ended it: the
    # function's timeout, plus a margin for two functions' clocks.
    import json
    from pathlib import Path

    config = json.loads((Path(__file__).resolve().parents[2] / ".chalice" / "config.json").read_text())
    bound = load_settings({}).job_attempt_timeout_seconds
    stages = config["stages"].values()
    timeouts = [s["lambda_functions"]["run_job_blocks"]["lambda_timeout"] for s in stages if s.get("lambda_functions")]
    assert timeouts and all(bound >= t + 30 for t in timeouts), (bound, timeouts)


def _dead(store, settings, job_id: str, *blocks: int) -> dict:
    import json

    from chalicelib.jobs import dead_letters

    records = [{"messageId": f"m{b}", "body": json.dumps({"jobId": job_id, "block": b})} for b in blocks]
    return dead_letters.handle_dead_letters(store, settings, records)


def test_a_dead_letter_fails_a_block_that_recorded_nothing_and_ends_the_job(tmp_path):
    store, files, job_id = _job(tmp_path)
    settings = load_settings({"JOB_MAX_RECEIVE_COUNT": "3"})
    files.write(job_id, ("blocks", "0.npz"), b"x")
    assert service.job_status(store, settings, job_id)["state"] == "running"  # forever, before the DLQ's answer
    assert _dead(store, settings, job_id, 1) == {"batchItemFailures": []}
    failed = service.job_status(store, settings, job_id)
    assert failed["state"] == "failed" and failed["blocks"] == {"total": 2, "done": 1, "failed": 1, "pending": 0}
    (err,) = failed["errors"]
    assert (
        err["block"] == 1 and err["rows"] == [10, 20] and err["attempts"] == 3 and err["error"] == "PROCESSING_FAILED"
    )
    assert err["message"].startswith(
        "every delivery of block 1 ended without an answer: the Lambda timed out or was killed"
    )
    assert failed["finishedAt"] == err["at"]
    # Idempotent: the same dead letter again, or one of a done block, changes nothing.
    _dead(store, settings, job_id, 1, 0)
    assert service.job_status(store, settings, job_id) == failed


def test_a_dead_letter_keeps_what_the_attempts_recorded(tmp_path):
    store, files, job_id = _job(tmp_path, blocks=3)
    settings = load_settings({"JOB_MAX_RECEIVE_COUNT": "2", "JOB_ATTEMPT_TIMEOUT_SECONDS": "30"})
    recorded = {"error": "INVALID_REQUEST", "message": "bad rows", "attempts": 2, "at": "2026-12-04T00:00:01.000Z"}
    files.write_json(job_id, ("failed", "0.json"), recorded)  # its worker gave up and said why
    files.write_json(job_id, ("errors", "1.json"), {**recorded, "attempts": 1})  # attempt 1 failed, 2 was killed
    files.write_json(job_id, ("last-attempt", "2.json"), _attempt(ago=5))  # its last attempt started, then nothing
    _dead(store, settings, job_id, 0, 1, 2)
    errors = {e["block"]: e for e in service.job_status(store, settings, job_id)["errors"]}
    assert errors[0]["message"] == "bad rows" and errors[0]["at"] == recorded["at"]  # not changed
    assert (
        "ended without an answer" in errors[1]["message"]
        and "attempt 1 had failed with: bad rows" in errors[1]["message"]
    )
    assert "worker stopped during its last attempt" in errors[2]["message"] and errors[2]["attempts"] == 2


def test_a_dead_letter_of_the_message_that_assembles_fails_the_assembly(tmp_path):
    store, files, job_id = _job(tmp_path)
    settings = load_settings({"JOB_MAX_RECEIVE_COUNT": "2"})
    for i in (0, 1):
        files.write(job_id, ("blocks", f"{i}.npz"), b"x")
    # Attempt 1 of block 1's message assembled and failed; every later delivery died unrecorded.
    files.write_json(job_id, ("assembling", "1.json"), _attempt(ago=100, attempt=1, last=False))
    assert service.job_status(store, settings, job_id)["state"] == "running"
    _dead(store, settings, job_id, 1)
    failed = service.job_status(store, settings, job_id)
    assert failed["state"] == "failed" and failed["blocks"]["failed"] == 0
    (err,) = failed["errors"]
    assert err["block"] is None and err["stage"] == "assembly" and "block 1 ended without an answer" in err["message"]
    _dead(store, settings, job_id, 1)
    assert service.job_status(store, settings, job_id) == failed


def test_a_dead_letter_naming_no_job_of_this_store_stays_in_the_dlq(tmp_path):
    store = Store(str(tmp_path))
    settings = load_settings({})
    outcome = _dead(store, settings, new_job_id(), 0)
    assert outcome == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    store2, _, job_id = _job(tmp_path / "b")
    assert _dead(store2, settings, job_id, 7) == {"batchItemFailures": [{"itemIdentifier": "m7"}]}
