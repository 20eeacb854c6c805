"""The inference worker's supervisor: start it, call it under bounds, kill it, replace it.

Inference runs in a child process (:mod:`chalicelib.runners.worker`) because
only a process can be stopped for certain: onnxruntime reads its terminate
flag between operators, so one long operator (or one that allocates outside
the capped arena) cannot be stopped from a thread. The request's own thread
is the watchdog: while it waits for the worker's answer it wakes every
``tick`` (10 ms) to check the clock and the worker's RSS (one ``pread`` of
its ``/proc/<pid>/statm``), and kills the worker (``SIGKILL``) when the
deadline passes (:class:`Stopped` ``"time"``), when the worker grows past
what the call may add or past the worker's whole size (``"memory"``), or
reports how it died (``"crash"``, or ``"memory"`` when it died on its way
to its bound). A killed worker is reaped at
once, so no CPU is spent on its run after the answer, and the next call
starts a fresh one.

Start: ``posix_spawn`` of a fresh interpreter, not a fork server. Measured
here: numpy + onnxruntime import in 0.18-0.23 s; a fork of an
onnxruntime-imported process in 6 ms, but that process already runs 2-3
threads after the import (OpenBLAS, onnxruntime), which is the
multi-threaded fork that Python 3.12 warns may deadlock, and its children
would belong to the fork server (which the supervisor could not reap). The spawn is
started before the first load needs it (overlapping the hash and scan of
the model) and after a kill only when the next call needs it, so nothing
spends CPU once an answer is given. The parent never imports onnxruntime.

Only ``Pipe``-like primitives are used (a Unix socketpair): Lambda has no
``/dev/shm``, so ``multiprocessing``'s Queue, Pool and semaphores fail there.
"""

from __future__ import annotations

import atexit
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from chalicelib.runners import wire

log = logging.getLogger(__name__)

_PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = 0.01  # seconds between the watchdog's clock and RSS checks
SPIN = 0.0001
"""Seconds the caller looks for the worker's reply before it sleeps (one
``poll(0)`` per look): a small MLP's hop measured 0.19-0.22 ms p50 sleeping at
once, 0.13-0.16 ms with 100 us of looking, no better with 200 or 400 us. A
slow model costs the caller 100 us of one core at the start of its run."""
FREEZE_GAP = 1.0
"""A gap this long between two watchdog ticks (100 of them) is a freeze of
the whole sandbox (Lambda freezes it between invocations), not the call's
time: it does not count against the call's bound."""
DATA_SLACK = 64 * 1024 * 1024
"""What ``RLIMIT_DATA`` allows beyond the worker's sizing: thread stacks and
malloc arenas onnxruntime creates at its first session (measured: +10 MiB of
``VmData`` for the first session, ~8 MiB per intra-op thread), and the
messages in flight (inputs <= 8 MB at the default MAX_TENSOR_ELEMENTS; a
reply is refused past its limit). Small, so the hard limit stays close to
the watchdog's bound when the watchdog is late (a loaded machine)."""


class Stopped(Exception):
    """The worker was stopped (or died) before it answered.

    ``reason`` is ``"time"``, ``"memory"`` or ``"crash"``; ``detail`` says more
    for logs (never paths)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Sizing:
    """What a worker may hold: its sessions (``model_cache_bytes``) and one
    run's tensors (``inference_memory_bytes``), on top of its baseline."""

    model_cache_bytes: int
    inference_memory_bytes: int


class _Process:
    """One running worker, seen from the parent."""

    def __init__(self, sizing: Sizing, generation: int, command: list[str]) -> None:
        self.sizing = sizing
        self.generation = generation
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        os.set_inheritable(theirs.fileno(), True)
        env = dict(os.environ)
        # The worker imports the same code from the same places.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        # numpy in the worker only wraps tensors: no BLAS thread pool.
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        # Tensors cross through a shared mapping (see wire); without
        # memfd_create they take the socket.
        area_fd = wire.Area.create()
        self.area: wire.Area | None = None
        argv = [*command, str(theirs.fileno()), str(os.getpid())]
        if area_fd is not None:
            os.set_inheritable(area_fd, True)
            argv.append(str(area_fd))
        try:
            self.pid = os.posix_spawn(argv[0], argv, env)
            if area_fd is not None:
                self.area = wire.Area(area_fd, parent=True)
        finally:
            theirs.close()
            if area_fd is not None:
                os.close(area_fd)
        self.sock = ours
        self.ready = False
        self.baseline = 0  # RSS once ready
        self.statm = -1
        self.poll = select.poll()
        self.poll.register(ours, select.POLLIN)
        wire.send(ours, ("hello", sizing.inference_memory_bytes, self.bound_bytes() + DATA_SLACK))

    def bound_bytes(self) -> int:
        return self.sizing.model_cache_bytes + self.sizing.inference_memory_bytes

    def rss(self) -> int:
        """The worker's resident set size now (0 if unknown)."""
        try:
            if self.statm < 0:
                self.statm = os.open(f"/proc/{self.pid}/statm", os.O_RDONLY | os.O_CLOEXEC)
            return int(os.pread(self.statm, 64, 0).split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            return 0

    def wait_readable(self, seconds: float) -> bool:
        return bool(self.poll.poll(max(0, int(seconds * 1000))))

    def kill(self) -> tuple[int, int]:
        """SIGKILL and reap: (wait status, peak RSS bytes)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.reap()

    def reap(self) -> tuple[int, int]:
        try:
            _, status, usage = os.wait4(self.pid, 0)
        except ChildProcessError:
            status, peak = 0, 0
        else:
            peak = usage.ru_maxrss * 1024
        self.close()
        return status, peak

    def close(self) -> None:
        self.sock.close()
        if self.area is not None:
            self.area.close()
            self.area = None
        if self.statm >= 0:
            os.close(self.statm)
            self.statm = -1


class Supervisor:
    """One worker process at a time, called by one request at a time."""

    def __init__(self, command: list[str] | None = None, tick: float = TICK) -> None:
        self.command = command or [sys.executable, "-m", "chalicelib.runners.worker"]
        self.tick = tick
        self._lock = threading.Lock()  # held by the call in flight
        # Guards the fields below, briefly; re-entrant because a session's
        # finalizer (release) may run from the garbage collector while held.
        self._state = threading.RLock()
        self._proc: _Process | None = None
        self._generation = 0
        self._drops: list[str] = []

    @property
    def generation(self) -> int:
        """Which worker is current: sessions of another generation are gone."""
        return self._generation

    def pid(self) -> int | None:
        """The current worker's process id, if one runs."""
        proc = self._proc
        return proc.pid if proc is not None else None

    def prestart(self, sizing: Sizing) -> None:
        """Start a worker now if none runs (without waiting for it), so its
        imports overlap whatever the caller does before its first call."""
        if self._lock.acquire(blocking=False):
            try:
                self._current(sizing)
            finally:
                self._lock.release()

    def release(self, generation: int, sid: str) -> None:
        """A session the parent no longer holds: dropped by the worker with the next call."""
        with self._state:
            if generation == self._generation:
                self._drops.append(sid)

    def call(
        self,
        request: tuple[Any, ...],
        *,
        sizing: Sizing,
        timeout: float,
        allowance: int,
        within: float | None = None,
    ) -> tuple[Any, int]:
        """Send ``request`` (op, args...) and return (the worker's reply, its generation).

        Raises :class:`Stopped` if no answer comes within ``timeout`` seconds
        of the worker being free and ready, or within ``within`` seconds of
        this call (waiting for another call and for a fresh worker's start
        included; default ``timeout``), if the worker's RSS grows more than
        ``allowance`` bytes over what it held when the call began, or past
        its sizing, or if it dies; the worker is then gone. A fresh worker's
        start is the service's cost, not the model's: it does not count
        against ``timeout``, only against ``within``."""
        started = time.monotonic()
        outer = started + max(0.0, timeout if within is None else within)
        if not self._lock.acquire(timeout=max(0.0, outer - started)):
            raise Stopped("time", "waited for another call to the worker")
        try:
            proc = self._current(sizing)
            if not proc.ready:
                self._await_ready(proc, outer)
            ends = min(outer, time.monotonic() + max(0.0, timeout))
            with self._state:
                drops, self._drops = self._drops, []
            # A worker already dead reads as 0 RSS: its baseline is the floor.
            start = max(proc.rss(), proc.baseline)
            limit = min(start + allowance, proc.baseline + proc.bound_bytes())
            try:
                wire.send(proc.sock, (request[0], drops, *request[1:]), area=proc.area)
            except OSError:
                raise self._died(proc, start) from None
            return self._await_reply(proc, ends, limit, start, allowance), proc.generation
        finally:
            self._lock.release()

    def stop(self) -> None:
        """Kill the current worker (if any); the next call starts another."""
        with self._lock:
            proc = self._proc
            if proc is not None:
                self._retire(proc)
                proc.kill()

    # -- internals -------------------------------------------------------------------

    def _current(self, sizing: Sizing) -> _Process:
        proc = self._proc
        if proc is not None and proc.sizing != sizing:
            # Settings changed (tests): a worker is sized at its start.
            self._retire(proc)
            proc.kill()
            proc = None
        if proc is None:
            with self._state:
                self._generation += 1
                self._drops = []
                proc = self._proc = _Process(sizing, self._generation, self.command)
        return proc

    def _retire(self, proc: _Process) -> None:
        with self._state:
            if self._proc is proc:
                self._proc = None
                self._generation += 1
                self._drops = []

    def _await_ready(self, proc: _Process, ends: float) -> None:
        while not proc.wait_readable(min(self.tick * 10, max(0.0, ends - time.monotonic()))):
            if time.monotonic() >= ends:
                self._retire(proc)
                proc.kill()
                raise Stopped("time", "the worker did not start in time")
        try:
            reply = wire.recv(proc.sock)
        except (wire.ChannelClosed, OSError):
            raise self._died(proc, 0) from None
        if reply[0] != "ready":
            self._retire(proc)
            proc.kill()
            raise Stopped("crash", f"unexpected first message {reply[0]!r}")
        proc.ready = True
        proc.baseline = proc.rss()

    def _await_reply(self, proc: _Process, ends: float, limit: int, start: int, allowance: int) -> Any:
        seen = start  # the largest RSS the watchdog saw during this call
        # A fast model answers within tens of microseconds: look for the reply
        # for SPIN seconds before sleeping, as onnxruntime's own threads spin
        # before they block, so such a call does not pay a wake-up.
        spin_until = time.perf_counter() + SPIN
        while time.perf_counter() < spin_until:
            if proc.poll.poll(0):
                try:
                    return wire.recv(proc.sock, proc.area)
                except (wire.ChannelClosed, OSError):
                    raise self._died(proc, start, seen, limit) from None
        while True:
            polled = time.monotonic()
            wait = min(self.tick, max(0.0, ends - polled))
            if proc.wait_readable(wait):
                try:
                    return wire.recv(proc.sock, proc.area)
                except (wire.ChannelClosed, OSError):
                    raise self._died(proc, start, seen, limit) from None
            now = time.monotonic()
            if now - polled > wait + FREEZE_GAP:
                # The watchdog slept far past its tick: the sandbox was frozen
                # between invocations (Lambda), worker and all. That time was
                # not the call's: its bound moves by it.
                ends += now - polled - wait
            if now >= ends:
                self._retire(proc)
                proc.kill()
                raise Stopped("time")
            rss = proc.rss()
            seen = max(seen, rss)
            if rss > limit:
                self._retire(proc)
                proc.kill()
                raise Stopped("memory", f"RSS {rss} bytes past {limit}")

    def _died(self, proc: _Process, start: int, seen: int = 0, limit: int = 0) -> Stopped:
        """The worker closed its end without answering: reap it and say why."""
        self._retire(proc)
        status, _ = proc.kill()  # it may be closing still; reap it either way
        return self._death_reason(status, start, seen, limit)

    @staticmethod
    def _death_reason(status: int, start: int, seen: int, limit: int) -> Stopped:
        """Memory when the worker died on its way to its bound: the kernel's
        OOM killer (SIGKILL, which this supervisor sends only after retiring
        a worker) or the watchdog's last reading past half the call's
        allowance. Not ``wait4``'s peak RSS: a spawned child's starts at its
        parent's (the exec replaces a memory map shared with the parent)."""
        signalled = os.WIFSIGNALED(status)
        detail = f"signal {os.WTERMSIG(status)}" if signalled else f"exit {os.waitstatus_to_exitcode(status)}"
        oom = signalled and os.WTERMSIG(status) == signal.SIGKILL
        if limit and (oom or seen - start >= (limit - start) // 2):
            return Stopped("memory", f"{detail}, last RSS seen {seen} bytes")
        return Stopped("crash", detail)


@lru_cache(maxsize=1)
def shared() -> Supervisor:
    """The process's supervisor (one worker per process)."""
    supervisor = Supervisor()
    atexit.register(supervisor.stop)
    return supervisor
