"""The inference worker and its supervisor: real child processes, real sessions.

The wire format round-trips arrays (out-of-band buffers, no needless copy);
the supervisor answers, stops a run at its deadline or memory bound by
killing the worker (reaped at once: nothing keeps running), reports a
crash, and the next call gets a fresh worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from chalicelib.runners import supervisor, wire
from tests.support import hostile_models as hm
from tests.support.onnx_models import Mlp

MIB = 1024 * 1024
SIZING = supervisor.Sizing(model_cache_bytes=128 * MIB, inference_memory_bytes=128 * MIB)


def roundtrip(message):
    a, b = socket.socketpair()
    got = {}
    reader = threading.Thread(target=lambda: got.setdefault("m", wire.recv(b)))
    reader.start()
    wire.send(a, message)
    reader.join(10)
    a.close(), b.close()
    return got["m"]


def test_wire_round_trips_arrays_of_every_layout_out_of_band():
    big = np.arange(3 * 224 * 224, dtype=np.float32).reshape(1, 3, 224, 224)
    message = {
        "big": big,
        "fortran": np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4)),
        "strided": np.arange(10.0)[::2],
        "scalar": np.array(3.5),
        "strings": np.array(["a", "bé"], dtype=object),
        "none": None,
    }
    back = roundtrip(("run", [], message))
    for key, value in message.items():
        if value is None:
            assert back[2][key] is None
        else:
            np.testing.assert_array_equal(back[2][key], value)
            assert back[2][key].dtype == value.dtype
    # The big array arrived in its own buffer, writable, not a copy of a joined frame.
    assert back[2]["big"].flags.writeable and back[2]["big"].base is not None


def test_wire_reports_a_closed_channel():
    a, b = socket.socketpair()
    a.sendall(b"\x05\x00")  # half a prefix, then gone
    a.close()
    with pytest.raises(wire.ChannelClosed):
        wire.recv(b)
    b.close()


def area_pair(half=wire.AREA_BYTES, memfd=True):
    fd = wire.Area.create(half, memfd=memfd)
    assert fd is not None
    try:
        return wire.Area(fd, parent=True, half=half), wire.Area(fd, parent=False, half=half)
    finally:
        os.close(fd)


@pytest.mark.parametrize("memfd", [True, False], ids=["memfd", "tmp-file"])
def test_tensors_cross_a_shared_area_in_place_for_the_worker_and_copied_for_the_service(memfd):
    service, worker = area_pair(memfd=memfd)
    a, b = socket.socketpair()
    image = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    wire.send(a, ("run", [], {"x": image}), area=service)
    # Only the frame crossed the socket: the 602 KB are in the area.
    assert len(b.recv(1 << 20, socket.MSG_PEEK)) < 1024
    got = wire.recv(b, worker)[2]["x"]
    np.testing.assert_array_equal(got, image)
    assert got.flags.c_contiguous and got.ctypes.data % 64 == 0
    # The worker's array is the area itself: no copy on its side.
    service.tx[:4] = b"\x00\x00\x80\x7f"  # +inf over the first value
    assert got.ravel()[0] == np.inf
    # The service's copy of a reply survives the next reply through the area.
    first = np.arange(10, dtype=np.int64)
    wire.send(b, ("ok", [first]), area=worker)
    back = wire.recv(a, service)[1][0]
    wire.send(b, ("ok", [np.zeros(10, np.int64)]), area=worker)
    wire.recv(a, service)
    np.testing.assert_array_equal(back, first)
    del got
    a.close(), b.close()
    service.close(), worker.close()


def test_messages_larger_than_the_area_take_the_socket():
    service, worker = area_pair(half=64 * 1024)
    a, b = socket.socketpair()
    got = {}
    big = np.arange(100_000, dtype=np.float64)  # 800 KB: over the 64 KiB area
    reader = threading.Thread(target=lambda: got.setdefault("m", wire.recv(b, worker)))
    reader.start()
    wire.send(a, ("run", [], {"big": big, "small": np.ones(3)}), area=service)
    reader.join(10)
    np.testing.assert_array_equal(got["m"][2]["big"], big)
    np.testing.assert_array_equal(got["m"][2]["small"], np.ones(3))
    a.close(), b.close()
    service.close(), worker.close()


def test_a_frame_for_an_area_the_receiver_lacks_is_refused():
    service, _ = area_pair(half=4096)
    a, b = socket.socketpair()
    wire.send(a, ("ok", [np.ones(8)]), area=service)
    with pytest.raises(wire.ChannelClosed):
        wire.recv(b)
    a.close(), b.close()
    service.close()


@pytest.fixture
def sup():
    s = supervisor.Supervisor()
    yield s
    s.stop()


def load(sup, tmp_path, name, model, timeout=30.0):
    path = tmp_path / name
    path.write_bytes(model)
    reply, generation = sup.call(
        ("load", f"{name}@sha", str(path), name, 64 * MIB, len(model)),
        sizing=SIZING,
        timeout=timeout,
        allowance=256 * MIB,
    )
    return reply, generation


def run(sup, name, feeds, timeout=5.0, allowance=64 * MIB):
    return sup.call(("run", f"{name}@sha", None, feeds, 0), sizing=SIZING, timeout=timeout, allowance=allowance)


def tree_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_worker_loads_and_runs_and_the_parent_never_imports_onnxruntime(sup, tmp_path):
    mlp = Mlp.random(4, 8, 3)
    reply, generation = load(sup, tmp_path, "mlp.onnx", mlp.onnx_bytes())
    assert reply[0] == "ok" and reply[1] == [("x", "tensor(float)", ["batch", 4])] and reply[3] > 0
    x = np.ones((2, 4), np.float32)
    (status, outputs), again = run(sup, "mlp.onnx", {"x": x})
    assert status == "ok" and again == generation
    np.testing.assert_allclose(outputs[0], mlp.reference(x), rtol=1e-5)
    # A bad input is the worker's answer, not a crash: the worker stays.
    status, kind, text = run(sup, "mlp.onnx", {"x": np.ones((2, 5), np.float32)})[0]
    assert (status, kind) == ("err", "invalid") and sup.generation == generation
    code = "import sys, chalicelib.runners.supervisor; sys.exit('onnxruntime' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_run_past_its_deadline_is_killed_and_the_next_call_gets_a_new_worker(sup, tmp_path):
    load(sup, tmp_path, "loop.onnx", hm.endless_loop())
    pid, generation = sup.pid(), sup.generation
    started = time.monotonic()
    with pytest.raises(supervisor.Stopped) as stopped:
        run(sup, "loop.onnx", {"x": np.ones(1, np.float32)}, timeout=0.5)
    assert stopped.value.reason == "time" and time.monotonic() - started < 1.5
    assert not os.path.exists(f"/proc/{pid}")  # killed and reaped: no CPU spent after the answer
    assert sup.generation > generation and sup.pid() is None
    reply, new_generation = load(sup, tmp_path, "mlp.onnx", Mlp.random().onnx_bytes())
    assert reply[0] == "ok" and new_generation == sup.generation and sup.pid() != pid


def test_memory_outside_the_arena_is_stopped_by_the_rss_watchdog(sup, tmp_path):
    load(sup, tmp_path, "strings.onnx", hm.string_doubling())
    with pytest.raises(supervisor.Stopped) as stopped:
        run(sup, "strings.onnx", {"s": np.array(["ab"], dtype=object)}, timeout=30, allowance=64 * MIB)
    assert stopped.value.reason == "memory"
    assert sup.pid() is None


def test_a_worker_that_dies_is_a_crash_and_is_replaced(sup, tmp_path):
    load(sup, tmp_path, "loop.onnx", hm.endless_loop())
    pid = sup.pid()
    threading.Timer(0.3, os.kill, (pid, signal.SIGSEGV)).start()
    with pytest.raises(supervisor.Stopped) as stopped:
        run(sup, "loop.onnx", {"x": np.ones(1, np.float32)}, timeout=10)
    assert stopped.value.reason == "crash" and "signal 11" in stopped.value.detail
    assert load(sup, tmp_path, "mlp.onnx", Mlp.random().onnx_bytes())[0][0] == "ok"


def test_a_worker_that_never_starts_is_stopped_at_the_deadline(tmp_path):
    sleeper = supervisor.Supervisor(command=[sys.executable, "-c", "import time; time.sleep(60)"])
    started = time.monotonic()
    with pytest.raises(supervisor.Stopped) as stopped:
        sleeper.call(("run", "x", None, {}, 0), sizing=SIZING, timeout=0.5, allowance=MIB)
    assert stopped.value.reason == "time" and time.monotonic() - started < 1.5
    assert sleeper.pid() is None


def test_waiting_for_another_call_is_bounded(sup, tmp_path):
    load(sup, tmp_path, "loop.onnx", hm.endless_loop())
    first = threading.Thread(
        target=lambda: pytest.raises(supervisor.Stopped, run, sup, "loop.onnx", {"x": np.ones(1, np.float32)}, 2.0)
    )
    first.start()
    time.sleep(0.2)
    started = time.monotonic()
    with pytest.raises(supervisor.Stopped) as stopped:
        run(sup, "loop.onnx", {"x": np.ones(1, np.float32)}, timeout=0.3)
    assert stopped.value.reason == "time" and time.monotonic() - started < 1.0
    first.join(10)


def test_dropped_sessions_leave_the_worker_and_a_new_sizing_restarts_it(sup, tmp_path):
    load(sup, tmp_path, "mlp.onnx", Mlp.random().onnx_bytes())
    sup.release(sup.generation, "mlp.onnx@sha")
    status, kind, _ = run(sup, "mlp.onnx", {"x": np.ones((1, 4), np.float32)})[0]
    assert (status, kind) == ("err", "failed")  # dropped before this run
    pid = sup.pid()
    bigger = supervisor.Sizing(256 * MIB, 256 * MIB)
    sup.call(("noop",), sizing=bigger, timeout=30, allowance=MIB)
    assert sup.pid() != pid


def test_worker_exits_when_its_parent_dies(tmp_path):
    code = (
        "import sys, time; from chalicelib.runners import supervisor as s; "
        "sup = s.Supervisor(); sup.call(('noop',), sizing=s.Sizing(1 << 26, 1 << 26), timeout=30, allowance=1); "
        "print(sup.pid(), flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    worker = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and os.path.exists(f"/proc/{worker}"):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{worker}") or open(f"/proc/{worker}/stat").read().split()[2] == "Z"


def test_wire_sends_more_buffers_than_one_sendmsg_takes():
    # A sequence output of 2,000 tensors: more parts than the kernel's IOV_MAX.
    arrays = [np.full(600, i, np.float32) for i in range(2000)]
    back = roundtrip(("ok", arrays))
    assert len(back[1]) == 2000 and all((a == i).all() for i, a in enumerate(back[1]))


def test_rlimit_data_stops_what_the_watchdog_would_miss(tmp_path):
    # The watchdog effectively off (one check per 100 s): the worker's own
    # RLIMIT_DATA (data at start + sizing + DATA_SLACK) fails the string
    # Tile's allocations inside onnxruntime, an error the worker survives.
    lazy = supervisor.Supervisor(tick=100.0)
    small = supervisor.Sizing(64 * MIB, 64 * MIB)
    try:
        path = tmp_path / "tile.onnx"
        path.write_bytes(hm.string_tile(3000))
        reply, _ = lazy.call(("load", "t", str(path), "t", 64 * MIB, 300), sizing=small, timeout=30, allowance=1 << 40)
        assert reply[0] == "ok"
        pid = lazy.pid()
        feeds = {"s": np.array(["x" * MIB], dtype=object)}
        reply, _ = lazy.call(("run", "t", None, feeds, 0), sizing=small, timeout=60, allowance=1 << 40)
        assert reply[:2] == ("err", "memory")
        with open(f"/proc/{pid}/status") as f:
            peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
        assert peak < 128 * MIB + supervisor.DATA_SLACK + 150 * MIB  # 3 GB without the limit
        assert lazy.pid() == pid  # the worker survived its failed run
    finally:
        lazy.stop()


def test_outputs_too_large_to_send_stay_in_the_worker(sup, tmp_path):
    load(sup, tmp_path, "mlp.onnx", Mlp.random(4, 8, 3).onnx_bytes())
    feeds = {"x": np.ones((1000, 4), np.float32)}  # 12 KB of outputs
    reply, _ = sup.call(("run", "mlp.onnx@sha", None, feeds, 4096), sizing=SIZING, timeout=10, allowance=64 * MIB)
    assert reply[:2] == ("err", "outputs") and int(reply[2]) > 12_000
    reply, _ = sup.call(("run", "mlp.onnx@sha", None, feeds, 0), sizing=SIZING, timeout=10, allowance=64 * MIB)
    assert reply[0] == "ok" and reply[1][0].shape == (1000, 3)


def test_a_freeze_of_the_whole_sandbox_does_not_count_against_a_load(tmp_path):
    # Lambda freezes the sandbox (service and worker) between invocations; a
    # load that goes on after a 503 resumes on the next invoke. Here the
    # process group is stopped for 7 s in the middle of a ~2 s load bounded
    # at 6 s: without the freeze allowance the watchdog kills it on thaw.
    from tests.support.hostile_models import node_chain

    path = tmp_path / "slow.onnx"
    model = node_chain(50_000)
    path.write_bytes(model)
    code = (
        "import sys; from chalicelib.runners import supervisor as s; "
        "sz = s.Sizing(1 << 28, 1 << 28); sup = s.Supervisor(); "
        "sup.call(('noop',), sizing=sz, timeout=30, allowance=1 << 30); print('ready', flush=True)\n"
        "try:\n"
        f"    r, _ = sup.call(('load', 'slow@sha', {str(path)!r}, 'slow.onnx', 1 << 28, {len(model)}), "
        "sizing=sz, timeout=6.0, allowance=1 << 29); print(r[0], flush=True)\n"
        "except s.Stopped as e:\n"
        "    print('stopped', e.reason, flush=True)\n"
        "sup.stop()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        start_new_session=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # the load is under way
        os.killpg(child.pid, signal.SIGSTOP)
        time.sleep(7.0)
        os.killpg(child.pid, signal.SIGCONT)
        assert child.stdout.readline().strip() == "ok"
    finally:
        child.kill()
        child.wait()


def test_a_run_through_the_area_keeps_its_outputs_and_large_inputs_take_the_socket(sup, tmp_path):
    mlp = Mlp.random(4, 8, 3)
    load(sup, tmp_path, "mlp.onnx", mlp.onnx_bytes())
    x1, x2 = np.ones((2, 4), np.float32), np.full((2, 4), -3.0, np.float32)
    first = run(sup, "mlp.onnx", {"x": x1})[0][1][0]
    run(sup, "mlp.onnx", {"x": x2})
    np.testing.assert_allclose(first, mlp.reference(x1), rtol=1e-5)
    # 12 MB of inputs: past the area, through the socket, same answer.
    big = np.random.default_rng(1).standard_normal((750_000, 4)).astype(np.float32)
    status, outputs = run(sup, "mlp.onnx", {"x": big}, timeout=30, allowance=256 * MIB)[0]
    assert status == "ok"
    np.testing.assert_allclose(outputs[0], mlp.reference(big), rtol=1e-4, atol=1e-5)
