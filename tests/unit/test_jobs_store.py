"""Jobs on the store: planning reads only headers, blocks map only their rows, state files never race."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from chalicelib.config import load_settings
from chalicelib.errors import InvalidRequest
from chalicelib.jobs import plan, worker
from chalicelib.jobs.state import JobFiles, is_job_id, new_job_id
from chalicelib.names import ObjectRef
from chalicelib.store import Store


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
