"""The client and CLI (efsml_client, docs/client.md) against a real local stack.

One stack for the module (moto S3, the S3 watcher, `chalice local`): pushes
go through `POST /uploads` and a presigned PUT, and land by the S3 event,
as on AWS. The CLI runs as `python -m efsml_client` in a subprocess.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from efsml_client import Client, ClientError, ServiceError
from scripts.s3_put import local_s3
from tests.support.efsml_cli import cli, error_line
from tests.support.onnx_models import Mlp
from tests.support.stack import running_stack

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("client-stack")) as found:
        yield found


@pytest.fixture(scope="module")
def url(endpoints):
    return endpoints["api_url"]


def reference(model_bytes, x):
    return ort.InferenceSession(model_bytes).run(None, {"x": x})[0]


def test_push_predict_versions_rollback_delete(url, tmp_path):
    first, second = Mlp.random(seed=1), Mlp.random(seed=2)
    model = tmp_path / "mlp.onnx"
    model.write_bytes(first.onnx_bytes())
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)

    code, pushed, stderr = cli(url, "push", model, "--name", "client mlp.onnx")
    assert code == 0, stderr
    assert pushed["name"] == "client mlp.onnx" and pushed["version"] == 1 and pushed["format"] == "onnx"
    assert [i["name"] for i in pushed["signature"]["inputs"]] == ["x"]
    assert pushed["signature"]["inputs"][0]["datatype"] == "FP32"
    assert stderr == ""  # no bar: stderr is not a terminal and --progress was not given

    code, pushed_input, stderr = cli(url, "push", "--input", tmp_path / "x.npy")
    assert code == 0, stderr
    assert pushed_input["key"] == "inputs/x.npy" and pushed_input["sizeBytes"] == (tmp_path / "x.npy").stat().st_size

    code, answer, stderr = cli(url, "predict", "client mlp.onnx", tmp_path / "x.npy", "--save", tmp_path / "y.npz")
    assert code == 0, stderr
    (y,) = answer["outputs"]
    assert y["name"] == "y" and y["datatype"] == "FP32" and y["shape"] == [5, 3]
    expected = reference(first.onnx_bytes(), x)
    np.testing.assert_allclose(np.array(y["data"], dtype=np.float32), expected, rtol=1e-6)
    # Outputs came as binary tensors: the saved array is bit for bit onnxruntime's.
    np.testing.assert_array_equal(np.load(tmp_path / "y.npz")["y"], expected)

    code, answer, _ = cli(url, "predict", "client mlp.onnx", json.dumps({"x": x[:2].tolist()}))
    assert code == 0 and np.allclose(answer["outputs"][0]["data"], expected[:2], rtol=1e-6)

    model.write_bytes(second.onnx_bytes())
    code, pushed, _ = cli(url, "push", model, "--name", "client mlp.onnx")
    assert code == 0 and pushed["version"] == 2
    code, versions, _ = cli(url, "versions", "client mlp.onnx")
    assert code == 0 and [(v["version"], v["current"]) for v in versions["versions"]] == [(2, True), (1, False)]
    # The library's infer (the CLI's predict is checked above): the current version answers.
    (y2,) = Client(url).infer("client mlp.onnx", {"x": x})["outputs"]
    np.testing.assert_array_equal(y2["data"], reference(second.onnx_bytes(), x))

    code, rolled, _ = cli(url, "rollback", "client mlp.onnx", 1)
    assert code == 0 and rolled["status"] == "rolledBack" and rolled["version"] == 1
    np.testing.assert_array_equal(Client(url).infer("client mlp.onnx", {"x": x})["outputs"][0]["data"], expected)

    code, deleted, _ = cli(url, "delete", "client mlp.onnx")
    assert code == 0 and deleted["status"] == "deleted"
    code, _, stderr = cli(url, "predict", "client mlp.onnx", tmp_path / "x.npy")
    assert code == 1 and error_line(stderr)["code"] == "NOT_FOUND"


def test_errors_come_in_the_services_shape_with_documented_exit_codes(url, tmp_path):
    code, out, stderr = cli(url, "versions", "no-such-model.onnx")
    assert code == 1 and out == ""
    assert error_line(stderr) == {**error_line(stderr), "error": "NOT_FOUND", "status": 404}
    assert "not found" in error_line(stderr)["message"]

    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"these bytes are not an ONNX model")
    code, _, stderr = cli(url, "push", fake)
    assert code == 3
    failure = error_line(stderr)
    assert failure["error"] == "MODEL_INVALID" and "ONNX" in failure["message"]

    code, _, stderr = cli(url, "push", tmp_path / "missing.onnx")
    assert code == 2 and error_line(stderr)["error"] == "CLIENT_ERROR"
    code, _, stderr = cli("http://127.0.0.1:9", "models", "--timeout", "2")
    assert code == 5 and error_line(stderr)["error"] == "UNREACHABLE"


def test_a_failed_push_is_told_apart_from_an_earlier_failure_of_the_same_name(url, tmp_path):
    fake = tmp_path / "twice.onnx"
    fake.write_bytes(b"not onnx, once")
    assert cli(url, "push", fake)[0] == 3
    fake.write_bytes(b"not onnx, twice")
    code, _, stderr = cli(url, "push", fake, "--wait", "20")
    assert code == 3 and error_line(stderr)["error"] == "MODEL_INVALID"
    # ...and a good push after failures waits for its own bytes, not the failure it finds.
    fake.write_bytes(Mlp.random(seed=3).onnx_bytes())
    code, pushed, stderr = cli(url, "push", fake)
    assert code == 0 and pushed["format"] == "onnx", stderr
    # A bad input: not JSON (the CLI's own 2), or the wrong shape (the service's 400, exit 1).
    code, _, stderr = cli(url, "predict", "twice.onnx", "{not json")
    assert code == 2 and "neither a .npy" in error_line(stderr)["message"]
    code, _, stderr = cli(url, "predict", "twice.onnx", json.dumps({"x": [[1, 2]]}))
    assert code == 1 and error_line(stderr)["code"] == "INVALID_REQUEST" and error_line(stderr)["status"] == 400


def test_progress_bar_on_upload_when_asked(url, tmp_path):
    model = tmp_path / "bar.onnx"
    model.write_bytes(Mlp.random(n_in=64, hidden=512, seed=4).onnx_bytes())
    code, _, stderr = cli(url, "push", model, "--progress")
    assert code == 0, stderr
    assert "bar.onnx" in stderr and "100%" in stderr, stderr


def test_models_follows_next_across_pages(url, tmp_path):
    for i in range(3):
        (tmp_path / f"page{i}.bin").write_bytes(f"opaque model {i}".encode())
        Client(url).push(tmp_path / f"page{i}.bin", wait=30)
    names = [m["name"] for m in Client(url).models(limit=1)]
    assert {"page0.bin", "page1.bin", "page2.bin"} <= set(names) and len(names) == len(set(names))
    code, listed, _ = cli(url, "models", "--limit", "2")
    assert code == 0 and [m["name"] for m in listed] == names


def test_library_errors_carry_the_service_body(url):
    with pytest.raises(ServiceError) as raised:
        Client(url).infer("nope.onnx", {"x": np.zeros((1, 4), np.float32)})
    assert raised.value.status == 404 and raised.value.code == "NOT_FOUND"
    assert raised.value.body()["error"] == "Model 'nope.onnx' not found"


def test_progress_bar_by_itself_on_a_terminal(url, tmp_path):
    """Without --progress, the bar is drawn when stderr is a terminal (a pty here), and only then."""
    model = tmp_path / "tty.bin"
    model.write_bytes(b"opaque bytes, pushed from a terminal")
    master, slave = pty.openpty()
    # A terminal of 100 columns (a new pty has 0, and a bar 0 columns wide draws nothing).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    seen = bytearray()

    def drain():
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO once the child closed its side
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    run = subprocess.run(
        [sys.executable, "-m", "efsml_client", "--url", url, "push", str(model)],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=slave,
        timeout=60,
    )
    os.close(slave)
    reader.join(10)
    os.close(master)
    assert run.returncode == 0 and json.loads(run.stdout)["name"] == "tty.bin"
    assert b"tty.bin" in seen and b"100%" in seen, bytes(seen)
    # --no-progress silences it on a terminal too (and nothing is drawn off one: the tests above).
    assert "100%" not in cli(url, "push", model, "--no-progress")[2]


def test_download_streams_a_presigned_get_with_a_bar_and_leaves_nothing_on_failure(endpoints, tmp_path, capsys):
    s3 = local_s3(endpoints)
    data = np.arange(300_000, dtype=np.float32)
    np.save(tmp_path / "result.npy", data)
    s3.upload_file(str(tmp_path / "result.npy"), endpoints["bucket"], "outputs/client-result.npy")
    presign = lambda key: s3.generate_presigned_url(  # noqa: E731
        "get_object", Params={"Bucket": endpoints["bucket"], "Key": key}, ExpiresIn=60
    )
    target = tmp_path / "got.npy"
    Client(endpoints["api_url"], progress=True).download(presign("outputs/client-result.npy"), target)
    np.testing.assert_array_equal(np.load(target), data)
    assert "got.npy" in capsys.readouterr().err
    with pytest.raises(ServiceError) as raised:
        Client(endpoints["api_url"]).download(presign("outputs/none.npy"), tmp_path / "none.npy")
    assert raised.value.status == 404
    with pytest.raises(ClientError, match="do not match sha256"):
        Client(endpoints["api_url"]).download(
            presign("outputs/client-result.npy"), tmp_path / "bad.npy", sha256="0" * 64
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["got.npy", "result.npy"]


def test_jobs_submit_wait_download_status_list_cancel(url, tmp_path):
    model = Mlp.random(seed=5)
    (tmp_path / "jobs-mlp.onnx").write_bytes(model.onnx_bytes())
    rows = np.random.default_rng(1).standard_normal((100, 4)).astype(np.float32)
    np.save(tmp_path / "job-rows.npy", rows)
    # Pushes through the library here (the CLI's push is tested above): one subprocess fewer each.
    Client(url).push(tmp_path / "jobs-mlp.onnx")
    Client(url).push(tmp_path / "job-rows.npy", kind="inputs")

    results = tmp_path / "results"
    code, status, stderr = cli(
        url, "jobs", "submit", "jobs-mlp.onnx", "inputs/job-rows.npy", "--batch-size", 10,
        "--wait", 90, "--download", results, "--progress",
    )  # fmt: skip
    assert code == 0 and status["state"] == "succeeded", (status, stderr)
    assert status["blocks"]["total"] == 10 and status["rows"] == {"total": 100, "done": 100}
    (result,) = status["results"].values()
    got = np.load(result["downloaded"])
    np.testing.assert_allclose(got, ort.InferenceSession(model.onnx_bytes()).run(None, {"x": rows})[0], rtol=1e-6)
    assert Path(result["downloaded"]).parent == results and "100%" in stderr  # the download's bar

    job_id = status["jobId"]
    code, again, _ = cli(url, "jobs", "status", job_id)
    assert code == 0 and again["state"] == "succeeded"
    code, waited, _ = cli(url, "jobs", "wait", job_id, "--wait", 5)
    assert code == 0 and waited["jobId"] == job_id
    code, listed, _ = cli(url, "jobs", "list", "--limit", 1)
    assert code == 0 and job_id in [j["jobId"] for j in listed]
    # A finished job is left as it is by a cancel (docs/jobs.md).
    code, cancelled, _ = cli(url, "jobs", "cancel", job_id)
    assert code == 0 and cancelled["state"] == "succeeded"


def test_unknown_job_and_bad_submit_are_the_services_errors(url):
    code, _, stderr = cli(url, "jobs", "wait", "20990101T000000Z-000000000000", "--wait", 5)
    assert code == 1 and error_line(stderr)["status"] == 404
    code, _, stderr = cli(url, "jobs", "submit", "nope.onnx", "inputs/none.npy")
    assert code == 1 and error_line(stderr)["status"] in (400, 404)
