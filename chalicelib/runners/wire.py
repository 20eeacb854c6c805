"""Messages between the service and its inference worker: a Unix socket for
the frames, a shared mapping for the tensors.

One message is a pickle (protocol 5) whose large buffers (numpy arrays'
data) travel out of band. The frame is a fixed prefix (header length,
buffer count, where the buffers are), the buffers' sizes, then the pickle
header. The buffers go one of two ways:

* **Through a shared area** (:class:`Area`) when they fit: the sender
  copies each buffer into its half of a memory mapping both processes hold
  (a ``memfd``: Lambda has no ``/dev/shm``, but ``memfd_create`` needs no
  file system) and sends only the small frame. The worker's arrays view
  the area in place (no copy); the service copies what it receives out
  (one ``memcpy``), because its half is overwritten by the next reply.
  Measured (``make bench`` row 2): the socket path below cost 1.4-2.3 ms for
  one 602 KB image, mostly the sender blocking on the socket buffer (about
  200 KB) while the receiver drained it in turns on the same cores.
* **Through the socket** otherwise (no area, or buffers larger than it: a
  model's bytes, a large job block): the sender hands the arrays' own memory
  to ``sendmsg`` (no join into one bytes object); the receiver reads each
  buffer straight into a fresh ``bytearray`` that the unpickled array uses
  in place. One copy per side, the least a socket allows.

``multiprocessing``'s Queue and Pool need ``/dev/shm`` and are not used.
"""

from __future__ import annotations

import mmap
import os
import pickle
import socket
import struct
import tempfile
from typing import Any

_PREFIX = struct.Struct("<III")  # pickle header bytes, out-of-band buffer count, where
_SOCKET, _SHARED = 0, 1
_SMALL = 64 * 1024  # frames under this go out joined, in one send
_IOV = 512  # parts per sendmsg
_ALIGN = 64  # buffers start on cache lines (and any dtype's alignment)
AREA_BYTES = 8 * 1024 * 1024
"""Each direction's half of the shared mapping: one request's tensors at the
default ``MAX_TENSOR_ELEMENTS`` (1,000,000 values: 8 MB at 8 bytes) fit;
larger messages take the socket. Pages are only allocated when touched."""


class ChannelClosed(EOFError):
    """The other end closed the socket (or died) before a whole message arrived."""


class TooLarge(ValueError):
    """A message is larger than the sender was allowed to send (nothing was sent)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"message of {size} bytes")
        self.size = size


class Area:
    """One process's view of the shared mapping: the half it writes its
    messages' buffers into (``tx``) and the half it reads the other side's
    from (``rx``). ``copy_out``: received buffers are copied out of ``rx``
    (the service, which keeps results past the next call), or used in place
    (the worker, whose inputs are done with when it answers)."""

    def __init__(self, fd: int, *, parent: bool, half: int = AREA_BYTES) -> None:
        self._map = mmap.mmap(fd, 2 * half, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        view = memoryview(self._map)
        low, high = view[:half], view[half:]
        self.tx, self.rx = (low, high) if parent else (high, low)
        self.copy_out = parent
        self._view = view

    @staticmethod
    def create(half: int = AREA_BYTES, memfd: bool = True) -> int | None:
        """A fresh shared file of two halves, inheritable by a spawned child:
        a ``memfd``, else (a kernel or seccomp filter without
        ``memfd_create``) an unlinked file in the temporary directory
        (Lambda's ``/tmp``), else None (the socket carries everything)."""
        fd = -1
        if memfd:
            try:
                fd = os.memfd_create("efsml-wire", 0)
            except (AttributeError, OSError):
                fd = -1
        if fd < 0:
            try:
                with tempfile.TemporaryFile(prefix="efsml-wire-") as unlinked:
                    fd = os.dup(unlinked.fileno())
            except OSError:
                return None
        try:
            os.ftruncate(fd, 2 * half)
        except OSError:
            os.close(fd)
            return None
        return fd

    def close(self) -> None:
        """Unmap (views still held elsewhere keep it until they go)."""
        for view in (self.tx, self.rx, self._view):
            view.release()
        try:
            self._map.close()
        except BufferError:  # an array still views it: the GC unmaps it later
            pass


def send(sock: socket.socket, message: Any, limit: int = 0, area: Area | None = None) -> None:
    """Send ``message``: a picklable object whose buffers go out of band,
    through ``area`` when they fit in it. Over ``limit`` bytes (0: no
    limit) nothing is sent: :class:`TooLarge`."""
    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    sizes = [r.nbytes for r in raws]
    total = len(header) + sum(sizes)
    if limit and total > limit:
        raise TooLarge(total)
    packed = struct.pack(f"<{len(sizes)}Q", *sizes)
    if raws and area is not None and _end(sizes) <= area.tx.nbytes:
        offset = 0
        for raw, size in zip(raws, sizes, strict=True):
            area.tx[offset : offset + size] = raw
            offset = _aligned(offset + size)
        sock.sendall(b"".join((_PREFIX.pack(len(header), len(raws), _SHARED), packed, header)))
        return
    parts: list[Any] = [_PREFIX.pack(len(header), len(raws), _SOCKET) + packed, header, *raws]
    if total <= _SMALL:
        sock.sendall(b"".join(parts))
        return
    # Large frames: sendmsg gathers the parts without joining them, at most
    # _IOV parts per call (the kernel's IOV_MAX is 1024); a partial send
    # (socket buffer full) is finished part by part.
    for first in range(0, len(parts), _IOV):
        group = parts[first : first + _IOV]
        sent = sock.sendmsg(group)
        for part in group:
            view = memoryview(part).cast("B")
            if sent >= view.nbytes:
                sent -= view.nbytes
                continue
            sock.sendall(view[sent:])
            sent = 0


def recv(sock: socket.socket, area: Area | None = None) -> Any:
    """The next whole message, or :class:`ChannelClosed`."""
    head_len, count, where = _PREFIX.unpack(_exactly(sock, _PREFIX.size))
    sizes = struct.unpack(f"<{count}Q", _exactly(sock, 8 * count)) if count else ()
    header = _exactly(sock, head_len)
    buffers: list[Any] = []
    if where == _SHARED:
        if area is None or _end(sizes) > area.rx.nbytes:
            raise ChannelClosed("a message in a shared area this end does not have")
        offset = 0
        for size in sizes:
            view = area.rx[offset : offset + size]
            buffers.append(bytearray(view) if area.copy_out else view)
            offset = _aligned(offset + size)
        return pickle.loads(header, buffers=buffers)
    for size in sizes:
        buffer = bytearray(size)
        _into(sock, memoryview(buffer))
        buffers.append(buffer)
    return pickle.loads(header, buffers=buffers)


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def _end(sizes: Any) -> int:
    """Bytes of the area that buffers of ``sizes`` take, laid out aligned."""
    offset = 0
    for size in sizes:
        offset = _aligned(offset + size)
    return offset


def _exactly(sock: socket.socket, n: int) -> bytes:
    if n == 0:
        return b""
    data = sock.recv(n)
    if len(data) == n:
        return data
    buffer = bytearray(data)
    while len(buffer) < n:
        if not data:
            raise ChannelClosed("the inference worker's channel closed")
        data = sock.recv(n - len(buffer))
        buffer += data
    return bytes(buffer)


def _into(sock: socket.socket, view: memoryview) -> None:
    while view.nbytes:
        got = sock.recv_into(view)
        if not got:
            raise ChannelClosed("the inference worker's channel closed")
        view = view[got:]
