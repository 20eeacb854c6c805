"""A session that lives in the inference worker, as the service process sees it.

It answers ``get_inputs()`` / ``get_outputs()`` locally (objects with
``.name``, ``.type``, ``.shape``, like onnxruntime's ``NodeArg``), so
requests are validated without a round trip, and forwards runs to the
worker through the :mod:`supervisor`. It is valid while the worker that
loaded it lives: a killed worker takes its sessions with it, and the model
cache reloads the model on demand (:meth:`RemoteSession.alive`). When the
service drops it (cache eviction), the worker drops its session too.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from chalicelib.runners.supervisor import Sizing, Supervisor


@dataclass(frozen=True)
class NodeArg:
    """One declared input or output (name, ONNX type, shape with symbols)."""

    name: str
    type: str
    shape: list[Any] | None


class RemoteSession:
    """A proxy of one session in the worker of ``generation``."""

    def __init__(
        self,
        supervisor: Supervisor,
        sid: str,
        generation: int,
        sizing: Sizing,
        inputs: list[tuple[str, str, Any]],
        outputs: list[tuple[str, str, Any]],
    ) -> None:
        self.supervisor = supervisor
        self.sid = sid
        self.generation = generation
        self.sizing = sizing
        self._inputs = [NodeArg(*arg) for arg in inputs]
        self._outputs = [NodeArg(*arg) for arg in outputs]
        weakref.finalize(self, supervisor.release, generation, sid)

    def get_inputs(self) -> list[NodeArg]:
        """The model's declared inputs."""
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        """The model's declared outputs."""
        return list(self._outputs)

    def alive(self) -> bool:
        """Whether the worker holding this session still runs."""
        return self.generation == self.supervisor.generation

    def run(
        self,
        output_names: list[str] | None,
        feeds: dict[str, Any],
        *,
        timeout: float,
        allowance: int,
        reply_limit: int = 0,
    ) -> Any:
        """The worker's reply to one run: ``("ok", outputs)`` or ``("err", kind, text)``
        (``"outputs"``: more than ``reply_limit`` bytes, never sent).

        Raises :class:`~chalicelib.runners.supervisor.Stopped` when the run
        was stopped (time, memory) or the worker died."""
        if not self.alive():
            return ("err", "gone", "the worker holding this session was replaced")
        reply, _ = self.supervisor.call(
            ("run", self.sid, output_names, feeds, reply_limit),
            sizing=self.sizing,
            timeout=timeout,
            allowance=allowance,
        )
        return reply
