"""HTTP routes and the S3 handler: parse, call chalicelib, respond."""

import os
from typing import Any

from chalice.app import Chalice, CloudWatchEvent, Rate, Response, S3Event, SQSEvent

from chalicelib import catalog, events, http, observability, oip, preload, removal, retention, versions
from chalicelib.codecs import binary
from chalicelib.config import ConfigError
from chalicelib.edge import get_settings, get_store, model_cache
from chalicelib.errors import EfsWriteFailed
from chalicelib.ingest import Accepted, IngestResult, ingest_bytes, ingest_s3
from chalicelib.jobs import service as jobs
from chalicelib.jobs.dead_letters import handle_dead_letters
from chalicelib.jobs.plan import parse_job
from chalicelib.jobs.worker import handle_records
from chalicelib.names import INPUTS, MODELS
from chalicelib.predict import predict as run_predict
from chalicelib.predict import result_link
from chalicelib.uploads import presign_upload
from chalicelib.validation import (
    InlineIngest,
    parse_ingest,
    parse_predict,
    parse_rollback,
    parse_upload,
    parse_version_param,
)

# Logging is ours (JSON lines with the request id), not Chalice's plain format.
app = Chalice(app_name="efs-ml", configure_logs=False)
try:
    observability.configure_logging(get_settings().log_level)
    observability.configure_metrics(get_settings().metrics_namespace)
except ConfigError:  # reported with the first request; logs must still work
    observability.configure_logging("INFO")
# Registered first = outermost: the observer sees the final, reshaped response.
app.register_middleware(http.observe_requests(app), "http")
app.register_middleware(http.reshape_framework_errors(app), "http")
app.register_middleware(events.observe_events, "s3")

# PRELOAD_MODELS: load the named models during init, bounded by PRELOAD_INIT_SECONDS.
try:
    preload.at_init(get_settings(), get_store, model_cache)
except ConfigError:  # reported with the first request
    pass

# Content types are checked by chalicelib.validation so that a wrong one
# gets the documented error body rather than Chalice's own 415.
ANY = ["*/*"]


@app.route("/ingest", methods=["POST"], content_types=ANY)
@http.endpoint(app)
def ingest() -> Any:
    settings = get_settings()
    req = parse_ingest(http.json_body(app, settings.max_request_bytes), settings.max_ingest_bytes)
    rid = http.request_id(app)
    result: IngestResult | Accepted
    if isinstance(req, InlineIngest):
        result = ingest_bytes(get_store(), settings, req.ref, req.data, request_id=rid)
    else:
        result = ingest_s3(get_store(), settings, req.ref, req.key, sync=True, request_id=rid)
    if isinstance(result, Accepted):  # too large to copy before the gateway's 29 s
        return Response(body=result.to_response(), status_code=202, headers=dict(http.JSON_HEADERS))
    return result.to_response()


@app.route("/predict", methods=["POST"], content_types=ANY)
@http.endpoint(app)
def predict() -> Any:
    settings = get_settings()
    return run_predict(
        get_store(), settings, model_cache(), parse_predict(http.json_body(app, settings.max_request_bytes))
    )


@app.route("/uploads", methods=["POST"], content_types=ANY)
@http.endpoint(app)
def create_upload() -> Any:
    """A presigned S3 PUT URL for objects beyond the request limit (Lambda's 6 MB payload)."""
    settings = get_settings()
    ref, size = parse_upload(http.json_body(app, settings.max_request_bytes), settings.max_ingest_bytes)
    return presign_upload(settings, ref, size)


@app.route("/models", methods=["GET"])
@http.endpoint(app)
def list_models() -> Any:
    """A page of models with their state (``?limit=``, ``?next=``): ready ones
    with their manifest, pending and failed ingests (S3 keys whose names
    cannot be stored included)."""
    return catalog.list_models(get_store(), request=catalog.page_request(http.query_params(app)))


@app.route("/models/{name}", methods=["GET"])
@http.endpoint(app)
def get_model(name: str) -> Any:
    """One model's state (ready | pending | failed) and manifest; 404 NOT_FOUND if unknown.

    ``?version=n``: that kept version's manifest (docs/versions.md)."""
    version = parse_version_param(http.query_params(app))
    if version is not None:
        return versions.get_version(get_store(), name, version)
    return catalog.get_model(get_store(), name)


# -- model versions (docs/versions.md) ------------------------------------------
@app.route("/models/{name}/versions", methods=["GET"])
@http.endpoint(app)
def list_model_versions(name: str) -> Any:
    """The model's kept versions (MODEL_VERSIONS_KEPT), newest first; which is current."""
    return versions.list_versions(get_store(), name)


@app.route("/models/{name}/rollback", methods=["POST"], content_types=ANY)
@http.endpoint(app)
def rollback_model(name: str) -> Any:
    """Make a kept version current again ({"version": n}), atomically, no bytes copied."""
    settings = get_settings()
    version = parse_rollback(http.json_body(app, settings.max_request_bytes))
    return versions.rollback(get_store(), name, version)


@app.route("/models/{name}", methods=["DELETE"])
@http.endpoint(app)
def delete_model(name: str) -> Any:
    """Delete a model: its S3 object, then its copy in the store; 404 NOT_FOUND if unknown."""
    return removal.delete(get_store(), get_settings(), MODELS, name)


@app.route("/inputs/{name}", methods=["DELETE"])
@http.endpoint(app)
def delete_input(name: str) -> Any:
    """Delete an ingested input, as DELETE /models/{name} does a model."""
    return removal.delete(get_store(), get_settings(), INPUTS, name)


@app.route("/inputs/{name}", methods=["GET"])
@http.endpoint(app)
def get_input(name: str) -> Any:
    """GET /models/{name} for an input (the statusUrl of an inputs/ ingest)."""
    return catalog.get_model(get_store(), name, kind=INPUTS)


@app.route("/health", methods=["GET"])
@http.endpoint(app)
def health() -> Any:
    report = get_store().health()
    if not report["writable"]:
        error = EfsWriteFailed("health", "Store is not writable")
        response = http.error_response(app, error)
        response.body["store"] = report
        return response
    return {"status": "ok", "store": report, "bucket": bool(get_settings().bucket)}


# The Open Inference Protocol (KServe V2) REST API, with Triton's binary
# tensor extension: stateless inference beside /predict (docs/protocol.md).
# A binary body is application/octet-stream, one of Chalice's binary types,
# so API Gateway hands it to Lambda base64-encoded and Chalice decodes it.
if binary.CONTENT_TYPE not in app.api.binary_types:
    app.api.binary_types.append(binary.CONTENT_TYPE)


@app.route("/v2/health/live", methods=["GET"])
@oip.endpoint(app)
def v2_live() -> Any:
    return oip.live()


@app.route("/v2/health/ready", methods=["GET"])
@oip.endpoint(app)
def v2_ready() -> Any:
    return oip.ready(get_store())


@app.route("/v2", methods=["GET"])
@oip.endpoint(app)
def v2_server_metadata() -> Any:
    return oip.server_metadata()


@app.route("/v2/models/{name}", methods=["GET"])
@app.route("/v2/models/{name}/versions/{version}", methods=["GET"])
@oip.endpoint(app)
def v2_model_metadata(name: str, version: str | None = None) -> Any:
    return oip.model_metadata(get_store(), model_cache(), oip.model_ref(name), oip.parse_version(version))


@app.route("/v2/models/{name}/ready", methods=["GET"])
@app.route("/v2/models/{name}/versions/{version}/ready", methods=["GET"])
@oip.endpoint(app)
def v2_model_ready(name: str, version: str | None = None) -> Any:
    return oip.model_ready(get_store(), oip.model_ref(name), oip.parse_version(version))


@app.route("/v2/models/{name}/infer", methods=["POST"], content_types=ANY)
@app.route("/v2/models/{name}/versions/{version}/infer", methods=["POST"], content_types=ANY)
@oip.endpoint(app)
def v2_infer(name: str, version: str | None = None) -> Any:
    settings = get_settings()
    ref, number = oip.model_ref(name), oip.parse_version(version)
    return oip.infer(get_store(), settings, model_cache(), ref, number, oip.read_body(app, settings))


# -- batch jobs (docs/jobs.md) ------------------------------------------------
@app.route("/jobs", methods=["POST"], content_types=ANY)
@http.endpoint(app)
def create_job() -> Any:
    """Split a stored input into blocks, one SQS message each: 202 with the job's statusUrl."""
    settings = get_settings()
    req = parse_job(http.json_body(app, settings.max_request_bytes))
    body = jobs.create_job(get_store(), settings, req, http.request_id(app))
    return Response(body=body, status_code=202, headers=dict(http.JSON_HEADERS))


@app.route("/jobs", methods=["GET"])
@http.endpoint(app)
def list_jobs() -> Any:
    """Jobs, newest first: ?limit=N (<= 100) and ?next=<token from the previous page>."""
    return jobs.list_jobs(get_store(), get_settings(), http.query_params(app))


@app.route("/jobs/{job_id}", methods=["GET"])
@http.endpoint(app)
def get_job(job_id: str) -> Any:
    """A job's state, progress, per-block errors and, once succeeded, its results."""
    return jobs.job_status(get_store(), get_settings(), job_id)


@app.route("/jobs/{job_id}", methods=["DELETE"])
@http.endpoint(app)
def cancel_job(job_id: str) -> Any:
    """Cancel a job: blocks not yet started are skipped."""
    return jobs.cancel_job(get_store(), get_settings(), job_id)


@app.route("/results/{file_id}", methods=["GET"])
@http.endpoint(app)
def get_result(file_id: str) -> Any:
    """A stored result's place and a presigned GET URL of its S3 archive."""
    return result_link(get_store(), get_settings(), file_id)


# Last of the routes: HEAD for every GET route, OPTIONS for every path (generic over app.routes).
http.answer_head_and_options(app)


# One block per invocation: a block's run is bounded by the function's
# timeout, and a failure returns only that message (ReportBatchItemFailures,
# set on the mapping by infra/stack.py). The queue's ARN and the mapping's
# maximum concurrency are set at deployment (infra/jobs.tf, infra/stack.py).
@app.on_sqs_message(queue=os.environ.get("JOB_QUEUE_NAME", "efs-ml-jobs"), batch_size=1)
def run_job_blocks(event: SQSEvent) -> Any:
    return handle_records(get_store(), get_settings(), model_cache(), event.to_dict()["Records"])


# The jobs queue's dead letters: a block whose every delivery ended without an
# answer (killed, timed out, never started) is recorded failed on its job.
@app.on_sqs_message(queue=os.environ.get("JOB_DLQ_NAME", "efs-ml-jobs-dlq"), batch_size=10)
def fail_dead_blocks(event: SQSEvent) -> Any:
    return handle_dead_letters(get_store(), get_settings(), event.to_dict()["Records"])


# The bucket name is resolved at package time; the deployment step points the
# notification at the stack's own bucket. inputs/ is added there as a second
# filter on this same function. One function for both event types: one
# subscription per prefix, and created/removed of one key never run apart.
@app.on_s3_event(
    bucket=os.environ.get("MODEL_BUCKET", "efs-ml-local"),
    events=["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
    prefix="models/",
)
def on_object_created(event: S3Event) -> list[dict[str, Any]]:
    created, removed = removal.split(event.to_dict())
    outcomes = []
    if removed["Records"]:
        outcomes += removal.handle_removed(get_store(), get_settings(), removed, event.context)
    if created["Records"] or not removed["Records"]:
        outcomes += events.handle_event(get_store(), get_settings(), created, event.context)
    return [o.__dict__ for o in outcomes]


@app.schedule(Rate(1, unit=Rate.HOURS))
def reclaim_debris(event: CloudWatchEvent) -> dict[str, Any]:
    """Sweep what crashed writers left behind, for every name, without waiting
    for the next writer of that name (names being written are skipped, and
    only files older than DEBRIS_MIN_AGE_SECONDS are touched)."""
    removed = get_store().reclaim(min_age=get_settings().debris_min_age_seconds)
    # Beside it, RESULT_RETENTION_DAYS: results and finished jobs expire (S3: a lifecycle rule).
    return {"removed": removed, "expired": retention.expire(get_store(), get_settings())}
