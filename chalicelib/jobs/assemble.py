"""A finished job's outputs: one ``.npy`` per output, rows in input order.

Each output file is streamed onto the store block by block (the header,
then each block's rows: one block's output in memory at a time), committed
by the store like any object (``outputs/<jobId>.<output>.npy``, with its
manifest), then archived to S3 by a multipart upload of the stored file.
Assembly is idempotent: two workers that both see the last block done
write the same bytes (the store answers the second ``exists``), and
``results.json`` is written last, so a crash anywhere before it is redone
by the block message's redelivery.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from chalicelib import s3
from chalicelib.config import Settings
from chalicelib.errors import InvalidRequest
from chalicelib.jobs.state import JobFiles, iso
from chalicelib.names import OUTPUTS, ObjectRef, is_valid_name
from chalicelib.store import Store


def output_ref(job_id: str, index: int, name: str) -> ObjectRef:
    """Where output ``name`` of a job is assembled (by index if the name is not storable)."""
    candidate = f"{job_id}.{name}.npy"
    return ObjectRef(OUTPUTS, candidate if is_valid_name(candidate) else f"{job_id}.output{index}.npy")


def _block(files: JobFiles, job_id: str, block: int, name: str) -> Any:
    import numpy as np

    with np.load(files.path(job_id, "blocks", f"{block}.npz"), allow_pickle=False) as z:
        return z[name]


def _header(dtype: Any, shape: tuple[int, ...]) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    try:
        np.lib.format.write_array_header_1_0(buf, header)
    except ValueError:  # a very long shape: version 2.0 headers
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


def _chunks(files: JobFiles, job_id: str, blocks: list[dict[str, Any]], name: str, first: Any) -> Iterator[bytes]:
    import numpy as np

    total = sum(b["stop"] - b["start"] for b in blocks)
    yield _header(first.dtype, (total, *first.shape[1:]))
    for i in range(len(blocks)):
        array = first if i == 0 else _block(files, job_id, i, name)
        if array.dtype != first.dtype or array.shape[1:] != first.shape[1:]:
            raise InvalidRequest(
                f"Output '{name}' of block {i} has shape {list(array.shape)} {array.dtype}, but block 0's rows are "
                f"{list(first.shape[1:])} {first.dtype}: the blocks cannot be joined into one array"
            )
        yield np.ascontiguousarray(array).tobytes()


def assemble(store: Store, settings: Settings, files: JobFiles, job_id: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Join every block's outputs, store and archive them, write ``results.json``; its document."""
    import numpy as np

    blocks = plan["blocks"]
    with np.load(files.path(job_id, "blocks", "0.npz"), allow_pickle=False) as z:
        names = list(z.files)
    outputs = {}
    for index, name in enumerate(names):
        ref = output_ref(job_id, index, name)
        first = _block(files, job_id, 0, name)
        put = store.put(ref, _chunks(files, job_id, blocks, name, first), source=f"job:{job_id}")
        s3_key = None
        if settings.bucket:
            s3.upload_file(settings, settings.bucket, store.path(ref), ref.key)
            s3_key = ref.key
        total = sum(b["stop"] - b["start"] for b in blocks)
        outputs[name] = {
            "efsPath": store.path(ref),
            "s3Key": s3_key,
            "shape": [total, *first.shape[1:]],
            "dtype": str(first.dtype),
            "sizeBytes": put.manifest.size,
            "sha256": put.manifest.sha256,
        }
    doc = {"outputs": outputs, "finishedAt": iso(_now())}
    files.write_json(job_id, ("results.json",), doc)
    return doc


def _now() -> float:
    import time

    return time.time()
