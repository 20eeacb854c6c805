"""Messages between the service and its inference worker, over a Unix socket.

One message is a pickle (protocol 5) whose large buffers (numpy arrays'
data) travel out of band: the frame is a fixed prefix (header length,
buffer count), the buffers' sizes, the pickle header, then each buffer's
raw bytes. The sender hands the arrays' own memory to ``sendmsg`` (no
copy into one bytes object); the receiver reads each buffer straight into
a fresh ``bytearray`` that the unpickled array then uses in place. So an
array crosses with one copy per side (into and out of the kernel), the
least a socket allows. Lambda has no ``/dev/shm``, so no shared-memory
transport; ``multiprocessing``'s Queue and Pool need it and are not used.
"""

from __future__ import annotations

import pickle
import socket
import struct
from typing import Any

_PREFIX = struct.Struct("<II")  # pickle header bytes, out-of-band buffer count
_SMALL = 64 * 1024  # frames under this go out joined, in one send
_IOV = 512  # parts per sendmsg


class ChannelClosed(EOFError):
    """The other end closed the socket (or died) before a whole message arrived."""


class TooLarge(ValueError):
    """A message is larger than the sender was allowed to send (nothing was sent)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"message of {size} bytes")
        self.size = size


def send(sock: socket.socket, message: Any, limit: int = 0) -> None:
    """Send ``message``: a picklable object whose buffers go out of band.
    Over ``limit`` bytes (0: no limit) nothing is sent: :class:`TooLarge`."""
    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    sizes = struct.pack(f"<{len(raws)}Q", *(r.nbytes for r in raws))
    parts: list[Any] = [_PREFIX.pack(len(header), len(raws)) + sizes, header, *raws]
    total = sum(memoryview(p).nbytes for p in parts)
    if limit and total > limit:
        raise TooLarge(total)
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


def recv(sock: socket.socket) -> Any:
    """The next whole message, or :class:`ChannelClosed`."""
    head_len, count = _PREFIX.unpack(_exactly(sock, _PREFIX.size))
    sizes = struct.unpack(f"<{count}Q", _exactly(sock, 8 * count)) if count else ()
    header = _exactly(sock, head_len)
    buffers = []
    for size in sizes:
        buffer = bytearray(size)
        _into(sock, memoryview(buffer))
        buffers.append(buffer)
    return pickle.loads(header, buffers=buffers)


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
