"""The inference worker: the one process that imports onnxruntime, holds the
warm sessions and runs them (``python -m chalicelib.runners.worker FD PPID [AREA]``).

Its parent (:mod:`chalicelib.runners.supervisor`) talks to it over the
socket ``FD`` with :mod:`chalicelib.runners.wire` messages, one request at
a time, and kills it when a bound is crossed: the worker itself never
decides to stop a run. What it does keep by itself:

* a hard memory ceiling (``RLIMIT_DATA``), the backstop behind the parent's
  RSS watchdog: an allocation past it fails inside onnxruntime (an error
  the parent reports as the memory setting) instead of growing the
  container towards its OOM kill;
* an orphan check: if the parent dies, the worker exits within a second,
  even in the middle of a run (the socket alone would tell it only after
  the run).

Requests: ``("load", drops, sid, source, name, ceiling, size)`` ->
``("ok", inputs, outputs, footprint, ms)`` (``ms``: the session's creation
and measure here); ``("run", drops, sid, names, feeds, limit)`` ->
``("ok", outputs)``, unless the reply would be over ``limit`` bytes; any
failure -> ``("err", kind, text)`` with kind ``refused``, ``failed``,
``memory``, ``invalid`` or ``outputs`` (too large to send). ``drops`` lists
session ids the parent no longer holds. Sessions are keyed by model key and sha256
(``sid``) and counted, so two holders of one model share one session.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
import threading
import time
from typing import Any

from chalicelib.runners import wire

_ORPHAN_CHECK = 0.5  # seconds between checks that the parent is still there


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(_ORPHAN_CHECK)
        if os.getppid() != parent:
            os._exit(3)


def _limit_data(bytes_: int) -> None:
    """``RLIMIT_DATA`` (private writable memory: heap, arenas, thread stacks)
    at ``bytes_`` above what the worker holds now."""
    if bytes_ <= 0:
        return
    held = _data_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    want = held + bytes_
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (want, hard))


def _data_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


def _signature(args: Any) -> list[tuple[str, str, Any]]:
    return [(a.name, a.type, a.shape) for a in args]


class _Host:
    """The sessions this worker holds and the two things it does with them."""

    def __init__(self, inference_memory_bytes: int) -> None:
        from chalicelib.runners import onnx_runner, ort_env

        self.onnx_runner = onnx_runner
        self.ort_env = ort_env
        self.ort = ort_env.prepare(inference_memory_bytes)
        self.options = onnx_runner.session_options()
        self.sessions: dict[str, list[Any]] = {}  # sid -> [session, holders]

    def drop(self, sids: list[str]) -> None:
        for sid in sids:
            entry = self.sessions.get(sid)
            if entry is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    del self.sessions[sid]

    def load(self, sid: str, source: Any, name: str, ceiling: int, size: int) -> tuple[Any, ...]:
        from chalicelib.errors import ModelRefused, ServiceError

        entry = self.sessions.get(sid)
        if entry is None:
            if not isinstance(source, str):
                source = bytes(source)  # an out-of-band buffer arrives as a bytearray
            started = time.perf_counter()
            try:
                session, footprint = self.onnx_runner._session(self.ort, name, source, self.options, ceiling, size)
            except ServiceError as exc:
                return ("err", "refused" if isinstance(exc, ModelRefused) else "failed", exc.message)
            entry = self.sessions[sid] = [session, 0, footprint, (time.perf_counter() - started) * 1000]
        entry[1] += 1
        session = entry[0]
        return ("ok", _signature(session.get_inputs()), _signature(session.get_outputs()), entry[2], entry[3])

    def run(self, sid: str, names: list[str] | None, feeds: dict[str, Any]) -> tuple[Any, ...]:
        entry = self.sessions.get(sid)
        if entry is None:
            return ("err", "failed", "the session is not loaded in this worker")
        try:
            outputs = entry[0].run(names, feeds, self.ort_env.run_options())
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
            kind = "memory" if self.onnx_runner._is_allocation_failure(exc) else "invalid"
            return ("err", kind, str(exc))
        return ("ok", outputs)


def serve(sock: socket.socket, area: wire.Area | None = None) -> None:
    """Answer requests on ``sock`` (tensors through ``area`` when given)
    until the parent closes it."""
    # numpy and onnxruntime are imported before the parent's first request
    # arrives: the worker is started ahead of need, so this overlaps.
    import numpy  # noqa: F401
    import onnxruntime  # noqa: F401

    hello = wire.recv(sock)
    _, inference_memory_bytes, data_bytes = hello
    host = _Host(inference_memory_bytes)
    _limit_data(data_bytes)
    wire.send(sock, ("ready", os.getpid()))
    while True:
        try:
            request = wire.recv(sock, area)
        except wire.ChannelClosed:
            return
        except MemoryError:
            wire.send(sock, ("err", "memory", "the request's tensors do not fit in the worker's memory"))
            continue
        op, drops = request[0], request[1]
        host.drop(drops)
        limit = 0
        try:
            if op == "load":
                reply = host.load(*request[2:])
            elif op == "run":
                *args, limit = request[2:]
                reply = host.run(*args)
            else:
                reply = ("ok",)
        except MemoryError:
            reply = ("err", "memory", "out of memory")
        try:
            # Outputs no response could carry never reach the service's memory.
            wire.send(sock, reply, limit, area)
        except wire.TooLarge as exc:
            wire.send(sock, ("err", "outputs", str(exc.size)))
        except MemoryError:
            wire.send(sock, ("err", "memory", "the outputs do not fit in the worker's memory"))
        del request, reply


def main(argv: list[str]) -> None:
    """Entry point: ``FD`` is this end of the socket, ``PPID`` the parent to
    outlive not, and an optional ``AREA`` the shared mapping's file."""
    fd, parent = int(argv[1]), int(argv[2])
    area = wire.Area(int(argv[3]), parent=False) if len(argv) > 3 else None
    threading.Thread(target=_watch_parent, args=(parent,), name="orphan-check", daemon=True).start()
    sock = socket.socket(fileno=fd)
    try:
        serve(sock, area)
    except (wire.ChannelClosed, BrokenPipeError, ConnectionResetError):
        pass
    except BaseException as exc:  # noqa: BLE001 - the parent reports the death; say why here
        print(f"inference worker failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        os._exit(70)
    finally:
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv)
