"""A large model is pulled in by parallel ranged preads while it is hashed in order."""

from __future__ import annotations

import hashlib
import os
import threading
import time

from chalicelib.store import streaming
from chalicelib.store.streaming import HashingReader

MIB = 1024 * 1024


def recorded_preads(monkeypatch, latency: float = 0.0) -> list[tuple[int, int, int]]:
    calls: list[tuple[int, int, int]] = []
    real = os.preadv

    def preadv(fd, buffers, offset):
        time.sleep(latency)  # a network mount's round trip: no one reader takes every stripe
        got = real(fd, buffers, offset)
        calls.append((offset, got, threading.get_ident()))
        return got

    monkeypatch.setattr(os, "preadv", preadv)
    return calls


def hashed(path: str) -> str:
    with open(path, "rb") as f:
        reader = HashingReader(f)
        assert reader.native_path() is not None
        return reader.finish()


def test_a_large_file_is_read_by_parallel_ranged_preads_and_hashed_whole(tmp_path, monkeypatch):
    data = os.urandom(streaming.PARALLEL_MIN + 3 * MIB + 12345)  # not a whole number of stripes
    path = tmp_path / "big.onnx"
    path.write_bytes(data)
    calls = recorded_preads(monkeypatch, latency=0.002)
    assert hashed(str(path)) == hashlib.sha256(data).hexdigest()
    # Every byte fetched exactly once, in reads of at most READ_BYTES, by several readers.
    covered = sorted((offset, got) for offset, got, _ in calls if got > 0)
    assert sum(got for _, got in covered) == len(data)
    assert all(got <= streaming.READ_BYTES for _, got in covered)
    assert all(a + n == b for (a, n), (b, _) in zip(covered, covered[1:]))
    assert len({thread for _, _, thread in calls}) > 1


def test_a_small_file_is_hashed_from_its_mapping_alone(tmp_path, monkeypatch):
    data = os.urandom(MIB)
    path = tmp_path / "small.onnx"
    path.write_bytes(data)
    calls = recorded_preads(monkeypatch)
    assert hashed(str(path)) == hashlib.sha256(data).hexdigest()
    assert calls == []


def test_readers_that_fail_leave_the_hash_to_read_the_file_itself(tmp_path, monkeypatch):
    data = os.urandom(streaming.PARALLEL_MIN + MIB)
    path = tmp_path / "big.onnx"
    path.write_bytes(data)

    def failing(fd, buffers, offset):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "preadv", failing)
    assert hashed(str(path)) == hashlib.sha256(data).hexdigest()


def _rss_file() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) * 1024
    return 0


def test_hashed_stripes_leave_this_process_rss(tmp_path):
    # The file's pages stay cached for onnxruntime, but the service does not
    # keep the whole model mapped in its own RSS while the worker loads it.
    size = streaming.PARALLEL_MIN + 8 * MIB
    path = tmp_path / "big.onnx"
    path.write_bytes(os.urandom(size))
    with open(path, "rb") as f:
        reader = HashingReader(f)
        before = _rss_file()
        reader.native_path()
        reader._background.join()  # hashed, mapping still open
        grown = _rss_file() - before
        reader.finish()
    assert grown < size // 4, grown


def test_the_hash_holds_at_most_one_read_of_the_file_mapped_at_a_time(tmp_path):
    # Dropped read by read, not stripe by stripe: the service's share of a
    # cold load's peak stays about READ_BYTES, whatever the model's size.
    size = streaming.PARALLEL_MIN + 16 * MIB
    path = tmp_path / "big.onnx"
    path.write_bytes(os.urandom(size))
    peak, done = [0], threading.Event()

    def sample(before: int) -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_file() - before)
            time.sleep(0.0005)

    with open(path, "rb") as f:
        reader = HashingReader(f)
        sampler = threading.Thread(target=sample, args=(_rss_file(),))
        sampler.start()
        try:
            reader.native_path()
            assert reader.finish() == hashlib.sha256(path.read_bytes()).hexdigest()
        finally:
            done.set()
            sampler.join()
    assert peak[0] <= 4 * MIB, peak[0]
