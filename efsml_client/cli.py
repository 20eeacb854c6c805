"""``python -m efsml_client <command>``: push, models, predict, versions, rollback, delete, jobs.

Results go to stdout as JSON; errors to stderr as one JSON line in the
service's shape (``{"error": CODE, "message": ...}``), with these exit codes:

0 done; 1 the service answered an error; 2 bad usage or a local file that
cannot be read; 3 an ingest failed (``push``) or a job failed or was
cancelled (``jobs wait``); 4 a wait ran past ``--wait``; 5 the service (or
S3) could not be reached or did not answer within ``--timeout``; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from efsml_client import client as api
from efsml_client import progress, tensors

EXIT_CODES: dict[type[api.ClientError], int] = {
    api.ServiceError: 1,
    api.ClientError: 2,
    api.IngestFailed: 3,
    api.WaitTimedOut: 4,
    api.Unreachable: 5,
}
EXIT_JOB_FAILED = 3
EXIT_INTERRUPTED = 130


def _common(parser: argparse.ArgumentParser, top: bool) -> None:
    # The same options before or after the command; below the top level they
    # default to SUPPRESS so that a subcommand does not reset a value given before it.
    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("service")
    group.add_argument("--url", default=default(None), help="the API's base URL (EFSML_URL; http://127.0.0.1:8000)")
    group.add_argument(
        "--api-key", default=default(None), help="the deployed API's key, sent as x-api-key (EFSML_API_KEY)"
    )
    group.add_argument(
        "--timeout", type=float, default=default(None), help=f"seconds per HTTP request ({api.DEFAULT_TIMEOUT:g})"
    )
    group.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=default(None),
        help="progress bars on uploads and downloads (default: when stderr is a terminal)",
    )


def parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    top = argparse.ArgumentParser(
        prog="python -m efsml_client",
        description="Client for the efs-ml service (docs/client.md).",
        epilog="Exit codes: 0 ok, 1 service error, 2 usage or local file, 3 ingest or job failed, "
        "4 wait timed out, 5 service unreachable.",
    )
    _common(top, top=True)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, group: Any = commands) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, help=help, description=help)
        _common(sub, top=False)
        return sub

    push = command("push", "upload a model (or --input) of any size, wait until it is ready, print its signature")
    push.add_argument("file", type=Path)
    push.add_argument("--name", help="the name on the service (default: the file's name)")
    push.add_argument("--input", action="store_true", help="an input (inputs/<name>), not a model")
    push.add_argument("--wait", type=float, default=600.0, help="seconds to wait for ready (600)")

    models = command("models", "list every model with its state (all pages)")
    models.add_argument("--limit", type=int, help="entries per page asked of the service")

    show = command("show", "one model's (or --input's) state and manifest")
    show.add_argument("name")
    show.add_argument("--input", action="store_true")

    predict = command("predict", "run a model on an input through /v2 infer (binary tensors) and print its outputs")
    predict.add_argument("model")
    predict.add_argument(
        "input",
        help="a .npy (the model's one input), a .npz (inputs by name), a .json file or inline JSON "
        '({"<input>": [[...]]})',
    )
    predict.add_argument("--version", type=int, help="a kept version (default: the current one)")
    predict.add_argument("--output", action="append", dest="outputs", help="an output to return (repeatable)")
    predict.add_argument("--save", type=Path, help="also write the outputs to this .npz")

    versions = command("versions", "the model's kept versions, newest first")
    versions.add_argument("name")

    rollback = command("rollback", "make a kept version current again")
    rollback.add_argument("name")
    rollback.add_argument("version", type=int)

    delete = command("delete", "delete a model (or --input) from S3 and the store")
    delete.add_argument("name")
    delete.add_argument("--input", action="store_true")

    jobs = command("jobs", "batch jobs (docs/jobs.md)")
    job_commands = jobs.add_subparsers(dest="job_command", required=True, metavar="JOB_COMMAND")

    def job_command(name: str, help: str) -> argparse.ArgumentParser:
        return command(name, help, job_commands)

    submit = job_command("submit", "run a model over a stored .npy input (or every input under a prefix)")
    submit.add_argument("model")
    submit.add_argument("input", help="inputs/<name>.npy, or a prefix with --prefix")
    submit.add_argument("--prefix", action="store_true", help="INPUT is a prefix: one block per matching input")
    submit.add_argument("--batch-size", type=int)
    submit.add_argument("--version", type=int)
    submit.add_argument("--output", action="append", dest="outputs", help="an output to keep (repeatable)")
    submit.add_argument("--wait", type=float, help="then wait this many seconds for it to finish")
    submit.add_argument("--download", type=Path, help="with --wait: download the results into this directory")

    status = job_command("status", "a job's state and progress")
    status.add_argument("job_id")

    wait = job_command("wait", "wait until a job finishes; exit 3 if it failed or was cancelled")
    wait.add_argument("job_id")
    wait.add_argument("--wait", type=float, default=3600.0, help="seconds to wait (3600)")
    wait.add_argument("--download", type=Path, help="download the results into this directory")

    listing = job_command("list", "jobs, newest first (all pages)")
    listing.add_argument("--limit", type=int)

    cancel = job_command("cancel", "cancel a job: blocks not yet started are skipped")
    cancel.add_argument("job_id")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the process's exit code."""
    args = parser().parse_args(argv)
    service = api.Client.from_env(
        url=args.url, api_key=args.api_key, timeout=args.timeout, progress=progress.wanted(args.progress)
    )
    try:
        return COMMANDS[args.command](service, args)
    except api.ClientError as e:
        print(json.dumps(e.body()), file=sys.stderr)
        return next(code for kind, code in EXIT_CODES.items() if type(e) is kind)
    except KeyboardInterrupt:
        # Ctrl-C: a push already uploaded still lands (its S3 event ingests it); only the wait stops.
        print(json.dumps({"error": "INTERRUPTED", "message": "interrupted"}), file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (`... | head`): not an error of the command; keep Python's
        # exit-time flush from raising again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _print(doc: Any) -> None:
    print(json.dumps(doc, indent=2))


def _kind(args: argparse.Namespace) -> str:
    return "inputs" if getattr(args, "input", False) is True else "models"


def _push(service: api.Client, args: argparse.Namespace) -> int:
    entry = service.push(args.file, args.name, _kind(args), wait=args.wait)
    shown = ("name", "key", "version", "sizeBytes", "sha256", "format", "signature")
    _print({k: entry[k] for k in shown if entry.get(k) is not None})  # an input has no format
    return 0


def _models(service: api.Client, args: argparse.Namespace) -> int:
    _print(list(service.models(args.limit)))
    return 0


def _show(service: api.Client, args: argparse.Namespace) -> int:
    _print(service.model(args.name, _kind(args)))
    return 0


def _predict(service: api.Client, args: argparse.Namespace) -> int:
    meta = service.metadata(args.model, args.version)
    inputs = read_inputs(args.input, meta)
    result = service.infer(args.model, inputs, args.outputs, args.version)
    if args.save:
        np.savez(args.save, **{o["name"]: o["data"] for o in result["outputs"]})
    _print(tensors.as_json(result))
    return 0


def read_inputs(source: str, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """The named input arrays from a .npy/.npz/.json file or inline JSON, typed by the model's metadata."""
    declared = {i["name"]: i for i in meta.get("inputs", [])}
    path = Path(source)
    try:
        if source.endswith(".npy"):
            if len(declared) != 1:
                raise api.ClientError(
                    f"a .npy feeds a model of one input; this one has {sorted(declared)}: use a .npz or JSON"
                )
            ((name, spec),) = declared.items()
            return {name: _to_float_input(np.load(path, allow_pickle=False), spec)}
        if source.endswith(".npz"):
            with np.load(path, allow_pickle=False) as archive:
                return {name: _to_float_input(archive[name], declared.get(name, {})) for name in archive.files}
        text = path.read_text() if source.endswith(".json") else source
    except (OSError, ValueError) as e:
        raise api.ClientError(f"cannot read input {source}: {e}") from None
    try:
        values = json.loads(text)
    except ValueError as e:
        raise api.ClientError(f"input is neither a .npy, .npz nor JSON: {e}") from None
    if not isinstance(values, dict):
        raise api.ClientError('JSON input must be an object of input name -> values: {"x": [[1, 2, 3]]}')
    arrays = {}
    for name, data in values.items():
        datatype = declared.get(name, {}).get("datatype")
        dtype = object if datatype == "BYTES" else tensors.NUMPY_OF.get(datatype or "", None)
        arrays[name] = np.asarray(data, dtype=dtype)
    return arrays


def _to_float_input(array: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Numbers for a float input sent as its own dtype: a float64 .npy for an FP32 input
    travels as half the bytes. The service would cast them the same way; other casts
    (to integers, with their range checks) are left to it."""
    dtype = tensors.NUMPY_OF.get(spec.get("datatype") or "")
    if dtype is not None and np.dtype(dtype).kind == "f" and array.dtype.kind in "fiu":
        return array.astype(dtype, copy=False)
    return array


def _versions(service: api.Client, args: argparse.Namespace) -> int:
    _print(service.versions(args.name))
    return 0


def _rollback(service: api.Client, args: argparse.Namespace) -> int:
    _print(service.rollback(args.name, args.version))
    return 0


def _delete(service: api.Client, args: argparse.Namespace) -> int:
    _print(service.delete(args.name, _kind(args)))
    return 0


def _jobs(service: api.Client, args: argparse.Namespace) -> int:
    if args.job_command == "submit":
        body: dict[str, Any] = {"model": args.model, ("inputPrefix" if args.prefix else "input"): args.input}
        if args.batch_size is not None:
            body["batchSize"] = args.batch_size
        if args.version is not None:
            body["version"] = args.version
        if args.outputs:
            body["outputs"] = args.outputs
        submitted = service.submit_job(body)
        if args.wait is None:
            _print(submitted)
            return 0
        return _finished(service, service.wait_job(submitted["jobId"], args.wait), args.download)
    if args.job_command == "status":
        _print(service.job(args.job_id))
    elif args.job_command == "wait":
        return _finished(service, service.wait_job(args.job_id, args.wait), args.download)
    elif args.job_command == "list":
        _print(list(service.jobs(args.limit)))
    elif args.job_command == "cancel":
        _print(service.cancel_job(args.job_id))
    return 0


def _finished(service: api.Client, status: dict[str, Any], download: Path | None) -> int:
    if download is not None and status.get("state") == "succeeded":
        download.mkdir(parents=True, exist_ok=True)
        for result in (status.get("results") or {}).values():
            target = download / Path(result["s3Key"]).name
            service.download(result["url"], target, result.get("sizeBytes"), result.get("sha256"))
            result["downloaded"] = str(target)
    _print(status)
    return 0 if status.get("state") == "succeeded" else EXIT_JOB_FAILED


COMMANDS = {
    "push": _push,
    "models": _models,
    "show": _show,
    "predict": _predict,
    "versions": _versions,
    "rollback": _rollback,
    "delete": _delete,
    "jobs": _jobs,
}
