"""Write-back overlapped with a streamed write, and its one-pass hashing."""

import hashlib
import os

from chalicelib.names import ObjectRef
from chalicelib.store import Store
from chalicelib.store import streaming as overlap
from chalicelib.store.streaming import MIB, WriteBehind


def chunks(total: int, size: int):
    block = os.urandom(size)
    for offset in range(0, total, size):
        yield block[: min(size, total - offset)]


def test_write_behind_hands_each_range_to_write_back_once(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(overlap, "_sync_file_range", lambda fd, off, n: calls.append((off, n)))
    wb = WriteBehind(fd=3, every=10)
    for n in (4, 4, 4, 9, 1, 30):
        wb.wrote(n)
    assert calls == [(0, 12), (12, 10), (22, 30)]


def test_sync_file_range_really_runs_on_a_file(tmp_path):
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        os.write(fd, b"a" * 8192)
        overlap._sync_file_range(fd, 0, 8192)  # must not raise, whatever the platform
    finally:
        os.close(fd)


def test_store_put_of_a_long_stream_hashes_in_one_pass(tmp_path):
    store = Store(str(tmp_path))
    data = list(chunks(40 * MIB + 5, MIB))
    result = store.put(ObjectRef("models", "big.bin"), iter(data), source="test")
    whole = b"".join(data)
    assert result.manifest.sha256 == hashlib.sha256(whole).hexdigest()
    assert result.manifest.size == len(whole)
    assert (tmp_path / "models" / "big.bin").read_bytes() == whole
