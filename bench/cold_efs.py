"""Row 12: cold loads on a wall-clock EFS model (:mod:`bench.efs_model`, FUSE)
against a bare ``InferenceSession(path)`` in the same run, for each model size.

Each cold load runs in a fresh process (``python -m bench.cold_efs probe
...``) with the model's pages dropped from the page cache first
(``posix_fadvise(DONTNEED)`` on the file, through the mount for the EFS
model). Both sides pay their process's imports before the clock starts
(numpy and chalicelib for ours, onnxruntime for the bare session); ours
then pays its worker's start (a fresh interpreter importing onnxruntime),
which a bare session never has: it is the price of isolation.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from bench.common import MIB, Benchmark, Context, Row, log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ready() -> str | None:
    """Why the EFS model cannot run here (None if it can), installing what it needs."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse here"
    if shutil.which("fusermount3") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "fuse3"], capture_output=True, check=False)
        if shutil.which("fusermount3") is None:
            return "fuse3 is not installed and apt-get could not install it"
    try:
        import mfusepy  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "mfusepy==3.1.1"], check=False)
        try:
            import mfusepy  # noqa: F401
        except (ImportError, OSError) as exc:
            return f"mfusepy could not be installed or loaded ({exc})"
    except OSError as exc:
        return f"libfuse could not be loaded ({exc})"
    return None


# Where this bench mounts the EFS model: row 12's (``<bench disk>/cold-efs/mnt``)
# and bench.cold_stages' (``efs-ml-stages-*/mnt``).
_OUR_MOUNTS = ("/cold-efs/mnt", "/mnt")
_OUR_DIRS = ("efs-ml-bench-", "efs-ml-stages-")


def stale_mounts(mounts: str = "/proc/mounts") -> list[str]:
    """Our FUSE mounts whose daemon is gone (a run killed before its unmount):
    the mount is still listed but every access fails with ENOTCONN. A live
    mount (another run of this bench in progress) is not stale."""
    found = []
    try:
        with open(mounts) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 3 or not fields[2].startswith("fuse"):
            continue
        point = fields[1].replace("\\040", " ")
        if not point.endswith(_OUR_MOUNTS) or not any(d in point for d in _OUR_DIRS):
            continue
        try:
            os.stat(point)
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:
                found.append(point)
    return found


def clean_stale_mounts() -> list[str]:
    """Lazily unmount every stale mount of this bench (see :func:`stale_mounts`); those unmounted."""
    cleaned = []
    for point in stale_mounts():
        done = subprocess.run(["fusermount3", "-u", "-z", point], capture_output=True, check=False)
        if done.returncode == 0:
            log(f"row 12: unmounted a stale EFS model mount left by an interrupted run: {point}")
            cleaned.append(point)
    return cleaned


@contextlib.contextmanager
def mounted(backing: str, mountpoint: str) -> Iterator[int]:
    """The EFS model served from ``backing`` at ``mountpoint`` for the block,
    unmounted however the block ends: an exception, Ctrl-C, or SIGTERM (turned
    into :class:`SystemExit` here so that ``finally`` runs). Stale mounts of
    an earlier interrupted run are cleaned first. Yields the daemon's pid."""
    clean_stale_mounts()
    previous = signal.getsignal(signal.SIGTERM)
    on_main = threading.current_thread() is threading.main_thread()
    if on_main:
        signal.signal(signal.SIGTERM, _terminated)
    daemon = _mount(backing, mountpoint)
    try:
        yield daemon.pid
    finally:
        # Ctrl-C (SIGINT) arrives as KeyboardInterrupt and lands here too; a
        # second one during the unmount must not leave the mount behind.
        if on_main:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            _unmount(daemon, mountpoint)
        finally:
            if on_main:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGTERM, previous)


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _mount(backing: str, mountpoint: str) -> subprocess.Popen[bytes]:
    daemon = subprocess.Popen(
        [sys.executable, "-m", "bench.efs_model", backing, mountpoint],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        if os.path.ismount(mountpoint):
            from bench.efs_model import set_read_ahead

            set_read_ahead(mountpoint)
            return daemon
        if daemon.poll() is not None:
            break
        time.sleep(0.05)
    _unmount(daemon, mountpoint)
    raise RuntimeError("the EFS model did not mount")


def _unmount(daemon: subprocess.Popen[bytes], mountpoint: str) -> None:
    subprocess.run(["fusermount3", "-u", mountpoint], capture_output=True, check=False)
    try:
        daemon.wait(5)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
    if os.path.ismount(mountpoint) or mountpoint in stale_mounts():
        # Busy (a probe still holds a file) or its daemon is gone: detach it lazily.
        subprocess.run(["fusermount3", "-u", "-z", mountpoint], capture_output=True, check=False)


def _drop(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _status(pid: int | str | None, field: str) -> int:
    """One ``/proc/<pid>/status`` size field (``VmRSS``, ``VmHWM``) in bytes, 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int | str | None) -> float:
    """User + system CPU a process has used (``/proc/<pid>/stat``), 0 if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _hwm(pid: int | str | None) -> int:
    return _status(pid, "VmHWM")


def _rss(pid: int | str | None) -> int:
    return _status(pid, "VmRSS")


def probe(kind: str, efs_root: str, name: str) -> dict[str, Any]:
    """One cold load in this (fresh) process: its time and peak RSS."""
    import numpy as np

    if kind == "bare":
        import onnxruntime as ort

        from chalicelib.names import ObjectRef
        from chalicelib.store import Store

        path = Store(efs_root).path(ObjectRef("models", name))
        base, cpu = _rss("self"), cpu_seconds("self")
        started = time.perf_counter()
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        width = session.get_inputs()[0].shape[1]
        session.run(None, {"x": np.ones((1, width), np.float32)})
        ms = (time.perf_counter() - started) * 1000
        return {"ms": ms, "rss": max(0, _hwm("self") - base), "worker_rss": 0, "cpu": cpu_seconds("self") - cpu}
    os.environ["EFS_ROOT"] = efs_root
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    from bench.common import quiet_stdout
    from chalicelib.edge import get_settings, get_store, model_cache
    from chalicelib.names import ObjectRef
    from chalicelib.predict import predict
    from chalicelib.runners import supervisor
    from chalicelib.validation import PredictRequest

    ref = ObjectRef("models", name)
    settings = get_settings()
    limits = model_cache().limits
    workers = supervisor.shared()
    # The worker's start (a fresh interpreter importing onnxruntime) before
    # the clock, as the bare side's import is: reported on its own.
    t0 = time.perf_counter()
    workers.call(
        ("ping",),
        sizing=supervisor.Sizing(limits.model_cache_bytes, limits.inference_memory_bytes),
        timeout=60,
        allowance=1 << 40,
    )
    start_ms = (time.perf_counter() - t0) * 1000
    pid = workers.pid()
    worker_base, own_base = _rss(pid), _rss("self")
    own_cpu, worker_cpu = cpu_seconds("self"), cpu_seconds(pid)
    with quiet_stdout():
        started = time.perf_counter()
        try:
            result = predict(
                get_store(), settings, model_cache(), PredictRequest("bench-cold-efs", ref, {"x": [[1.0] * 1024]})
            )
        except Exception as exc:  # noqa: BLE001 - a refusal is a result of this bench
            return {"ms": (time.perf_counter() - started) * 1000, "error": str(exc)[:200]}
        elapsed = (time.perf_counter() - started) * 1000
    cached, _ = model_cache().get(get_store(), ref)
    assert result["cache"] == "miss" and workers.pid() == pid
    return {
        "ms": elapsed,
        "start_ms": start_ms,
        # What the load added to each process's peak, over its RSS before it.
        "rss": max(0, _hwm("self") - own_base),
        "worker_rss": max(0, _hwm(pid) - worker_base) if pid else 0,
        "footprint": cached.runner.nbytes,
        # CPU the load used here (the hash, the readers) and in the worker (the session).
        "cpu": cpu_seconds("self") - own_cpu,
        "worker_cpu": cpu_seconds(pid) - worker_cpu,
    }


def _run_probe(
    kind: str, efs_root: str, name: str, file_path: str, module: str = "bench.cold_efs", daemon: int | None = None
) -> dict[str, Any]:
    """``python -m MODULE probe KIND EFS_ROOT NAME`` in a fresh process, the model's pages dropped first;
    with ``daemon`` (the EFS model's pid), the CPU it used meanwhile as ``daemon_cpu``."""
    _drop(file_path)
    daemon_cpu = cpu_seconds(daemon) if daemon else 0.0
    out = subprocess.run(
        [sys.executable, "-m", module, "probe", kind, efs_root, name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        return {"ms": float("nan"), "error": out.stderr.strip().splitlines()[-1:] or ["failed"]}
    result = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    if daemon:
        result["daemon_cpu"] = cpu_seconds(daemon) - daemon_cpu
    return result


def row_cold_efs(ctx: Context) -> list[Row]:
    """Medians of fresh-process cold loads, ours and bare, on the EFS model and local disk."""
    why = _ready()
    if why is not None:
        log(f"row 12 skipped: {why}")
        return [Row("12", "cold load on the EFS model (FUSE)", "skipped", why, "-", "-", None)]
    from bench.common import service_env
    from chalicelib.edge import get_settings, get_store
    from chalicelib.ingest import ingest_bytes
    from chalicelib.names import ObjectRef
    from tests.support.onnx_models import big_mlp

    base = os.path.join(ctx.disk, "cold-efs")
    backing, mountpoint = os.path.join(base, "backing"), os.path.join(base, "mnt")
    os.makedirs(backing, exist_ok=True)
    os.makedirs(mountpoint, exist_ok=True)
    rows: list[Row] = []
    try:
        with mounted(backing, mountpoint) as daemon:
            for mib in [int(s) for s in ctx.args.cold_efs_mib.split(",")]:
                name = f"big{mib}.onnx"
                service_env(backing, None, None)
                data, _ = big_mlp(mib * MIB)
                ref = ObjectRef("models", name)
                ingest_bytes(get_store(), get_settings(), ref, data)
                size = len(data)
                del data
                local_file = get_store().path(ref)
                efs_file = os.path.join(mountpoint, os.path.relpath(local_file, backing))
                samples: dict[str, list[dict[str, Any]]] = {
                    k: [] for k in ("ours-efs", "bare-efs", "ours-disk", "bare-disk")
                }
                for _ in range(ctx.args.cold_efs_rounds):
                    for key in samples:
                        kind, where = key.split("-")
                        root, file_path = (mountpoint, efs_file) if where == "efs" else (backing, local_file)
                        samples[key].append(_run_probe(kind, root, name, file_path, daemon=daemon))
                log(f"row 12 {mib} MiB: {json.dumps(samples)}")
                rows.extend(_rows(mib, size, samples))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return rows


def _median(samples: list[dict[str, Any]], key: str = "ms") -> float:
    values = [s[key] for s in samples if key in s and "error" not in s]
    return statistics.median(values) if values else float("nan")


def _rows(mib: int, size: int, samples: dict[str, list[dict[str, Any]]]) -> list[Row]:
    ours_efs, bare_disk = _median(samples["ours-efs"]), _median(samples["bare-disk"])
    ours_disk, bare_efs = _median(samples["ours-disk"]), _median(samples["bare-efs"])
    ok = sum("error" not in s for s in samples["ours-efs"] + samples["ours-disk"])
    runs = len(samples["ours-efs"]) + len(samples["ours-disk"])
    peaks = [(s["rss"] + s["worker_rss"]) / size for s in samples["ours-efs"] if "error" not in s]
    worker = [s["worker_rss"] / size for s in samples["ours-efs"] if "error" not in s]
    bare_peak = max([s["rss"] / size for s in samples["bare-disk"] + samples["bare-efs"] if "rss" in s] or [0])
    starts = [s["start_ms"] for s in samples["ours-efs"] + samples["ours-disk"] if "start_ms" in s]
    log(f"row 12 {mib} MiB: worker start (not in the figures) median {statistics.median(starts or [0]):.0f} ms")
    for key, got in samples.items():
        cpu = {k: _median(got, k) for k in ("cpu", "worker_cpu", "daemon_cpu")}
        log(f"row 12 {mib} MiB: {key} CPU-s (median): " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
    prints = sorted({s["footprint"] for s in samples["ours-efs"] + samples["ours-disk"] if "footprint" in s})
    n = len(samples["ours-efs"])
    what = f"{mib} MiB cold predict, EFS model, median of {n}"
    return [
        Row(
            "12",
            f"{what} vs bare session on local disk",
            f"{ours_efs:.0f} ms",
            f"{bare_disk:.0f} ms",
            f"{ours_efs / bare_disk:.2f}x",
            "<= 1.0x",
            ours_efs <= bare_disk,
        ),
        Row(
            "12",
            f"{what} vs bare session on the EFS model",
            f"{ours_efs:.0f} ms",
            f"{bare_efs:.0f} ms",
            f"{ours_efs / bare_efs:.2f}x",
            "-",
            None,
        ),
        Row(
            "12",
            f"{what} vs ours on local disk",
            f"{ours_efs:.0f} ms",
            f"{ours_disk:.0f} ms",
            f"{ours_efs / ours_disk:.2f}x",
            "<= 1.3x",
            ours_efs <= 1.3 * ours_disk,
        ),
        Row(
            "12",
            f"{mib} MiB peak RSS a cold load adds / file, worst (service + worker; worker {max(worker or [0]):.2f}x)",
            f"{max(peaks or [float('nan')]):.2f}x",
            f"bare {bare_peak:.2f}x",
            f"{max(peaks or [float('nan')]):.2f}x",
            "<= 1.5x",
            bool(peaks) and max(peaks) <= 1.5,
        ),
        Row(
            "12",
            f"{mib} MiB loads accepted at MODEL_CACHE_BYTES, footprints {[round(p / MIB) for p in prints]} MiB",
            f"{ok}/{runs}",
            "-",
            f"{ok}/{runs}",
            "all",
            ok == runs,
        ),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cold-efs-mib", default="50,200,400", help="model sizes in MiB (default: %(default)s)")
    parser.add_argument(
        "--cold-efs-rounds", type=int, default=5, help="fresh processes per side (default: %(default)s)"
    )


BENCHMARK = Benchmark(
    "12",
    "cold load on the EFS model",
    row_cold_efs,
    add_arguments,
    notes=(
        "10: FUSE passthrough (bench/efs_model.py): 1.0 / 2.7 ms per read / write op, 300 MB/s per open stream,",
        "    1,500 MiB/s per mount, attr_timeout 3 s, max_read 1 MiB; its daemon shares this machine's cores",
        "    (~0.8 CPU-s per GiB read). Fresh process per load, model pages dropped first; imports before the",
        "    clock on both sides (ours: its worker started and ready, its start time logged on stderr).",
        "    Peak RSS: what the load added to each process's peak over its RSS just before.",
    ),
)


if __name__ == "__main__":
    if sys.argv[1] == "probe":
        print(json.dumps(probe(sys.argv[2], sys.argv[3], sys.argv[4])))
