"""The bare baseline of rows 2 and 10: one ``InferenceSession`` with the
service's options, in a process of its own, its runs timed there.

Why not in the bench's own process: ours runs in the inference worker, and a
second onnxruntime session in the process that times it takes the cores
from it. Measured here on a quiet machine (load average 0.5), one image on
the small conv model, blocks of 10 interleaved: the worker's run p50
2.2-2.6 ms beside a bare session in the bench's process, 1.76-1.97 ms with
none there, the bare run itself 1.6-1.8 ms. In a Lambda the service process
holds no session; a baseline in its own process is that picture for both
sides (``python -m bench.bare`` is the child).
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import time
from typing import IO, Any

_LENGTH = struct.Struct("<Q")


def _send(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=5)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _recv(stream: IO[bytes]) -> Any:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("the bare session's process ended")
    return pickle.loads(stream.read(_LENGTH.unpack(head)[0]))


def bare_session(model: bytes) -> Any:
    """A session in this process with the service's options: the baseline."""
    import onnxruntime as ort

    from chalicelib.runners import onnx_runner, ort_env

    return ort.InferenceSession(
        model, onnx_runner.session_options(), providers=["CPUExecutionProvider"], **ort_env.session_kwargs()
    )


class BareSession:
    """A bare session of ``model`` on ``feeds`` in a child process."""

    def __init__(self, model: bytes, feeds: dict[str, Any]) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bare"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._in, self._out = self._proc.stdin, self._proc.stdout
        _send(self._in, ("init", model, feeds))
        assert _recv(self._out) == "ready"

    def run(self) -> list[Any]:
        """One run's outputs (to check ours against)."""
        _send(self._in, ("run",))
        outputs: list[Any] = _recv(self._out)
        return outputs

    def timed(self, n: int) -> list[float]:
        """Seconds of each of ``n`` runs, timed in the child."""
        _send(self._in, ("time", n))
        samples: list[float] = _recv(self._out)
        return samples

    def close(self) -> None:
        """End the child."""
        self._in.close()
        self._proc.wait(10)

    def __enter__(self) -> BareSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve() -> None:
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    _, model, feeds = _recv(source)
    session = bare_session(model)
    _send(sink, "ready")
    while True:
        try:
            request = _recv(source)
        except EOFError:
            return
        if request[0] == "run":
            _send(sink, session.run(None, feeds))
            continue
        samples = []
        for _ in range(request[1]):
            started = time.perf_counter()
            session.run(None, feeds)
            samples.append(time.perf_counter() - started)
        _send(sink, samples)


if __name__ == "__main__":
    _serve()
