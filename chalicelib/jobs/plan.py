"""``POST /jobs``: the request, and the blocks it splits into.

A block is a range of rows of one stored ``.npy`` input, ``[start, stop)``
along its first axis. Only the input's header is read here (its shape,
dtype and where the data starts), so planning a 600 MB input costs one
small read; workers later map just their own rows of the same file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from chalicelib.config import Settings
from chalicelib.errors import InvalidRequest, NotFound
from chalicelib.names import INPUTS, MODELS, ObjectRef, is_valid_name, parse_key, validate_name
from chalicelib.store import Manifest, Store

_FIELDS = {"model", "version", "input", "inputPrefix", "batchSize", "outputs"}


@dataclass(frozen=True)
class JobRequest:
    """A validated ``POST /jobs`` body."""

    model: ObjectRef
    version: int | None
    input: ObjectRef | None
    prefix: str | None
    batch_size: int | None
    outputs: tuple[str, ...] | None


def _ref(value: Any, field: str, kind: str) -> ObjectRef:
    if isinstance(value, str) and "/" in value:
        return parse_key(value, field, kinds=(kind,))
    return ObjectRef(kind, validate_name(value, field))


def _positive_int(body: Mapping[str, Any], field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest(f"'{field}' must be a positive integer")
    return value


def parse_job(body: Mapping[str, Any]) -> JobRequest:
    """Validate a ``POST /jobs`` body (no I/O)."""
    unknown = sorted(k for k in body if k not in _FIELDS)
    if unknown:
        raise InvalidRequest("Unknown field(s): " + ", ".join(repr(k[:40]) for k in unknown[:5]))
    if "model" not in body:
        raise InvalidRequest("Request body must contain 'model' and 'input' (or 'inputPrefix')")
    if ("input" in body) == ("inputPrefix" in body):
        raise InvalidRequest("Give either 'input' (one stored .npy) or 'inputPrefix' (every input it starts)")
    model = _ref(body["model"], "model", MODELS)
    input_ref = _ref(body["input"], "input", INPUTS) if "input" in body else None
    prefix = None
    if "inputPrefix" in body:
        raw = body["inputPrefix"]
        if not isinstance(raw, str) or not raw.startswith(f"{INPUTS}/"):
            raise InvalidRequest(f"'inputPrefix' must be a string starting with '{INPUTS}/'")
        prefix = raw[len(INPUTS) + 1 :]
        if not prefix or "/" in prefix:
            raise InvalidRequest("'inputPrefix' must be 'inputs/<start of names>' (names are flat)")
    if prefix is not None and "batchSize" in body:
        raise InvalidRequest("'batchSize' goes with 'input'; an 'inputPrefix' job runs one block per stored input")
    outputs = body.get("outputs")
    if outputs is not None:
        if (
            not isinstance(outputs, list)
            or not outputs
            or not all(isinstance(o, str) and o for o in outputs)
            or len(set(outputs)) != len(outputs)
        ):
            raise InvalidRequest("'outputs' must be a non-empty list of distinct output names")
        outputs = tuple(outputs)
    return JobRequest(
        model, _positive_int(body, "version"), input_ref, prefix, _positive_int(body, "batchSize"), outputs
    )


@dataclass(frozen=True)
class NpyHeader:
    """Where an ``.npy``'s rows are: dtype, shape, and the data's offset."""

    dtype: str
    shape: tuple[int, ...]
    offset: int

    @property
    def row_elements(self) -> int:
        """Values in one row (one index along the first axis)."""
        n = 1
        for d in self.shape[1:]:
            n *= d
        return n


def read_npy_header(store: Store, ref: ObjectRef) -> tuple[Manifest, NpyHeader]:
    """The stored input's manifest and ``.npy`` header (one small read), or InvalidRequest."""
    import numpy as np

    if not ref.name.lower().endswith(".npy"):
        raise InvalidRequest(f"Input '{ref.name}' must be an .npy file to be split into rows")
    try:
        with store.open(ref) as (manifest, f):
            try:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read(f)
            except (ValueError, OSError, SyntaxError):
                raise InvalidRequest(f"Input '{ref.name}' is not a valid .npy file") from None
            offset = f.tell()
    except FileNotFoundError:
        raise NotFound(None, f"Input '{ref.name}' not found on EFS") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise InvalidRequest(f"Input '{ref.name}' holds {dtype}; jobs read numeric or boolean arrays")
    if len(shape) < 1:
        raise InvalidRequest(f"Input '{ref.name}' is a scalar; jobs split inputs along their first axis")
    if fortran and len(shape) > 1:
        raise InvalidRequest(f"Input '{ref.name}' is Fortran-ordered: its rows are not contiguous; save it C-ordered")
    if offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != manifest.size:
        raise InvalidRequest(f"Input '{ref.name}' is truncated or has trailing bytes")
    return manifest, NpyHeader(dtype.str, tuple(int(d) for d in shape), offset)


def _block_rows(header: NpyHeader, requested: int | None, settings: Settings, name: str) -> int:
    """Rows per block: what was asked, else JOB_BATCH_SIZE, within MAX_TENSOR_ELEMENTS."""
    per_row = max(1, header.row_elements)
    most = settings.max_tensor_elements // per_row
    if most < 1:
        raise InvalidRequest(
            f"One row of '{name}' holds {per_row} values, more than one run may take (MAX_TENSOR_ELEMENTS)"
        )
    if requested is not None and requested > most:
        raise InvalidRequest(
            f"'batchSize' {requested} x {per_row} values per row exceeds MAX_TENSOR_ELEMENTS "
            f"({settings.max_tensor_elements}); at most {most} rows per block"
        )
    return requested or min(settings.job_batch_size, most)


def _inputs(store: Store, req: JobRequest) -> list[ObjectRef]:
    if req.input is not None:
        return [req.input]
    assert req.prefix is not None
    refs = [
        ObjectRef(INPUTS, m.key.split("/", 1)[1])
        for m in store.list(INPUTS)
        if m.key.split("/", 1)[1].startswith(req.prefix) and is_valid_name(m.key.split("/", 1)[1])
    ]
    if not refs:
        raise NotFound(None, f"No stored input starts with '{INPUTS}/{req.prefix}'")
    return refs


def plan_blocks(store: Store, settings: Settings, req: JobRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The job's inputs (key, sha256, dtype, shape, offset) and its blocks
    (``{"input": index, "start", "stop"}``), or a 400/404 naming the problem."""
    inputs: list[dict[str, Any]] = []
    blocks: list[dict[str, Any]] = []
    for ref in _inputs(store, req):
        manifest, header = read_npy_header(store, ref)
        rows = header.shape[0]
        if rows == 0:
            raise InvalidRequest(f"Input '{ref.name}' has no rows")
        index = len(inputs)
        inputs.append(
            {
                "key": ref.key,
                "sha256": manifest.sha256,
                "dtype": header.dtype,
                "shape": list(header.shape),
                "offset": header.offset,
            }
        )
        # A prefix job makes one block per stored input, as documented.
        step = rows if req.prefix is not None else _block_rows(header, req.batch_size, settings, ref.name)
        if req.prefix is not None:
            _block_rows(header, rows, settings, ref.name)  # the whole input must fit one run
        blocks += [{"input": index, "start": s, "stop": min(s + step, rows)} for s in range(0, rows, step)]
        if len(blocks) > settings.job_max_blocks:
            raise InvalidRequest(
                f"The job would have more than {settings.job_max_blocks} blocks (JOB_MAX_BLOCKS); raise 'batchSize'"
            )
    return inputs, blocks
