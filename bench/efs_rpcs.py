"""EFS round trips per route, counted with ``strace -f``, and a modelled production latency.

On a local disk a metadata call costs microseconds; on EFS every call that
reaches the server is a network round trip (AWS's EFS performance table:
~1 ms per read operation, ~2.7 ms per write operation). This module runs each
route in a child interpreter under ``strace -f -y``, counts the store's calls
inside each request only (between two marker syscalls), and models their cost:

* write class, 2.7 ms: ``mkdir``, ``rename*``, ``unlink*``, ``symlink*``, ``link*``,
  ``fsync``/``fdatasync``, ``fcntl`` lock and unlock, ``openat`` with
  ``O_CREAT``, ``close`` of a file opened for writing;
* read class, 1.0 ms: ``openat`` without ``O_CREAT`` (files and directories,
  failed ones too), ``getdents64`` that returned entries, ``readlink*``,
  ``close`` of a file opened read-only;
* free: the ``stat`` family (attribute cache), ``read``/``write`` on an open
  file, and anything outside the store root (imports, ``/proc``, ...);

Every fsync is a write op, a directory's too: the literal rule. The store is
run with the directory-fsync policy it picks on EFS (``STORE_DIR_FSYNC``
``auto`` finds an NFS mount and skips them; here, on a local disk, the bench
forces ``never``, the same decision): on NFS a directory fsync sends no RPC
(Linux ``fs/nfs/dir.c``, ``nfs_fsync_dir``: "All directory operations under
NFS are synchronous, so fsync() is a dummy operation"), each create, rename,
unlink and link having been committed by the server before it replied. The
table still counts directory fsyncs apart (already inside the write ops):
under that policy the count is 0 (``--dir-fsync always`` counts a local
disk's policy instead, for comparison).

Only calls on paths (or descriptors) inside the store root count; a call that
bypasses every Python wrapper (onnxruntime opening the model) is still seen.

The production latency runs each route again without strace, with S3 (moto)
behind a proxy that holds each request ``S3_DELAY_S``, and the route's
modelled EFS time slept: the part counted inside the store write is slept
inside it (where an archive running beside it overlaps it), the rest before
the request. The figure is measured wall time, local CPU included.

Run alone: ``python -m bench.efs_rpcs [--n 40]`` prints the table; ``make
bench`` includes it (``bench/run.py``, rows 8-9). ``rpc_rows`` is also what the
regression test (tests/unit/test_efs_rpcs.py) asserts on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.common import Benchmark, Context, Row
from bench.table import markdown

PROJECT = Path(__file__).resolve().parent.parent
# The directory-fsync policy the store applies on EFS (NFSv4.1): see DirSync.
EFS_DIR_FSYNC = "never"
WRITE_MS = 2.7
READ_MS = 1.0
S3_DELAY_S = 0.020  # per S3 request, through the delaying proxy
MARK = "/efs-rpc-mark"
LIST_NAMES = 2000  # names in the store for the list-page route
LIST_LIMIT = 100
BUCKET = "rpc-bench"


@dataclass(frozen=True)
class Route:
    """A route to count: its target and the fewest round trips its guarantees need."""

    key: str
    what: str
    target_ms: float
    minimal_writes: int
    minimal_reads: int
    minimal_why: str
    archives: bool  # whether the route PUTs its result to S3 (predict)


ROUTES = [
    Route(
        "predict-repeat",
        "predict, repeated request",
        5.0,
        0,
        5,
        "model manifest open+close, fileId lookup, output manifest open+close",
        True,
    ),
    Route(
        "predict-new",
        "predict, new fileId (opaque model)",
        45.0,
        10,
        4,
        "model manifest 2 + fileId lookup 1 + output manifest 1; lock+unlock, object and manifest "
        "each create+fsync+close+rename (10 W)",
        True,
    ),
    Route(
        "ingest-new",
        "ingest, new inline object",
        45.0,
        11,
        1,
        "manifest lookup 1; the 10 W of a durable object+manifest, plus the fileId index entry",
        False,
    ),
    Route(
        "ingest-same",
        "ingest, same content again (exists)",
        6.0,
        0,
        2,
        "manifest open+close; the object's identity from stat (free)",
        False,
    ),
    Route("get-model", "GET /models/{name}", 3.0, 0, 2, "manifest open+close", False),
    Route(
        "delete",
        "DELETE /models/{name}",
        20.0,
        5,
        2,
        "lock; manifest open+close; unlink manifest, index entry, object; unlock",
        False,
    ),
    Route(
        "list-page",
        f"GET /models?limit={LIST_LIMIT} of {LIST_NAMES:,} names",
        250.0,
        0,
        2 * LIST_LIMIT + 8,
        f"the page's {LIST_LIMIT} manifests open+close; listing the manifests' directory (3 reads of entries "
        "here, and the close of its descriptor) and the two status-record directories' (1 read + close each)",
        False,
    ),
    Route(
        "predict-cold-onnx",
        "predict, cold ONNX model (new name)",
        55.0,
        10,
        6,
        "predict-new's 14, plus the model's open+close",
        True,
    ),
    # Versions (docs/design/versions.md): names that already keep 3 versions.
    Route(
        "ingest-replace",
        "ingest, new bytes for a model keeping 3 versions",
        50.0,
        12,
        2,
        "manifest open+close; ingest-new's 11 W less the fileId entry, plus the link keeping the old "
        "current and the unlink of the version falling out (docs/design/versions.md)",
        False,
    ),
    Route(
        "rollback",
        "POST /models/{name}/rollback",
        40.0,
        11,
        2,
        "manifest open+close; lock+unlock 2, link the version to the temp 1, intent "
        "create+fsync+close+rename 4, swap 1, publish link+rename+unlink 3 (+1 W, a link, the first "
        "time the current version is rolled back from)",
        False,
    ),
    Route("get-versions", "GET /models/{name}/versions", 3.0, 0, 2, "manifest open+close", False),
    Route(
        "predict-pinned",
        "predict, pinned older version, repeated request",
        5.0,
        0,
        5,
        "predict-repeat's: the kept versions are in the one manifest",
        True,
    ),
]


def modelled_ms(writes: float, reads: float) -> float:
    return writes * WRITE_MS + reads * READ_MS


# -- the child: run one route N times between markers ---------------------------
def _mark(what: str) -> None:
    try:
        os.open(f"{MARK}/{what}", os.O_RDONLY)
    except OSError:
        pass


def child(route: str, root: str, n: int, latency: tuple[float, float] | None = None) -> None:
    """Run ``route`` ``n`` times (after warming up) in this process, marking each request.

    With ``latency`` (seconds outside / inside the store write), sleep those
    instead and record each request's wall time (S3 is configured then).
    """
    os.environ.update(EFS_ROOT=root, LOG_LEVEL="WARNING")
    os.environ.setdefault("STORE_DIR_FSYNC", EFS_DIR_FSYNC)
    if latency is None:
        os.environ.pop("MODEL_BUCKET", None)
    sys.stdout = open(os.devnull, "w")  # the service's JSON logs
    from chalice.test import Client

    import app

    client = Client(app.app)

    def post(path: str, body: dict[str, Any]) -> None:
        r = client.http.post(path, headers={"Content-Type": "application/json"}, body=json.dumps(body))
        assert r.status_code == 200, (path, r.status_code, r.body)

    def get(path: str) -> None:
        r = client.http.get(path)
        assert r.status_code == 200, (path, r.status_code, r.body)

    def delete(path: str) -> None:
        r = client.http.delete(path)
        assert r.status_code == 200, (path, r.status_code, r.body)

    post("/ingest", {"filename": "m.bin", "data": "opaque model bytes"})
    steps: dict[str, Callable[[int], None]] = {
        "predict-repeat": lambda i: post("/predict", {"fileId": "repeat", "model": "m.bin"}),
        "predict-new": lambda i: post("/predict", {"fileId": f"new-{i}", "model": "m.bin"}),
        "ingest-new": lambda i: post("/ingest", {"filename": f"obj-{i}.bin", "data": f"object {i}"}),
        "ingest-same": lambda i: post("/ingest", {"filename": "same.bin", "data": "same content"}),
        "get-model": lambda i: get("/models/m.bin"),
        "list-page": lambda i: get(f"/models?limit={LIST_LIMIT}"),
        "delete": lambda i: delete(f"/models/del-{i}.bin"),
        "ingest-replace": lambda i: post("/ingest", {"filename": "rep.bin", "data": f"replacement {i}"}),
        "rollback": lambda i: post("/models/rb.bin/rollback", {"version": 1 + i % 2}),
        "get-versions": lambda i: get("/models/rb.bin/versions"),
        "predict-pinned": lambda i: post("/predict", {"fileId": "pinned", "model": "rb.bin", "version": 2}),
        "predict-cold-onnx": lambda i: post(
            "/predict", {"fileId": f"cold-{i}", "model": f"log-{i}.onnx", "inputs": {"x": [1.0, 2.0, 3.0]}}
        ),
    }
    if route == "predict-cold-onnx":
        import base64

        from tests.support.onnx_models import log_model

        data = base64.b64encode(log_model()).decode()
        for i in range(-1, n):
            post("/ingest", {"filename": f"log-{i}.onnx", "data": data, "encoding": "base64"})
    if route in ("ingest-replace", "rollback", "get-versions", "predict-pinned"):
        for name in ("rep.bin", "rb.bin"):
            for v in (1, 2, 3):
                post("/ingest", {"filename": name, "data": f"{name} version {v}"})
    if route == "list-page":
        from tests.support.listing import seed

        seed(root, (f"listed-{i:05d}.bin" for i in range(LIST_NAMES)))
    if route == "delete":
        for i in range(-1, n):
            post("/ingest", {"filename": f"del-{i}.bin", "data": f"to delete {i}"})
    step = steps[route]
    step(-1)  # warm: first-use costs (imports, directory handles, S3 client) are not per request
    if route in ("ingest-same",):
        step(-2)
    _wrap_store_writes(lambda: _mark("put-begin"), lambda: _mark("put-end"))
    if latency is None:
        for i in range(n):
            _mark("begin")
            step(i)
            _mark("end")
        return
    serial_s, put_s = latency
    _wrap_store_writes(lambda: time.sleep(put_s), lambda: None)
    took = []
    for i in range(n):
        started = time.perf_counter()
        time.sleep(serial_s)  # the route's modelled EFS time outside its store write
        step(i)
        took.append(time.perf_counter() - started)
    with open(os.path.join(root, "latency.json"), "w") as f:
        json.dump(took, f)


def _wrap_store_writes(before: Callable[[], None], after: Callable[[], None]) -> None:
    """Run ``before``/``after`` around the outermost Store.put/put_bytes of a request."""
    import threading

    from chalicelib.store import Store

    depth = threading.local()
    for attr in ("put", "put_bytes"):
        real = getattr(Store, attr)

        def wrapped(self: Any, *a: Any, _real: Any = real, **kw: Any) -> Any:
            outer = not getattr(depth, "n", 0)
            depth.n = getattr(depth, "n", 0) + 1
            if outer:
                before()
            try:
                return _real(self, *a, **kw)
            finally:
                depth.n -= 1
                if outer:
                    after()

        setattr(Store, attr, wrapped)


# -- the parent: trace the child, classify its calls --------------------------------
_LINE = re.compile(r"^(?P<pid>\d+)\s+(?P<rest>.*)$")
_CALL = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\)\s+=\s+(?P<ret>-?\d+)(?P<retpath><[^>]*>)?(?P<err>.*)$")
_FD = re.compile(r"^(?:AT_FDCWD|\d+)(?:<(?P<path>[^>]*)>)?")
_STR = re.compile(r'"((?:[^"\\]|\\.)*)"')
_TRACED = (
    "openat,open,creat,close,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat,symlink,symlinkat,"
    "link,linkat,"
    "fsync,fdatasync,fcntl,getdents64,readlink,readlinkat"
)


def _join_unfinished(lines: list[str]) -> list[tuple[str, str]]:
    """(pid, 'call(args) = ret') with strace's unfinished/resumed halves joined."""
    pending: dict[str, str] = {}
    out = []
    for raw in lines:
        m = _LINE.match(raw)
        if not m:
            continue
        pid, rest = m.group("pid"), m.group("rest")
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")].rstrip()
            continue
        resumed = re.match(r"^<\.\.\. \w+ resumed>(.*)$", rest)
        if resumed:
            rest = pending.pop(pid, "") + resumed.group(1)
        out.append((pid, rest))
    return out


def _within(path: str | None, root: str) -> bool:
    return bool(path) and (path == root or path.startswith(root + "/"))


def classify(trace_lines: list[str], root: str) -> tuple[list[dict[str, int]], list[str]]:
    """Per marked request: write ops, read ops, directory fsyncs (already among
    the write ops), and the write and read ops inside its store write; plus the
    counted calls of the first one."""
    requests: list[dict[str, int]] = []
    sample: list[str] = []
    writable: dict[int, bool] = {}
    directories: set[int] = set()
    counting = in_put = False
    counts: dict[str, int] = {}
    first = True
    for _pid, text in _join_unfinished(trace_lines):
        m = _CALL.match(text)
        if not m:
            continue
        name, args, ret = m.group("name"), m.group("args"), int(m.group("ret"))
        retpath = (m.group("retpath") or "")[1:-1] or None
        strings = _STR.findall(args)
        if name in ("openat", "open") and strings and strings[0].startswith(MARK + "/"):
            what = strings[0].rsplit("/", 1)[1]
            if what == "begin":
                counting, counts = True, {"W": 0, "R": 0, "D": 0, "PW": 0, "PR": 0}
            elif what == "end" and counting:
                counting = False
                requests.append(counts)
                first = False
            elif what in ("put-begin", "put-end"):
                in_put = what == "put-begin"
            continue
        fdm = _FD.match(args)
        fdpath = fdm.group("path") if fdm else None
        cls = None
        dir_fsync = False
        if name in ("openat", "open", "creat"):
            flags = args.rsplit(",", 2)[-2] if name == "openat" and args.count(",") >= 2 else args
            creat = name == "creat" or "O_CREAT" in args
            target = retpath
            if target is None and strings:
                rel = strings[0]
                base = fdpath if name == "openat" and not rel.startswith("/") else ""
                target = os.path.normpath(os.path.join(base or os.getcwd(), rel))
            if _within(target, root):
                cls = "W" if creat else "R"
                if ret >= 0:
                    writable[ret] = bool(re.search(r"O_WRONLY|O_RDWR", flags)) or creat
                    if "O_DIRECTORY" in args:
                        directories.add(ret)
                    else:
                        directories.discard(ret)
        elif name == "close":
            if _within(fdpath, root):
                fd = int(args.split("<", 1)[0])
                cls = "W" if writable.pop(fd, False) else "R"
        elif name in ("fsync", "fdatasync"):
            if _within(fdpath, root):
                # Every fsync is a write op (the rule); a directory's
                # is also counted apart, to show the policy skipped them all.
                cls = "W"
                if int(args.split("<", 1)[0]) in directories:
                    dir_fsync = True
        elif name == "fcntl":
            if _within(fdpath, root) and re.search(r"F_(OFD_)?SETLKW?\b", args):
                cls = "W"
        elif name == "getdents64":
            cls = "R" if _within(fdpath, root) and ret > 0 else None
        elif name in (
            "mkdir",
            "mkdirat",
            "rename",
            "renameat",
            "renameat2",
            "unlink",
            "unlinkat",
            "symlink",
            "symlinkat",
            "link",
            "linkat",
            "readlink",
            "readlinkat",
        ):
            paths = []
            # path arguments: absolute strings, or relative to a decoded dirfd before them
            parts = [p.strip() for p in re.split(r",\s*(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", args)]
            last_dir = None
            for p in parts:
                dm = re.match(r"^(?:AT_FDCWD|\d+)<([^>]*)>$", p)
                if dm:
                    last_dir = dm.group(1)
                    continue
                if p.startswith('"'):
                    s = _STR.match(p)
                    if s:
                        val = s.group(1)
                        paths.append(val if val.startswith("/") else os.path.join(last_dir or os.getcwd(), val))
            if name in ("symlink", "symlinkat"):
                paths = paths[1:]  # the target is only text
            if name in ("readlink", "readlinkat"):
                paths = paths[:1]
            if any(_within(os.path.normpath(p), root) for p in paths):
                cls = "R" if name.startswith("readlink") else "W"
        if name == "close" and args.split("<", 1)[0].isdigit():
            directories.discard(int(args.split("<", 1)[0]))
        if counting and cls:
            counts[cls] += 1
            counts["D"] += int(dir_fsync)
            if in_put and cls in ("W", "R"):
                counts["P" + cls] += 1
            if first:
                sample.append(f"{cls} {text[:160]}")
    return requests, sample


def count_route(route: str, n: int, work: str, dir_fsync: str = EFS_DIR_FSYNC) -> dict[str, Any]:
    """Trace ``route`` run ``n`` times in a child, the store under directory-fsync
    policy ``dir_fsync``; mean write/read ops per request."""
    if shutil.which("strace") is None:
        raise RuntimeError("strace is not installed")
    root = os.path.realpath(tempfile.mkdtemp(prefix=f"rpc-{route}-", dir=work))
    out = os.path.join(work, f"{route}.trace")
    cmd = [
        "strace",
        "-f",
        "-y",
        "-qq",
        "-o",
        out,
        "-e",
        f"trace={_TRACED}",
        sys.executable,
        "-m",
        "bench.efs_rpcs",
        "--child",
        route,
        root,
        str(n),
    ]
    env = dict(os.environ, PYTHONPATH=str(PROJECT), STORE_DIR_FSYNC=dir_fsync)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(PROJECT), timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{route}: child failed: {proc.stderr[-2000:]}")
    with open(out) as f:
        requests, sample = classify(f.read().splitlines(), root)
    if len(requests) != n:
        raise RuntimeError(f"{route}: {len(requests)} marked requests, expected {n}")
    mean = {k: sum(c[k] for c in requests) / n for k in requests[0]}
    return {
        "route": route,
        "writes": mean["W"],
        "reads": mean["R"],
        "dir_fsyncs": mean["D"],
        "ms": modelled_ms(mean["W"], mean["R"]),
        "put_ms": modelled_ms(mean["PW"], mean["PR"]),
        "max_writes": max(c["W"] for c in requests),
        "max_reads": max(c["R"] for c in requests),
        "sample": sample,
    }


def rpc_rows(n: int = 40, routes: list[Route] | None = None, dir_fsync: str = EFS_DIR_FSYNC) -> list[dict[str, Any]]:
    """Count every route (store under ``dir_fsync``, by default EFS's policy);
    each result carries its target and minimal protocol."""
    work = tempfile.mkdtemp(prefix="efs-rpcs-")
    try:
        rows = []
        for route in routes or ROUTES:
            got = count_route(route.key, n, work, dir_fsync)
            got.update(
                what=route.what,
                target_ms=route.target_ms,
                minimal_ms=modelled_ms(route.minimal_writes, route.minimal_reads),
                minimal=(route.minimal_writes, route.minimal_reads),
            )
            rows.append(got)
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- production latency: EFS model + S3 through a delaying proxy ------------------
@contextlib.contextmanager
def delayed_s3(delay: float = S3_DELAY_S) -> Iterator[str]:
    """A moto S3 behind a proxy that holds every request ``delay`` seconds; yields its endpoint."""
    import boto3

    from devstack.moto import MotoServer
    from tests.support.faultproxy import Fault, FaultProxy

    moto = MotoServer().start()
    proxy = FaultProxy(moto.endpoint).start()
    try:
        proxy.rule = lambda method, path, n: Fault(delay=delay)
        boto3.client(
            "s3",
            endpoint_url=moto.endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket=BUCKET)
        yield proxy.endpoint
    finally:
        proxy.stop()
        moto.stop()


def s3_put_seconds(endpoint: str, rounds: int = 20) -> float:
    """Mean seconds of one small result PUT (what predict archives) through ``endpoint``."""
    import boto3

    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
    )
    client.put_object(Bucket=BUCKET, Key="outputs/warm.result", Body=b"warm")
    started = time.perf_counter()
    for i in range(rounds):
        client.put_object(Bucket=BUCKET, Key=f"outputs/{i}.result", Body=b'{"result": 1}')
    return (time.perf_counter() - started) / rounds


def production_rows(rows: list[dict[str, Any]], n: int = 20) -> list[dict[str, Any]]:
    """Each route, run for real with its modelled EFS time slept and S3 behind the delaying proxy.

    The EFS time of the route's store write is slept *inside* that write
    (so an archive running beside it overlaps it, as it would on EFS); the
    rest before the request. Local CPU time is included as measured.
    """
    # tmpfs where there is one: the local disk's own fsync time is not EFS's.
    work = tempfile.mkdtemp(prefix="efs-latency-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        with delayed_s3() as endpoint:
            s3_ms = s3_put_seconds(endpoint) * 1000
            out = []
            for row in rows:
                route = next(r for r in ROUTES if r.key == row["route"])
                root = os.path.realpath(tempfile.mkdtemp(prefix=f"lat-{route.key}-", dir=work))
                serial, put = (row["ms"] - row["put_ms"]) / 1000, row["put_ms"] / 1000
                env = dict(
                    os.environ,
                    PYTHONPATH=str(PROJECT),
                    MODEL_BUCKET=BUCKET,
                    AWS_ENDPOINT_URL_S3=endpoint,
                    AWS_ACCESS_KEY_ID="bench",
                    AWS_SECRET_ACCESS_KEY="bench",
                    AWS_DEFAULT_REGION="us-east-1",
                    AWS_EC2_METADATA_DISABLED="true",
                    STORE_DIR_FSYNC=EFS_DIR_FSYNC,
                )
                cmd = [
                    sys.executable,
                    "-m",
                    "bench.efs_rpcs",
                    "--child",
                    route.key,
                    root,
                    str(n),
                    "--latency",
                    f"{serial}",
                    f"{put}",
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(PROJECT), timeout=600)
                if proc.returncode != 0:
                    raise RuntimeError(f"{route.key}: latency child failed: {proc.stderr[-2000:]}")
                with open(os.path.join(root, "latency.json")) as f:
                    took = sorted(json.load(f))
                s3_route = s3_ms if route.archives else 0.0
                out.append(
                    {
                        "what": route.what,
                        "efs_ms": row["ms"],
                        "put_ms": row["put_ms"],
                        "s3_ms": s3_route,
                        "p50_ms": took[len(took) // 2] * 1000,
                        "serial_ms": row["ms"] + s3_route,
                    }
                )
            return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def render(rows: list[dict[str, Any]], prod: list[dict[str, Any]] | None) -> str:
    head = (
        "Route",
        "Write RPCs",
        "Read RPCs",
        "Dir fsyncs (in W)",
        "Modelled EFS",
        "Minimal protocol",
        "Target",
        "Met",
    )
    cells = [head]
    for r in rows:
        mw, mr = r["minimal"]
        cells.append(
            (
                r["what"],
                f"{r['writes']:.1f}",
                f"{r['reads']:.1f}",
                f"{r['dir_fsyncs']:.1f}",
                f"{r['ms']:.1f} ms",
                f"{mw} W + {mr} R = {r['minimal_ms']:.1f} ms",
                f"<= {r['target_ms']:.0f} ms",
                "yes" if r["ms"] <= r["target_ms"] else "NO",
            )
        )
    text = markdown(cells)
    if prod is not None:
        pcells = [
            (
                "Route",
                "EFS model (in store write)",
                f"S3 PUT ({S3_DELAY_S * 1000:.0f} ms proxy)",
                "EFS + S3 in series",
                "Production latency p50 (measured)",
            )
        ]
        for p in prod:
            pcells.append(
                (
                    p["what"],
                    f"{p['efs_ms']:.1f} ms ({p['put_ms']:.1f} ms)",
                    f"{p['s3_ms']:.1f} ms" if p["s3_ms"] else "-",
                    f"{p['serial_ms']:.1f} ms",
                    f"{p['p50_ms']:.1f} ms",
                )
            )
        text += "\n\n" + markdown(pcells)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("ROUTE", "ROOT", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--latency", nargs=2, type=float, metavar=("SERIAL", "PUT"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=40, help="requests counted per route")
    parser.add_argument("--no-s3", action="store_true", help="skip the production-latency table")
    parser.add_argument("--show", action="store_true", help="print the counted calls of one request per route")
    parser.add_argument(
        "--dir-fsync",
        choices=("always", "never"),
        default=EFS_DIR_FSYNC,
        help="the store's directory-fsync policy: never is what it applies on EFS (default); "
        "always is a local disk's, for comparison",
    )
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), tuple(args.latency) if args.latency else None)
        return 0
    rows = rpc_rows(args.n, dir_fsync=args.dir_fsync)
    prod = None if args.no_s3 else production_rows(rows)
    print(render(rows, prod))
    if args.show:
        for r in rows:
            print(f"\n{r['route']}:\n  " + "\n  ".join(r["sample"]))
    return 0 if all(r["ms"] <= r["target_ms"] for r in rows) else 1


def bench_rows(ctx: Context) -> list[Row]:
    """``make bench`` rows: round trips per route (row 8) and production latency
    per route (row 9)."""
    row = Row
    rows = rpc_rows(ctx.args.rpc_n)
    out = []
    for r in rows:
        mw, mr = r["minimal"]
        out.append(
            row(
                "8",
                f"EFS round trips: {r['what']}",
                f"{r['writes']:.0f} W + {r['reads']:.0f} R = {r['ms']:.1f} ms",
                f"minimal {mw} W + {mr} R = {r['minimal_ms']:.1f} ms",
                f"{r['ms'] / r['minimal_ms']:.2f}x minimal" if r["minimal_ms"] else "-",
                f"<= {r['target_ms']:.0f} ms",
                r["ms"] <= r["target_ms"],
            )
        )
    for p in production_rows(rows):
        out.append(
            row(
                "9",
                f"production latency: {p['what']}",
                f"{p['p50_ms']:.1f} ms p50",
                f"EFS + S3 in series {p['serial_ms']:.1f} ms",
                f"EFS {p['efs_ms']:.1f} ms" + (f", S3 PUT {p['s3_ms']:.1f} ms" if p["s3_ms"] else ""),
                "-",
                None,
            )
        )
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpc-n", type=int, default=40, help="requests counted per route (default: %(default)s)")


BENCHMARK = Benchmark(
    "8",
    "EFS round trips per route, production latency with S3 at +20 ms (rows 8-9)",
    bench_rows,
    add_arguments,
    notes=(
        "8: store calls per request under strace -f, write op 2.7 ms (every fsync), read op 1.0 ms "
        "(bench/efs_rpcs.py); the store runs with EFS's directory-fsync policy (STORE_DIR_FSYNC=never).",
        "9: the route run with its row-8 EFS time slept and S3 behind a proxy adding 20 ms per request.",
    ),
)


if __name__ == "__main__":
    sys.exit(main())
