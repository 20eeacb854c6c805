"""Progress bars (tqdm) for uploads and downloads, on stderr, only when asked or on a TTY."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import TracebackType
from typing import IO, Any

from tqdm import tqdm

#: Bytes read from a file per chunk sent.
CHUNK = 1024 * 1024


def wanted(flag: bool | None) -> bool:
    """``--progress`` / ``--no-progress`` when given, else whether stderr is a terminal."""
    return sys.stderr.isatty() if flag is None else flag


def bar(total: int | None, label: str, enabled: bool) -> tqdm[Any]:
    """A byte-counting bar on stderr (``disable=True`` draws nothing and costs nothing)."""
    return tqdm(
        total=total,
        desc=label,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=not enabled,
        leave=True,
        dynamic_ncols=True,
    )


class ReadingFile:
    """A file handed to ``requests`` as a body: read in chunks, counted on a bar.

    It has a length, so ``requests`` sends ``Content-Length`` and streams the
    body instead of using chunked encoding, which a presigned S3 PUT refuses.
    Chunks are 1 MiB, not http.client's 16 KiB reads: 64 times fewer bar updates.
    """

    def __init__(self, file: IO[bytes], size: int, progress: tqdm[Any]) -> None:
        self._file, self._size, self._bar = file, size, progress

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        """The file in chunks of CHUNK bytes, each counted (requests sends each as it comes)."""
        while chunk := self._file.read(CHUNK):
            self._bar.update(len(chunk))
            yield chunk

    def __enter__(self) -> ReadingFile:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._bar.close()
