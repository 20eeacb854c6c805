"""The service's HTTP API as Python calls, on ``requests``.

Every call raises :class:`ServiceError` when the service answers with an
error (its documented body: ``{"error": CODE, "message", ...}``, or the
``/v2`` routes' ``{"error": "<message>", "code", ...}``) and
:class:`ClientError` when it cannot be reached or a local file is wrong.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import requests

from efsml_client import progress, tensors

DEFAULT_URL = "http://127.0.0.1:8000"
#: Seconds for one HTTP request (connect and each read), not for a whole wait.
DEFAULT_TIMEOUT = 30.0
#: Chunk read from a file per send and per download write.
CHUNK = progress.CHUNK


class ClientError(Exception):
    """The request could not be made or answered: connection refused, a timeout, a bad local file."""

    code = "CLIENT_ERROR"

    def body(self) -> dict[str, Any]:
        """The error in the service's shape, for printing."""
        return {"error": self.code, "message": str(self)}


class Unreachable(ClientError):
    """The service (or S3, for an upload or a download) could not be reached or did not answer in time."""

    code = "UNREACHABLE"


class ServiceError(ClientError):
    """The service answered an error: ``status`` and its JSON ``body`` as sent."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self._body = body
        # /v2 puts the message in "error" and the code in "code".
        self.code = str(body.get("code") or body.get("error") or f"HTTP_{status}")
        message = body.get("message") if "message" in body else body.get("error")
        super().__init__(f"{self.code}: {message} (HTTP {status})")

    def body(self) -> dict[str, Any]:
        return {**self._body, "status": self.status}


class IngestFailed(ClientError):
    """The pushed object did not land: its name's state is ``failed`` with this ``error``."""

    code = "INGEST_FAILED"

    def __init__(self, name: str, error: dict[str, Any]) -> None:
        self.error = error
        super().__init__(f"{name}: {error.get('error')}: {error.get('message')}")

    def body(self) -> dict[str, Any]:
        return dict(self.error)


class WaitTimedOut(ClientError):
    """A wait (for ``ready``, for a job) ran past its limit."""

    code = "WAIT_TIMED_OUT"


def _path(name: str) -> str:
    """A store name as one path segment, percent-encoded once (``my model.onnx`` -> ``my%20model.onnx``)."""
    return quote(name, safe="")


def sha256_of(path: Path) -> str:
    """The file's sha256, as the service records it in a manifest."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Client:
    """One service: its base ``url``, the deployed API's ``api_key`` (``x-api-key``), a per-request timeout."""

    url: str = DEFAULT_URL
    api_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    progress: bool = False
    poll_interval: float = 0.5

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self.session = requests.Session()
        if self.api_key:
            self.session.headers["x-api-key"] = self.api_key

    @classmethod
    def from_env(cls, **overrides: Any) -> Client:
        """A client configured from ``EFSML_URL`` and ``EFSML_API_KEY``, then ``overrides`` (not None)."""
        values: dict[str, Any] = {"url": os.environ.get("EFSML_URL", DEFAULT_URL)}
        if os.environ.get("EFSML_API_KEY"):
            values["api_key"] = os.environ["EFSML_API_KEY"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    # -- HTTP --------------------------------------------------------------
    def request(self, method: str, path: str, *, json: Any = None, **kwargs: Any) -> requests.Response:
        """One call to the service; an error answer raises ServiceError."""
        try:
            response = self.session.request(method, self.url + path, json=json, timeout=self.timeout, **kwargs)
        except requests.RequestException as e:
            raise Unreachable(f"{method} {self.url}{path}: {e}") from None
        if response.status_code >= 400:
            raise ServiceError(response.status_code, _error_body(response))
        return response

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        """GET ``path`` as JSON."""
        return _json(self.request("GET", path, params={k: v for k, v in params.items() if v is not None}))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON body (requests sends ``Content-Type: application/json``)."""
        return _json(self.request("POST", path, json=body))

    # -- models and inputs -------------------------------------------------
    def models(self, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every model's entry, following ``next`` from page to page."""
        return self.pages("/models", "models", limit)

    def pages(self, path: str, key: str, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """The ``key`` entries of every page of a listing, following its opaque ``next`` token."""
        token: str | None = None
        while True:
            page = self.get(path, limit=limit, next=token)
            yield from page[key]
            token = page.get("next")
            if not token:
                return

    def model(self, name: str, kind: str = "models") -> dict[str, Any]:
        """``GET /models/{name}`` (or ``/inputs/{name}``): state and manifest."""
        return self.get(f"/{kind}/{_path(name)}")

    def versions(self, name: str) -> dict[str, Any]:
        """The model's kept versions, newest first."""
        return self.get(f"/models/{_path(name)}/versions")

    def rollback(self, name: str, version: int) -> dict[str, Any]:
        """Make a kept version current again."""
        return self.post(f"/models/{_path(name)}/rollback", {"version": version})

    def delete(self, name: str, kind: str = "models") -> dict[str, Any]:
        """Delete a model (or input) from S3 and the store."""
        return _json(self.request("DELETE", f"/{kind}/{_path(name)}"))

    def push(self, path: Path, name: str | None = None, kind: str = "models", wait: float = 600.0) -> dict[str, Any]:
        """Upload ``path`` through a presigned URL (any size) and wait until its name is ready with these bytes.

        Returns the name's ready entry (manifest, and for a model its
        ``signature``). A ``failed`` state from this push raises IngestFailed.
        """
        name = name or path.name
        try:
            size = path.stat().st_size
            digest = sha256_of(path)
        except OSError as e:
            raise ClientError(f"cannot read {path}: {e.strerror}") from None
        before = self._state(name, kind)
        upload = self.post("/uploads", {"key": f"{kind}/{name}", "sizeBytes": size})
        self._put(path, size, upload)
        return self.wait_ready(name, kind, digest, before, wait)

    def _state(self, name: str, kind: str) -> dict[str, Any] | None:
        try:
            return self.model(name, kind)
        except ServiceError as e:
            if e.status == 404:
                return None
            raise

    def _put(self, path: Path, size: int, upload: dict[str, Any]) -> None:
        headers = dict(upload.get("headers") or {})
        with open(path, "rb") as f, progress.ReadingFile(f, size, progress.bar(size, path.name, self.progress)) as body:
            try:
                # The presigned URL is S3's: no API key, and its own error body (XML).
                response = requests.request(
                    upload.get("method", "PUT"), upload["url"], data=body, headers=headers, timeout=self.timeout
                )
            except requests.RequestException as e:
                raise Unreachable(f"upload to S3 failed: {e}") from None
        if response.status_code >= 400:
            raise ServiceError(response.status_code, {"error": "S3_UPLOAD_FAILED", "message": response.text[:500]})

    def wait_ready(
        self, name: str, kind: str, sha256: str, before: dict[str, Any] | None, timeout: float
    ) -> dict[str, Any]:
        """Poll until the name is ready with ``sha256``, or fails after ``before`` (its state before the upload)."""
        old_failure = (before or {}).get("error")
        deadline = time.monotonic() + timeout
        while True:
            state = self._state(name, kind)
            if state is not None:
                if state.get("state") == "ready" and state.get("sha256") == sha256:
                    return state
                # A failure recorded before this upload is not this upload's.
                if state.get("state") == "failed" and state.get("error") and state["error"] != old_failure:
                    raise IngestFailed(name, state["error"])
            if time.monotonic() >= deadline:
                seen = state.get("state") if state else "not found"
                raise WaitTimedOut(f"{name} not ready with these bytes within {timeout:g} s (last state: {seen})")
            time.sleep(self.poll_interval)

    # -- inference (/v2, binary tensors) -----------------------------------
    def metadata(self, name: str, version: int | None = None) -> dict[str, Any]:
        """The protocol's model metadata (inputs, outputs, datatypes, shapes)."""
        return self.get(f"/v2/models/{_path(name)}" + (f"/versions/{version}" if version else ""))

    def infer(
        self,
        name: str,
        inputs: dict[str, np.ndarray],
        outputs: list[str] | None = None,
        version: int | None = None,
    ) -> dict[str, Any]:
        """Run the model on ``inputs`` through ``/v2`` infer; each output's ``data`` is a numpy array."""
        path = f"/v2/models/{_path(name)}" + (f"/versions/{version}" if version else "") + "/infer"
        req = tensors.encode_request(inputs, outputs)
        response = self.request("POST", path, data=req.body, headers=req.headers)
        return tensors.decode_response(response.content, response.headers.get(tensors.HEADER_LENGTH))

    # -- batch jobs (docs/jobs.md) -----------------------------------------
    def submit_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /jobs``: ``{"model", "input" | "inputPrefix", "batchSize"?, "outputs"?, "version"?}``."""
        return self.post("/jobs", body)

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}``: state, progress, and results once it succeeded."""
        return self.get(f"/jobs/{_path(job_id)}")

    def jobs(self, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every job, newest first, following ``next``."""
        return self.pages("/jobs", "jobs", limit)

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """``DELETE /jobs/{id}``: blocks not yet started are skipped."""
        return _json(self.request("DELETE", f"/jobs/{_path(job_id)}"))

    def wait_job(self, job_id: str, timeout: float) -> dict[str, Any]:
        """Poll until the job is ``succeeded``, ``failed`` or ``cancelled``; its last status."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.job(job_id)
            if status.get("state") in ("succeeded", "failed", "cancelled"):
                return status
            if time.monotonic() >= deadline:
                raise WaitTimedOut(f"job {job_id} still {status.get('state')} after {timeout:g} s")
            time.sleep(self.poll_interval)

    def download(self, url: str, target: Path, size: int | None = None, sha256: str | None = None) -> Path:
        """Stream a presigned GET ``url`` (a job's result) to ``target``, written whole or not at all.

        With ``sha256`` (a job result's), bytes that do not match are refused and nothing is kept.
        """
        partial = target.with_name(target.name + ".part")
        digest = hashlib.sha256()
        try:
            with requests.get(url, stream=True, timeout=self.timeout) as response:
                if response.status_code >= 400:
                    raise ServiceError(
                        response.status_code, {"error": "S3_DOWNLOAD_FAILED", "message": response.text[:500]}
                    )
                total = size or int(response.headers.get("Content-Length") or 0) or None
                with open(partial, "wb") as out, progress.bar(total, target.name, self.progress) as bar:
                    for chunk in response.iter_content(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
            if sha256 is not None and digest.hexdigest() != sha256:
                raise ClientError(f"{target.name}: downloaded bytes do not match sha256 {sha256}")
            os.replace(partial, target)
        except requests.RequestException as e:
            raise Unreachable(f"download of {target.name} failed: {e}") from None
        finally:
            partial.unlink(missing_ok=True)
        return target


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise ClientError(f"the service answered {response.status_code} with a body that is not JSON") from None
    if not isinstance(body, dict):
        raise ClientError(f"the service answered {response.status_code} with JSON that is not an object")
    return body


def _error_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return body
    return {"error": f"HTTP_{response.status_code}", "message": response.text[:500] or response.reason}
