"""The demonstration workflow: every documented path of the API, checked.

Each step calls the live API, checks the answer against ``demo.contract``
and records a :class:`StepResult`; a live table row is printed as each step
finishes. A step whose prerequisite failed is recorded as ``skipped`` (the
prerequisite's failure already fails the run). What steps hand to later
steps lives in a typed :class:`RunState`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, TextIO
from urllib.parse import quote

from demo import contract
from demo.client import Answer, ApiClient
from demo.target import Target

PROJECT_DIR = Path(__file__).resolve().parent.parent
PASS, FAIL, SKIPPED, NOT_APPLICABLE = "pass", "fail", "skipped", "n/a"

# Errors a healthy stack cannot be made to return from outside; where they are exercised instead.
UNPROVOKABLE = {
    "EFS_WRITE_FAILED": "needs a failing or read-only store; exercised by the functional and "
    "reliability tests (unwritable store, lock timeouts)",
    "PROCESSING_FAILED": "needs an internal fault (S3 outage, corrupt store); exercised by the reliability tests",
}


@dataclass
class StepResult:
    """One row of demonstration_results.json."""

    name: str
    result: str
    latencyMs: float | None = None
    httpStatus: int | None = None
    detail: str = ""
    category: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["passed"] = {PASS: True, FAIL: False}.get(self.result)
        if doc["latencyMs"] is not None:
            doc["latencyMs"] = round(doc["latencyMs"], 3)
        return doc


@dataclass(frozen=True)
class Content:
    """Bytes this run sent: what the API must report back for them."""

    size: int
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> Content:
        return cls(len(data), hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class Stored:
    """A model this run stored, and the fileId the API gave it."""

    content: Content
    file_id: str


@dataclass
class RunState:
    """What earlier steps found out for later ones (``None``: not (yet) done)."""

    opaque: Stored | None = None
    """The inline-ingested opaque model (latest version)."""
    s3_object: Content | None = None
    """The object uploaded to the bucket for the ingest-by-key steps."""
    s3_model: Stored | None = None
    """That object, ingested by key."""
    upload: dict[str, Any] | None = None
    """The POST /uploads answer for the large model."""
    put_done: float | None = None
    """When the presigned PUT finished (perf_counter)."""
    large: Stored | None = None
    """The large model, landed by the S3 event."""
    onnx_file_id: str | None = None
    """The ONNX model's fileId."""
    deleted: str | None = None
    """The model DELETE /models/{name} removed (the warm inline one)."""
    accepted: dict[str, Any] | None = None
    """The 202 answer of the ingest by key, when it was handed off (async)."""
    failed_uploads: dict[str, str] | None = None
    """Keys uploaded to fail their ingest: what -> key."""


def local_max_ingest_bytes() -> int:
    """MAX_INGEST_BYTES of the local stage (.chalice/config.json), which the demo's stack runs."""
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())
    local = config["stages"]["local"].get("environment_variables", {})
    return int(local.get("MAX_INGEST_BYTES") or config["environment_variables"]["MAX_INGEST_BYTES"])


class StepFailed(Exception):
    """A step's answer broke the contract; ``problems`` says how."""

    def __init__(self, problems: list[str], answer: Answer | None = None) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.answer = answer


def require(problems: list[str], answer: Answer | None = None) -> None:
    """Fail the step when the contract check found problems."""
    if problems:
        raise StepFailed(problems, answer)


class LiveTable:
    """Prints one aligned row per finished step."""

    WIDTHS = (46, 8, 6, 11)

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out

    def header(self, target: Target, run_id: str) -> None:
        print(f"Demonstration against {target.label} ({target.api_url}), run {run_id}", file=self.out)
        n, r, s, lat = self.WIDTHS
        print(f"{'step':<{n}} {'result':<{r}} {'http':>{s}} {'latency':>{lat}}  detail", file=self.out)
        print("-" * (n + r + s + lat + 12), file=self.out, flush=True)

    def row(self, step: StepResult) -> None:
        n, r, s, lat = self.WIDTHS
        latency = f"{step.latencyMs:.1f} ms" if step.latencyMs is not None else "-"
        http = str(step.httpStatus) if step.httpStatus is not None else "-"
        mark = {PASS: "PASS", FAIL: "FAIL", SKIPPED: "skip", NOT_APPLICABLE: "n/a"}[step.result]
        print(
            f"{step.name[:n]:<{n}} {mark:<{r}} {http:>{s}} {latency:>{lat}}  {step.detail[:160]}",
            file=self.out,
            flush=True,
        )


def tiny_onnx_model() -> tuple[bytes, dict[str, Any], list, list[int]] | None:
    """``y = x @ W + b`` as ONNX bytes, its inputs and the expected output.

    Built at run time with ``onnx.helper``; ``None`` when onnx is not installed.
    """
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        return None
    w = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    b = [0.5, -0.5]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "demo-linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [
            helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [v for row in w for v in row]),
            helper.make_tensor("b", TensorProto.FLOAT, [2], b),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10  # what onnxruntime 1.32 reads, whatever onnx version built it
    onnx.checker.check_model(model)
    x = [[1.0, 2.0, 3.0], [0.0, -1.0, 2.0]]
    expected = [[sum(xi[k] * w[k][j] for k in range(3)) + b[j] for j in range(2)] for xi in x]
    return model.SerializeToString(), {"x": x}, expected, [2, 2]


def random_file(size: int) -> tuple[BinaryIO, str]:
    """A temporary file of ``size`` random bytes (incompressible) and its sha256."""
    f = tempfile.TemporaryFile()
    h = hashlib.sha256()
    left = size
    while left > 0:
        block = os.urandom(min(left, 1024 * 1024))
        f.write(block)
        h.update(block)
        left -= len(block)
    f.seek(0)
    return f, h.hexdigest()


class Demonstration:
    """Runs every step against one target and keeps the results."""

    def __init__(
        self,
        client: ApiClient,
        *,
        large_bytes: int = 16 * 1024 * 1024,
        warm_repeats: int = 5,
        land_timeout: float = 120.0,
        out: TextIO = sys.stdout,
        build_onnx: Callable[[], Any] = tiny_onnx_model,
    ) -> None:
        self.client = client
        self.target = client.target
        self.large_bytes = large_bytes
        self.warm_repeats = warm_repeats
        self.land_timeout = land_timeout
        self.table = LiveTable(out)
        self.build_onnx = build_onnx
        self.run_id = time.strftime("%Y%m%d%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
        self.steps: list[StepResult] = []
        self.api_latencies: list[float] = []
        self.state = RunState()

    # -- plumbing ------------------------------------------------------------
    def name(self, what: str) -> str:
        """A model name unique to this run, so every run starts cold."""
        return f"demo-{self.run_id}-{what}"

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Answer:
        answer = self.client.call(method, path, body, **kw)
        self.api_latencies.append(answer.latency_ms)
        return answer

    def record(self, step: StepResult) -> StepResult:
        self.steps.append(step)
        self.table.row(step)
        return step

    def step(
        self,
        name: str,
        category: str,
        fn: Callable[[], StepResult | Answer],
        needs: dict[str, object | None] | None = None,
    ) -> StepResult:
        """Run ``fn`` as one step; its contract failures and exceptions fail the step.

        ``needs`` maps a description to the state an earlier step should have
        set (evaluated when this step's turn comes); any still ``None`` skips it.
        """
        missing = [what for what, value in (needs or {}).items() if value is None]
        if missing:
            return self.record(
                StepResult(name, SKIPPED, detail=f"needs {', '.join(missing)} from an earlier step", category=category)
            )
        started = time.perf_counter()
        try:
            out = fn()
        except StepFailed as exc:
            a = exc.answer
            return self.record(
                StepResult(
                    name,
                    FAIL,
                    a.latency_ms if a else (time.perf_counter() - started) * 1000,
                    a.status if a else None,
                    "; ".join(exc.problems),
                    category,
                )
            )
        except Exception as exc:  # a transport error is a failed step, not a crashed demo
            return self.record(
                StepResult(
                    name, FAIL, (time.perf_counter() - started) * 1000, None, f"{type(exc).__name__}: {exc}", category
                )
            )
        if isinstance(out, Answer):
            out = StepResult(name, PASS, out.latency_ms, out.status, category=category)
        out.name, out.category = name, category
        return self.record(out)

    # -- the workflow ----------------------------------------------------------
    def run(self) -> list[StepResult]:
        """Every step, in order; returns the results."""
        self.table.header(self.target, self.run_id)
        self.step("health: store mounted and writable", "health", self.health)
        self.inline_steps()
        self.s3_key_steps()
        self.failure_steps()
        self.presigned_steps()
        self.onnx_steps()
        self.step("catalogue: GET /models lists this run's models", "catalogue", self.catalogue)
        self.delete_steps()
        self.error_steps()
        return self.steps

    def health(self) -> StepResult:
        a = self.call("GET", "/health")
        require(contract.check_health(a.status, a.body), a)
        return StepResult("", PASS, a.latency_ms, a.status, f"store {a.body['store']}"[:120])

    def inline_steps(self) -> None:
        name = self.name("opaque.pt")
        v1, v2 = f"sample model data {self.run_id}", f"sample model data {self.run_id}, version 2"

        def ingest(data: str, statuses: tuple[str, ...]) -> Callable[[], StepResult]:
            def run() -> StepResult:
                a = self.call("POST", "/ingest", {"data": data, "filename": name})
                require(contract.check_ingest(a.status, a.body, size=len(data.encode()), statuses=statuses), a)
                before = self.state.opaque
                if before is not None and a.body["fileId"] != before.file_id:
                    raise StepFailed([f"fileId changed: {a.body['fileId']} != {before.file_id}"], a)
                self.state.opaque = Stored(Content.of(data.encode()), a.body["fileId"])
                return StepResult(
                    "",
                    PASS,
                    a.latency_ms,
                    a.status,
                    f"status={a.body['status']} fileId={a.body['fileId']}",
                    metrics={"bytes": a.body["sizeBytes"]},
                )

            return run

        self.step("ingest inline (data + filename)", "ingest", ingest(v1, ("created",)))
        first = {"the inline model": self.state.opaque}
        self.step("ingest inline again: idempotent 'exists'", "ingest", ingest(v1, ("exists",)), needs=first)
        self.step("ingest inline new content: 'updated'", "ingest", ingest(v2, ("updated",)), needs=first)
        for i in range(1 + self.warm_repeats):
            label = "cold" if i == 0 else f"warm {i}"
            self.step(
                f"predict opaque model ({label})",
                "predict",
                lambda: self.predict_opaque(name, self.state.opaque),
                needs={"the inline model": self.state.opaque},
            )

    def predict_opaque(self, model: str, stored: Stored | None) -> StepResult:
        """Predict with an opaque model this run stored; the result must describe its bytes."""
        assert stored is not None  # guaranteed by the step's needs
        a = self.call("POST", "/predict", {"fileId": stored.file_id, "model": model})
        require(contract.check_predict(a.status, a.body, stored.file_id), a)
        require(contract.check_opaque_result(a.body["result"], stored.content.size, stored.content.sha256), a)
        return self._predict_result(a)

    @staticmethod
    def _predict_result(a: Answer) -> StepResult:
        cache = a.body.get("cache")
        return StepResult(
            "",
            PASS,
            a.latency_ms,
            a.status,
            f"durationMs={a.body['durationMs']} cache={cache or '?'}",
            metrics={"cache": cache, "serverMs": a.body["durationMs"]},
        )

    def put_object(self, key: str, f, size: int, label: str) -> Answer:
        """Put bytes at ``key``: straight to the local moto S3, else by presigned URL."""
        if self.target.local:
            import boto3

            s3 = boto3.client(
                "s3",
                endpoint_url=self.target.s3_endpoint,
                region_name=self.target.region,
                aws_access_key_id="local",
                aws_secret_access_key="local",
            )
            started = time.perf_counter()
            s3.put_object(Bucket=self.target.bucket, Key=key, Body=f, ContentLength=size)
            return Answer(200, "", (time.perf_counter() - started) * 1000, {})
        a = self.call("POST", "/uploads", {"key": key, "sizeBytes": size})
        require(contract.check_upload(a.status, a.body, key, size), a)
        put = self.client.put_presigned(a.body["url"], f, size, a.body.get("headers"), label)
        if put.status != 200:
            raise StepFailed([f"presigned PUT answered HTTP {put.status}: {str(put.body)[:200]}"], put)
        return put

    def s3_key_steps(self) -> None:
        key = f"models/{self.name('s3key.bin')}"
        # Half the presigned upload's size: big enough for a throughput figure.
        size = max(1, self.large_bytes // 2)

        def upload() -> StepResult:
            f, sha = random_file(size)
            with f:
                put = self.put_object(key, f, size, "s3 key")
            self.state.s3_object = Content(size, sha)
            how = "moto endpoint" if self.target.local else "presigned URL"
            return StepResult("", PASS, put.latency_ms, put.status, f"{size} bytes via {how}")

        def ingest() -> StepResult:
            a = self.call("POST", "/ingest", {"key": key})
            assert self.state.s3_object is not None  # guaranteed by the step's needs
            if a.status == 202:  # over SYNC_INGEST_MAX_BYTES: handed to the S3-event function
                require(contract.check_accepted(a.status, a.body, key), a)
                self.state.accepted = a.body
                return StepResult("", PASS, a.latency_ms, a.status, f"accepted, statusUrl={a.body['statusUrl']}")
            # The bucket's S3 event may have ingested it first: 'exists' is as right as 'created'.
            require(contract.check_ingest(a.status, a.body, size=size, s3_key=key, statuses=("created", "exists")), a)
            self.state.s3_model = Stored(self.state.s3_object, a.body["fileId"])
            return StepResult(
                "",
                PASS,
                a.latency_ms,
                a.status,
                f"status={a.body['status']} s3Key={key}",
                metrics={"bytes": size, "ingestStatus": a.body["status"]},
            )

        def land() -> StepResult:
            accepted, content = self.state.accepted, self.state.s3_object
            if accepted is None or content is None:
                if self.state.s3_model is None:
                    return StepResult("", SKIPPED, detail="needs the ingest by key from an earlier step")
                return StepResult("", NOT_APPLICABLE, detail="ingested synchronously (under SYNC_INGEST_MAX_BYTES)")
            started = time.perf_counter()
            a, states = self.poll(accepted["statusUrl"], lambda b: b.get("state") in ("ready", "failed"))
            name = key.split("/", 1)[1]
            require(
                contract.check_model(a.status, a.body, name, sha256=content.sha256, size=size, states=("ready",)), a
            )
            self.state.s3_model = Stored(content, a.body["fileId"])
            waited = (time.perf_counter() - started) * 1000
            seen = " -> ".join(states)
            return StepResult("", PASS, waited, a.status, f"{seen} after {waited:.0f} ms, version {a.body['version']}")

        self.step("upload object to the bucket", "upload", upload)
        self.step("ingest by S3 key", "ingest", ingest, needs={"the uploaded object": self.state.s3_object})
        self.step("async ingest: poll statusUrl until ready", "event", land)
        self.step(
            "predict model ingested by key",
            "predict",
            lambda: self.predict_opaque(key.split("/", 1)[1], self.state.s3_model),
            needs={"the model ingested by key": self.state.s3_model},
        )

    def poll(self, path: str, done: Callable[[dict[str, Any]], bool]) -> tuple[Answer, list[str]]:
        """GET ``path`` until ``done(body)``; the states seen on the way (e.g. pending -> ready)."""
        deadline = time.monotonic() + self.land_timeout
        states: list[str] = []
        while True:
            a = self.call("GET", path)
            state = a.body.get("state") if a.status == 200 and isinstance(a.body, dict) else f"HTTP {a.status}"
            if not states or states[-1] != state:
                states.append(str(state))
            if a.status == 200 and isinstance(a.body, dict) and done(a.body):
                return a, states
            if a.status not in (200, 404):
                require(contract.check_model(a.status, a.body, None), a)
            if time.monotonic() > deadline:
                raise StepFailed([f"{path}: not done after {self.land_timeout:.0f}s (seen {' -> '.join(states)})"], a)
            time.sleep(0.25)

    def failure_steps(self) -> None:
        """Ingests that fail, visibly: on GET /models/{name} and in GET /models.

        Only the local target can put such objects in the bucket (POST
        /uploads refuses both up front); elsewhere the steps are n/a.
        """
        too_large = f"models/{self.name('too-large.bin')}"
        # Over MAX_NAME_BYTES (200): S3 takes the key, the store cannot name it.
        unstorable = f"models/{self.name('x' * 200)}.bin"

        def upload() -> StepResult:
            if not self.target.local:
                return StepResult("", NOT_APPLICABLE, detail="needs direct bucket access (local target only)")
            limit = local_max_ingest_bytes()
            with tempfile.TemporaryFile() as f:
                block = bytes(1024 * 1024)
                for _ in range(limit // len(block)):
                    f.write(block)
                f.write(bytes(limit % len(block) + 1))
                f.seek(0)
                a = self.put_object(too_large, f, limit + 1, "too large")
            with tempfile.TemporaryFile() as f:
                f.write(b"unstorable name")
                f.seek(0)
                self.put_object(unstorable, f, 15, "unstorable")
            self.state.failed_uploads = {"too large": too_large, "unstorable": unstorable}
            return StepResult(
                "",
                PASS,
                a.latency_ms,
                a.status,
                f"{limit + 1} bytes (MAX_INGEST_BYTES + 1) and a {len(unstorable.encode())}-byte key",
            )

        def failed_state() -> StepResult:
            name = too_large.split("/", 1)[1]
            a, states = self.poll(f"/models/{name}", lambda b: b.get("state") == "failed")
            require(contract.check_model(a.status, a.body, name, states=("failed",)), a)
            if a.body["error"]["error"] != "FILE_TOO_LARGE":
                raise StepFailed([f"error {a.body['error']['error']}, expected FILE_TOO_LARGE"], a)
            return StepResult("", PASS, a.latency_ms, a.status, f"failed: {a.body['error']['message']}"[:120])

        def listed() -> StepResult:
            a, _ = self.poll("/models", lambda b: any(m.get("key") == unstorable[:1024] for m in b.get("models", [])))
            require(contract.check_model_list(a.status, a.body), a)
            entry = next(m for m in a.body["models"] if m.get("key") == unstorable)
            mine = [m for m in a.body["models"] if (m.get("name") or "").startswith(self.name(""))]
            problems = [] if entry["state"] == "failed" and entry["name"] is None else [f"entry {entry!r:.200}"]
            if not any(m["name"] == too_large.split("/", 1)[1] and m["state"] == "failed" for m in mine):
                problems.append("the too-large model is not listed as failed")
            require(problems, a)
            return StepResult("", PASS, a.latency_ms, a.status, f"id={entry['id']} {entry['error']['error']}")

        self.step("failure: objects the store cannot take, in S3", "failure", upload)
        uploaded = {"the failing uploads": self.state.failed_uploads}
        self.step("failure: GET /models/{name} is failed + error", "failure", failed_state, needs=uploaded)
        self.step("failure: GET /models lists both failures", "failure", listed, needs=uploaded)

    def presigned_steps(self) -> None:
        name = self.name("large.bin")
        key = f"models/{name}"
        size = self.large_bytes
        f, sha = random_file(size)
        try:

            def presign() -> StepResult:
                a = self.call("POST", "/uploads", {"key": key, "sizeBytes": size})
                require(contract.check_upload(a.status, a.body, key, size), a)
                self.state.upload = a.body
                return StepResult("", PASS, a.latency_ms, a.status, f"expiresIn={a.body['expiresIn']}s")

            def put() -> StepResult:
                f.seek(0)
                up = self.state.upload
                assert up is not None  # guaranteed by the step's needs
                a = self.client.put_presigned(up["url"], f, size, up.get("headers"), f"PUT {name}")
                if a.status != 200:
                    raise StepFailed([f"presigned PUT answered HTTP {a.status}: {str(a.body)[:200]}"], a)
                self.state.put_done = time.perf_counter()
                mbps = size / 1048576 / (a.latency_ms / 1000)
                return StepResult(
                    "",
                    PASS,
                    a.latency_ms,
                    a.status,
                    f"{size} bytes at {mbps:.1f} MiB/s",
                    metrics={"bytes": size, "MiBps": round(mbps, 2)},
                )

            def land() -> StepResult:
                deadline = time.monotonic() + self.land_timeout
                polls, last = 0, None
                while True:
                    a = self.call("GET", f"/models/{name}")
                    polls += 1
                    if a.status == 200 and isinstance(a.body, dict) and a.body.get("sha256") == sha:
                        break
                    if a.status != 404 and a.status != 200:
                        require(contract.check_model(a.status, a.body, name), a)
                    last = a
                    if time.monotonic() > deadline:
                        raise StepFailed(
                            [f"model not landed after {self.land_timeout:.0f}s (last answer HTTP {last.status})"], last
                        )
                    time.sleep(0.25)
                require(contract.check_model(a.status, a.body, name, sha256=sha, size=size), a)
                assert self.state.put_done is not None  # guaranteed by the step's needs
                waited = (time.perf_counter() - self.state.put_done) * 1000
                self.state.large = Stored(Content(size, sha), a.body["fileId"])
                return StepResult(
                    "",
                    PASS,
                    waited,
                    a.status,
                    f"landed after {waited:.0f} ms, {polls} polls, version {a.body['version']}",
                    metrics={"bytes": size, "polls": polls},
                )

            self.step("uploads: presigned PUT URL", "upload", presign)
            self.step(
                f"uploads: PUT {size // 1048576} MiB to S3", "upload", put, needs={"the upload URL": self.state.upload}
            )
            self.step("uploads: S3 event lands the model", "event", land, needs={"the PUT": self.state.put_done})
            for label in ("cold", "warm"):
                self.step(
                    f"predict uploaded model ({label})",
                    "predict",
                    lambda: self.predict_opaque(name, self.state.large),
                    needs={"the landed model": self.state.large},
                )
        finally:
            f.close()

    def onnx_steps(self) -> None:
        built = self.build_onnx()
        if built is None:
            self.record(
                StepResult("predict ONNX model", SKIPPED, detail="skipped: onnx not installed", category="predict")
            )
            return
        model_bytes, inputs, expected, shape = built
        name = self.name("linear.onnx")

        def ingest() -> StepResult:
            a = self.call(
                "POST",
                "/ingest",
                {"data": base64.b64encode(model_bytes).decode(), "encoding": "base64", "filename": name},
            )
            require(contract.check_ingest(a.status, a.body, size=len(model_bytes), statuses=("created",)), a)
            self.state.onnx_file_id = a.body["fileId"]
            return StepResult("", PASS, a.latency_ms, a.status, f"{len(model_bytes)} bytes (base64)")

        def predict() -> StepResult:
            file_id = self.state.onnx_file_id
            a = self.call("POST", "/predict", {"fileId": file_id, "model": name, "inputs": inputs})
            require(contract.check_predict(a.status, a.body, file_id), a)
            require(contract.check_tensor(a.body["result"], "y", expected, shape), a)
            return self._predict_result(a)

        self.step("ingest ONNX model (inline base64)", "ingest", ingest)
        self.step("predict ONNX model (cold)", "predict", predict, needs={"the ONNX model": self.state.onnx_file_id})
        for i in range(1, self.warm_repeats + 1):
            self.step(
                f"predict ONNX model (warm {i})", "predict", predict, needs={"the ONNX model": self.state.onnx_file_id}
            )
        self.job_steps(name)

    def job_steps(self, model: str) -> None:
        """A small batch job on the ONNX model: 100 rows in blocks of 10, results downloaded by URL."""
        import io

        import numpy as np

        rows = np.arange(300, dtype=np.float32).reshape(100, 3) / 100
        w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
        expected = rows @ w + np.array([0.5, -0.5], np.float32)
        buf = io.BytesIO()
        np.save(buf, rows)
        data, input_name = buf.getvalue(), self.name("rows.npy")
        job: dict[str, Any] = {}

        def ingest_rows() -> StepResult:
            body = {"data": base64.b64encode(data).decode(), "encoding": "base64", "filename": f"inputs/{input_name}"}
            a = self.call("POST", "/ingest", body)
            require(contract.check_ingest(a.status, a.body, size=len(data), statuses=("created",)), a)
            return StepResult("", PASS, a.latency_ms, a.status, f"{len(data)} bytes, 100 rows")

        def submit() -> StepResult:
            a = self.call("POST", "/jobs", {"model": model, "input": f"inputs/{input_name}", "batchSize": 10})
            problems = [] if a.status == 202 else [f"POST /jobs: HTTP {a.status}: {a.body}"]
            if not problems and (a.body.get("blocks") != 10 or a.body.get("state") != "pending"):
                problems.append(f"POST /jobs: expected 10 pending blocks, got {a.body}")
            require(problems, a)
            job.update(a.body)
            return StepResult("", PASS, a.latency_ms, a.status, f"job {a.body['jobId']}: 10 blocks")

        def finish() -> StepResult:
            started, polls, done_seen = time.perf_counter(), 0, []
            while True:
                a = self.call("GET", job["statusUrl"])
                polls += 1
                require([] if a.status == 200 else [f"GET {job['statusUrl']}: HTTP {a.status}"], a)
                done_seen.append(a.body["rows"]["done"])
                if a.body["state"] in ("succeeded", "failed", "cancelled") or time.perf_counter() - started > 120:
                    break
                time.sleep(0.25)
            problems = [] if a.body["state"] == "succeeded" else [f"job ended {a.body['state']}: {a.body['errors']}"]
            if done_seen != sorted(done_seen):
                problems.append(f"progress went backwards: {done_seen}")
            require(problems, a)
            job["results"] = a.body["results"]
            waited = (time.perf_counter() - started) * 1000
            return StepResult("", PASS, waited, a.status, f"succeeded after {polls} polls", metrics={"polls": polls})

        def download() -> StepResult:
            import requests

            started = time.perf_counter()
            r = requests.get(job["results"]["y"]["url"], timeout=30)
            got = np.load(io.BytesIO(r.content)) if r.status_code == 200 else None
            problems = [] if got is not None else [f"presigned GET: HTTP {r.status_code}"]
            if got is not None and not np.allclose(got, expected, atol=1e-5):
                problems.append("the assembled output differs from x @ W + b")
            require(problems)
            return StepResult(
                "", PASS, (time.perf_counter() - started) * 1000, r.status_code, f"{got.shape} rows match"
            )

        self.step(
            "job: ingest a 100-row .npy input", "job", ingest_rows, needs={"the ONNX model": self.state.onnx_file_id}
        )
        self.step(
            "job: POST /jobs splits it into 10 blocks", "job", submit, needs={"the ONNX model": self.state.onnx_file_id}
        )
        self.step("job: GET /jobs/{id} until succeeded", "job", finish, needs={"the job": job.get("statusUrl")})
        self.step(
            "job: the presigned result URL downloads x @ W + b", "job", download, needs={"results": job.get("results")}
        )

    def catalogue(self) -> StepResult:
        a = self.call("GET", "/models")
        require(contract.check_model_list(a.status, a.body), a)
        mine = {m["name"]: m for m in a.body["models"] if (m["name"] or "").startswith(self.name(""))}
        problems = []
        state = self.state
        for content, model in (
            (state.opaque.content if state.opaque else None, self.name("opaque.pt")),
            (state.s3_object, self.name("s3key.bin")),
            (state.large.content if state.large else None, self.name("large.bin")),
        ):
            if content is not None:
                if model not in mine:
                    problems.append(f"'{model}' missing from GET /models")
                elif mine[model]["sha256"] != content.sha256 or mine[model]["sizeBytes"] != content.size:
                    problems.append(f"'{model}' listed with another size or sha256")
        require(problems, a)
        return StepResult("", PASS, a.latency_ms, a.status, f"{a.body['count']} models, {len(mine)} from this run")

    def delete_steps(self) -> None:
        """Delete the (warm) inline model: 200 deleted, then 404 everywhere."""
        name = self.name("opaque.pt")
        path = "/models/" + quote(name, safe="")

        def delete() -> StepResult:
            a = self.call("DELETE", path)
            problems = [] if a.status == 200 and isinstance(a.body, dict) else [f"status {a.status}: {a.body!r:.200}"]
            if not problems and (a.body.get("status") != "deleted" or a.body.get("key") != f"models/{name}"):
                problems.append(f"unexpected body {a.body!r:.200}")
            require(problems, a)
            self.state.deleted = name
            return StepResult("", PASS, a.latency_ms, a.status, f"deleted models/{name}")

        def gone() -> StepResult:
            listed = self.call("GET", "/models")
            require(contract.check_model_list(listed.status, listed.body), listed)
            if any(m["name"] == name for m in listed.body["models"]):
                raise StepFailed([f"'{name}' still listed by GET /models"], listed)
            one = self.call("GET", path)
            require(contract.check_error(one.status, one.body, "NOT_FOUND"), one)
            return StepResult("", PASS, one.latency_ms, one.status, "GET /models and GET /models/{name}: gone")

        def predict() -> StepResult:
            a = self.call("POST", "/predict", {"fileId": "after-delete", "model": name})
            require(contract.check_error(a.status, a.body, "NOT_FOUND"), a)
            return StepResult("", PASS, a.latency_ms, a.status, "the warm model is not served: 404")

        self.step(
            "delete: DELETE /models/{name} -> 200 deleted",
            "delete",
            delete,
            needs={"the inline model": self.state.opaque},
        )
        deleted = {"the deleted model": self.state.deleted}  # set by the step above
        self.step("delete: model gone from GET /models -> 404", "delete", gone, needs=deleted)
        self.step("delete: predict with the deleted (warm) model -> 404", "delete", predict, needs=deleted)

    def error_steps(self) -> None:
        def expect(code: str, method: str, path: str, body: Any = None, **kw: Any) -> Callable[[], StepResult]:
            def run() -> StepResult:
                a = self.call(method, path, body, **kw)
                require(contract.check_error(a.status, a.body, code), a)
                return StepResult("", PASS, a.latency_ms, a.status, f"{code}: {a.body['message']}"[:120])

            return run

        missing = self.name("missing.pt")
        self.step(
            "error: malformed JSON -> 400", "error", expect("INVALID_REQUEST", "POST", "/ingest", raw="{not json")
        )
        self.step(
            "error: ingest without key or data -> 400",
            "error",
            expect("INVALID_REQUEST", "POST", "/ingest", {"filename": "x.pt"}),
        )
        self.step(
            "error: predict without model -> 400",
            "error",
            expect("INVALID_REQUEST", "POST", "/predict", {"fileId": "x"}),
        )
        self.step(
            "error: traversal in filename -> 400",
            "error",
            expect("INVALID_REQUEST", "POST", "/ingest", {"data": "x", "filename": "../etc/passwd"}),
        )
        self.step(
            "error: ingest missing S3 key -> 404",
            "error",
            expect("S3_NOT_FOUND", "POST", "/ingest", {"key": f"models/{missing}"}),
        )
        # 5 TiB is S3's own object limit: above any MAX_INGEST_BYTES, refused before a byte moves.
        self.step(
            "error: upload above MAX_INGEST_BYTES -> 413",
            "error",
            expect("FILE_TOO_LARGE", "POST", "/uploads", {"key": f"models/{missing}", "sizeBytes": 5 * 2**40}),
        )
        self.step(
            "error: predict unknown model -> 404",
            "error",
            expect("NOT_FOUND", "POST", "/predict", {"fileId": missing, "model": missing}),
        )
        self.step("error: GET unknown model -> 404", "error", expect("NOT_FOUND", "GET", f"/models/{missing}"))
        for code, why in UNPROVOKABLE.items():
            self.record(
                StepResult(
                    f"error: {code} -> {contract.ERROR_STATUS[code]}",
                    NOT_APPLICABLE,
                    detail=f"not provokable on a healthy stack: {why}",
                    category="error",
                )
            )
