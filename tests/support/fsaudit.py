"""Record filesystem access of this process with a PEP 578 audit hook.

Inside ``watch(root, forbidden)``, every audited file operation is resolved
(symlinks included, as the kernel would for that call) and kept if it
touches ``forbidden`` at all, or writes anywhere outside ``root``. Reads
elsewhere (imports, /etc/mime.types) are not of interest.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

_active: list[tuple[str, str, list]] = []
_WRITE_EVENTS = {
    "os.rename",
    "os.replace",
    "os.remove",
    "os.mkdir",
    "os.rmdir",
    "os.symlink",
    "os.link",
    "os.truncate",
    "os.chmod",
    "os.chown",
}
_READ_EVENTS = {"os.listdir", "os.scandir"}
# Operations on the final component itself, not on what a symlink points to.
_NOFOLLOW_EVENTS = {"os.rename", "os.replace", "os.remove", "os.rmdir", "os.symlink", "os.link", "os.mkdir"}


def _resolve(path, nofollow: bool) -> str | None:
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        return None  # a descriptor
    path = os.path.abspath(path)
    if nofollow:
        return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    return os.path.realpath(path)


def _within(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def _hook(event: str, args: tuple) -> None:
    if not _active or not (event == "open" or event in _WRITE_EVENTS or event in _READ_EVENTS):
        return
    root, forbidden, log = _active[-1]
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None))[:3]
        flags = flags if isinstance(flags, int) else 0
        writes = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)) or (
            isinstance(mode, str) and any(c in mode for c in "wax+")
        )
        paths = [(path, bool(flags & os.O_NOFOLLOW))]
    else:
        writes = event in _WRITE_EVENTS
        paths = [(a, event in _NOFOLLOW_EVENTS) for a in args[:2] if isinstance(a, (str, bytes))]
        if event == "os.symlink":
            paths = paths[1:]  # the link is created; its target is only text
    for p, nofollow in paths:
        resolved = _resolve(p, nofollow)
        if resolved is None:
            continue
        if _within(resolved, forbidden) or (writes and not _within(resolved, root)):
            log.append((event, resolved))


sys.addaudithook(_hook)


@contextmanager
def watch(root: str, forbidden: str):
    """Yield a list that collects offending accesses while the block runs."""
    log: list = []
    _active.append((os.path.realpath(root), os.path.realpath(forbidden), log))
    try:
        yield log
    finally:
        _active.pop()
