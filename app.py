"""HTTP routes and the S3 handler: parse, call chalicelib, respond."""

import os

from chalice import Chalice, Rate, Response

from chalicelib import catalog, events, http, observability, preload, removal
from chalicelib.config import ConfigError, get_settings
from chalicelib.errors import EfsWriteFailed
from chalicelib.ingest import Accepted, ingest_bytes, ingest_s3
from chalicelib.names import INPUTS, MODELS
from chalicelib.predict import model_cache
from chalicelib.predict import predict as run_predict
from chalicelib.store import get_store
from chalicelib.uploads import presign_upload
from chalicelib.validation import InlineIngest, parse_ingest, parse_predict, parse_upload

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
def ingest():
    settings = get_settings()
    req = parse_ingest(http.json_body(app, settings.max_request_bytes), settings.max_ingest_bytes)
    rid = http.request_id(app)
    if isinstance(req, InlineIngest):
        result = ingest_bytes(get_store(), settings, req.ref, req.data, request_id=rid)
    else:
        result = ingest_s3(get_store(), settings, req.ref, req.key, sync=True, request_id=rid)
    if isinstance(result, Accepted):  # too large to copy before the gateway's 29 s
        return Response(body=result.to_response(), status_code=202, headers=dict(http.JSON_HEADERS))
    return result.to_response()


@app.route("/predict", methods=["POST"], content_types=ANY)
@http.endpoint(app)
def predict():
    settings = get_settings()
    return run_predict(get_store(), settings, parse_predict(http.json_body(app, settings.max_request_bytes)))


@app.route("/uploads", methods=["POST"], content_types=ANY)
@http.endpoint(app)
def create_upload():
    """A presigned S3 PUT URL for objects beyond the request limit (Lambda's 6 MB payload)."""
    settings = get_settings()
    ref, size = parse_upload(http.json_body(app, settings.max_request_bytes), settings.max_ingest_bytes)
    return presign_upload(settings, ref, size)


@app.route("/models", methods=["GET"])
@http.endpoint(app)
def list_models():
    """Every model with its state: ready ones with their manifest, pending and
    failed ingests (S3 keys whose names cannot be stored included)."""
    return catalog.list_models(get_store())


@app.route("/models/{name}", methods=["GET"])
@http.endpoint(app)
def get_model(name):
    """One model's state (ready | pending | failed) and manifest; 404 NOT_FOUND if unknown."""
    return catalog.get_model(get_store(), name)


@app.route("/models/{name}", methods=["DELETE"])
@http.endpoint(app)
def delete_model(name):
    """Delete a model: its S3 object, then its copy in the store; 404 NOT_FOUND if unknown."""
    return removal.delete(get_store(), get_settings(), MODELS, name)


@app.route("/inputs/{name}", methods=["DELETE"])
@http.endpoint(app)
def delete_input(name):
    """Delete an ingested input, as DELETE /models/{name} does a model."""
    return removal.delete(get_store(), get_settings(), INPUTS, name)


@app.route("/inputs/{name}", methods=["GET"])
@http.endpoint(app)
def get_input(name):
    """GET /models/{name} for an input (the statusUrl of an inputs/ ingest)."""
    return catalog.get_model(get_store(), name, kind=INPUTS)


@app.route("/health", methods=["GET"])
@http.endpoint(app)
def health():
    report = get_store().health()
    if not report["writable"]:
        error = EfsWriteFailed("health", "Store is not writable")
        response = http.error_response(app, error)
        response.body["store"] = report
        return response
    return {"status": "ok", "store": report, "bucket": bool(get_settings().bucket)}


# The bucket name is resolved at package time; the deployment step points the
# notification at the stack's own bucket. inputs/ is added there as a second
# filter on this same function. One function for both event types: one
# subscription per prefix, and created/removed of one key never run apart.
@app.on_s3_event(
    bucket=os.environ.get("MODEL_BUCKET", "efs-ml-local"),
    events=["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
    prefix="models/",
)
def on_object_created(event):
    created, removed = removal.split(event.to_dict())
    outcomes = []
    if removed["Records"]:
        outcomes += removal.handle_removed(get_store(), get_settings(), removed, event.context)
    if created["Records"] or not removed["Records"]:
        outcomes += events.handle_event(get_store(), get_settings(), created, event.context)
    return [o.__dict__ for o in outcomes]


@app.schedule(Rate(1, unit=Rate.HOURS))
def reclaim_debris(event):
    """Sweep what crashed writers left behind, for every name, without waiting
    for the next writer of that name (names being written are skipped, and
    only files older than DEBRIS_MIN_AGE_SECONDS are touched)."""
    return {"removed": get_store().reclaim(min_age=get_settings().debris_min_age_seconds)}
