"""Errors of the storage layer that are not (yet) a client-facing error.

The store raises the service's own errors where the meaning is the store's
(``EfsWriteFailed``, ``StoreCorrupt``, ``FileTooLarge``, ``DeadlineExceeded``).
What a failure *means to the client* beyond that is the caller's to say: a
stream that ended at the wrong size is a changed S3 object to ingest, but
only a size mismatch to the store.
"""

from __future__ import annotations


class SizeMismatch(Exception):
    """The stream ended at a size other than the one announced; nothing was stored."""

    def __init__(self, size: int, expected: int) -> None:
        self.size = size
        self.expected = expected
        super().__init__(f"Copied {size} bytes but the source announced {expected}; nothing was stored")


class VersionNotKept(LookupError):
    """A version number the name does not keep (pruned, never made, or the name is gone)."""

    def __init__(self, version: int, kept: list[int]) -> None:
        self.version = version
        self.kept = kept
        super().__init__(f"version {version} is not kept (kept: {kept})")
