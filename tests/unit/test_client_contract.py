"""The demonstration client's contract checks accept good answers and catch bad ones."""

import json

import pytest

from demo import contract, report
from demo.target import TargetError, from_local, from_outputs
from demo.workflow import FAIL, PASS, StepResult

SHA = "a" * 64
INGEST = {"fileId": "f-1", "efsPath": "/mnt/efs/models/m.pt", "s3Key": None, "sizeBytes": 17, "status": "created"}
PREDICT = {
    "fileId": "f-1",
    "efsPath": "/mnt/efs/outputs/f-1.result",
    "s3Key": "outputs/f-1.result",
    "durationMs": 4.2,
    "result": {"modelSize": 17, "checksum": SHA, "processed": True},
}
MODEL = {
    "name": "m.pt",
    "key": "models/m.pt",
    "fileId": "f-1",
    "sizeBytes": 17,
    "sha256": SHA,
    "version": 1,
    "created": "2026-01-01T00:00:00+00:00",
    "updated": "2026-01-01T00:00:00+00:00",
    "source": "inline",
    "state": "ready",
    "readyVersion": 1,
}


def test_good_ingest_passes():
    assert contract.check_ingest(200, INGEST, size=17) == []
    assert contract.check_ingest(200, {**INGEST, "s3Key": "models/m.pt"}, s3_key="models/m.pt") == []


@pytest.mark.parametrize(
    "status, body, fragment",
    [
        (500, INGEST, "HTTP 500"),
        (200, "not json", "not a JSON object"),
        (200, {k: v for k, v in INGEST.items() if k != "fileId"}, "missing field 'fileId'"),
        (200, {**INGEST, "sizeBytes": "17"}, "'sizeBytes'"),
        (200, {**INGEST, "sizeBytes": True}, "'sizeBytes'"),
        (200, {**INGEST, "status": "stored"}, "'status'"),
        (200, {**INGEST, "s3Key": 5}, "'s3Key'"),
    ],
)
def test_bad_ingest_is_caught(status, body, fragment):
    problems = contract.check_ingest(status, body)
    assert any(fragment in p for p in problems), problems


def test_ingest_expectations_are_checked():
    assert contract.check_ingest(200, INGEST, size=18) == ["ingest: sizeBytes 17 != 18 sent"]
    assert contract.check_ingest(200, INGEST, statuses=("exists",))
    assert contract.check_ingest(200, INGEST, s3_key="models/m.pt")


def test_predict_and_opaque_result():
    assert contract.check_predict(200, PREDICT, "f-1") == []
    assert contract.check_opaque_result(PREDICT["result"], 17, SHA) == []
    assert contract.check_predict(200, PREDICT, "other")
    assert contract.check_predict(200, {**PREDICT, "durationMs": -1}, "f-1")
    assert contract.check_predict(200, {**PREDICT, "result": []}, "f-1")
    assert contract.check_opaque_result({**PREDICT["result"], "processed": "yes"}, 17, SHA)
    assert contract.check_opaque_result({**PREDICT["result"], "checksum": "b" * 64}, 17, SHA)


def test_error_shape():
    good = {"error": "S3_NOT_FOUND", "message": "S3 object not found", "key": "models/x", "requestId": "r"}
    assert contract.check_error(404, good, "S3_NOT_FOUND") == []
    assert any("HTTP 400" in p for p in contract.check_error(400, good, "S3_NOT_FOUND"))
    assert contract.check_error(404, {**good, "requestId": ""}, "S3_NOT_FOUND")
    assert contract.check_error(404, {k: v for k, v in good.items() if k != "key"}, "S3_NOT_FOUND") == [
        "S3_NOT_FOUND: missing documented field 'key'"
    ]
    assert contract.check_error(404, {**good, "error": "NOT_FOUND"}, "S3_NOT_FOUND")
    # API Gateway's own errors ({"message": ...}) are not the documented shape.
    assert contract.check_error(413, {"message": "Request Too Long"}, "FILE_TOO_LARGE")


def test_every_documented_error_has_its_status():
    assert contract.ERROR_STATUS == {
        "INVALID_REQUEST": 400,
        "S3_NOT_FOUND": 404,
        "FILE_TOO_LARGE": 413,
        "EFS_WRITE_FAILED": 500,
        "NOT_FOUND": 404,
        "PROCESSING_FAILED": 500,
        "TIMEOUT": 504,
        "MODEL_INVALID": 400,
        "UNSUPPORTED_MEDIA_TYPE": 415,
        "MODEL_LOADING": 503,
    }
    assert contract.ERROR_FIELD["MODEL_LOADING"] == "retryAfter"
    assert contract.ERROR_FIELD["TIMEOUT"] == "stage" and "PROCESSING_FAILED" not in contract.ERROR_FIELD


def test_model_and_list():
    assert contract.check_model(200, MODEL, "m.pt", sha256=SHA, size=17) == []
    assert contract.check_model(200, MODEL, "m.pt", sha256="b" * 64) == ["model: sha256 differs from the bytes sent"]
    assert contract.check_model(200, {**MODEL, "version": 0}, "m.pt")
    assert contract.check_model(200, {**MODEL, "sha256": "xyz"}, "m.pt")
    assert contract.check_model_list(200, {"models": [MODEL], "count": 1}) == []
    assert contract.check_model_list(200, {"models": [MODEL], "count": 2})
    assert contract.check_model_list(200, {"models": [{**MODEL, "key": "inputs/m.pt"}], "count": 1})


def test_upload_and_tensor():
    up = {
        "url": "https://b.s3.amazonaws.com/models/x?X-Amz-Signature=s",
        "method": "PUT",
        "key": "models/x",
        "headers": {"Content-Length": "5"},
        "sizeBytes": 5,
        "expiresIn": 900,
    }
    assert contract.check_upload(200, up, "models/x", 5) == []
    assert contract.check_upload(200, {**up, "method": "POST"}, "models/x", 5)
    assert contract.check_upload(200, {**up, "url": "ftp://x"}, "models/x", 5)
    result = {"y": {"data": [[4.5, 4.5]], "shape": [1, 2], "dtype": "float32"}}
    assert contract.check_tensor(result, "y", [[4.5, 4.5]], [1, 2]) == []
    assert contract.check_tensor(result, "y", [[4.5, 4.0]], [1, 2])
    assert contract.check_tensor(result, "y", [[4.5, 4.5]], [2, 1])
    assert contract.check_tensor(result, "z", [[4.5, 4.5]], [1, 2])


def test_targets_from_terraform_outputs(tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps(
            {
                "api_url": {"value": "https://abc.execute-api.us-east-1.amazonaws.com/api/", "sensitive": False},
                "api_key": {"value": "k3y", "sensitive": True},
                "s3_bucket_name": {"value": "efs-ml-bucket"},
                "region": {"value": "us-east-1"},
            }
        )
    )
    t = from_outputs(outputs)
    assert (t.api_url, t.api_key, t.bucket, t.local) == (
        "https://abc.execute-api.us-east-1.amazonaws.com/api",
        "k3y",
        "efs-ml-bucket",
        False,
    )
    outputs.write_text(json.dumps({"s3_bucket_name": {"value": "b"}}))
    with pytest.raises(TargetError):
        from_outputs(outputs)
    with pytest.raises(TargetError):
        from_outputs(tmp_path / "absent.json")


def test_targets_from_local_endpoints(tmp_path):
    p = tmp_path / "endpoints.json"
    p.write_text(
        json.dumps(
            {
                "api_url": "http://127.0.0.1:1/",
                "s3_endpoint": "http://127.0.0.1:2",
                "bucket": "b",
                "efs_root": "/x",
                "pid": 1,
            }
        )
    )
    t = from_local(p)
    assert t.local and t.api_key is None and t.api_url == "http://127.0.0.1:1"
    p.write_text("{")
    with pytest.raises(TargetError):
        from_local(p)


def test_percentile_and_counts():
    assert report.percentile([], 50) is None
    assert report.percentile([5.0], 95) == 5.0
    values = list(range(1, 101))
    assert report.percentile(values, 50) == 50 and report.percentile(values, 95) == 95
    steps = [StepResult("a", PASS), StepResult("b", FAIL), StepResult("c", PASS)]
    assert report.counts(steps) == {"pass": 2, "fail": 1, "skipped": 0, "n/a": 0}
    assert steps[1].to_dict()["passed"] is False and steps[0].to_dict()["passed"] is True


class _DownApi:
    """An ApiClient stand-in (same call/target interface) whose every answer is a 503."""

    def __init__(self):
        from demo.target import Target

        self.target = Target(api_url="http://127.0.0.1:9", label="down")

    def call(self, method, path, body=None, **kw):
        from demo.client import Answer

        return Answer(503, {"message": "down"}, 1.0, {"content-type": "application/json"})

    def put_presigned(self, url, f, size, headers, label):
        return self.call("PUT", url)


def test_steps_whose_prerequisite_failed_are_skipped_naming_it():
    import io

    from demo.workflow import FAIL, SKIPPED, Demonstration

    demo = Demonstration(_DownApi(), large_bytes=1024, warm_repeats=1, out=io.StringIO(), build_onnx=lambda: None)
    steps = {s.name: s for s in demo.run()}
    assert steps["ingest inline (data + filename)"].result == FAIL
    skipped = steps["ingest inline again: idempotent 'exists'"]
    assert skipped.result == SKIPPED and "the inline model" in skipped.detail
    assert steps["predict model ingested by key"].result == SKIPPED
    assert "the landed model" in steps["predict uploaded model (cold)"].detail
    assert demo.state.opaque is None and demo.state.large is None


def test_states_in_the_model_contract():
    assert contract.check_model(200, {k: v for k, v in MODEL.items() if k != "state"}, "m.pt")
    pending = {"name": "n.pt", "key": "models/n.pt", "state": "pending", "stateTime": "t", "readyVersion": None}
    assert contract.check_model(200, pending, "n.pt") == []
    failed = {**pending, "state": "failed", "error": {"error": "FILE_TOO_LARGE", "message": "big", "time": "t"}}
    assert contract.check_model(200, failed, "n.pt") == []
    assert contract.check_model(200, {**failed, "error": {"error": "NOPE", "message": "m", "time": "t"}}, "n.pt")
    # A pending attempt over a ready version: the version's fields must be there.
    assert contract.check_model(200, {**MODEL, "state": "pending", "stateTime": "t"}, "m.pt") == []
    assert contract.check_model(200, {**pending, "readyVersion": 1}, "n.pt")
    rejected = {**failed, "name": None, "key": "models/../x", "id": "a" * 40}
    assert contract.check_model_list(200, {"models": [MODEL, rejected], "count": 2}) == []
    assert contract.check_model_list(200, {"models": [{**rejected, "state": "pending"}], "count": 1})


def test_accepted_contract():
    body = {"status": "accepted", "statusUrl": "/models/a%20b.bin", "key": "models/a b.bin", "name": "a b.bin"}
    assert contract.check_accepted(202, body, "models/a b.bin") == []
    assert contract.check_accepted(200, body, "models/a b.bin")
    assert contract.check_accepted(202, {**body, "statusUrl": "/inputs/a%20b.bin"}, "models/a b.bin")
