"""What validating a model at ingest costs a large streamed S3 ingest.

A ``MIB``-sized ONNX model (``tests.support.onnx_models.big_mlp``) is put in a
moto bucket and streamed into a fresh store by the S3 ingest's own path
(``s3.stream`` -> ``Store.put``), alternately with the validate-and-describe
step (``ingest.model_description``) and without it, ``--n`` times each, side
by side in one run. Reported: the median put of each and their ratio (on
this shared machine dominated by moto and the disk's fsync: noise), the
describe step's own time inside each validated put (mapping the temp file
included) and its share of the put, the step alone over a file, and what it
touched of the written file:
the minor page faults of the walk over the mapping (each fault maps at most
16 pages from the page cache: nothing is read from the disk or the network
while the pages are cached) and the syscalls it adds on the store's paths,
counted with ``strace -f -y`` in a child run (``--strace``).

Run: ``python -m bench.ingest_validation [--mib 100] [--n 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing

MIB = 1024 * 1024


_INSIDE: list[float] = []  # the describe step's own time, inside each validated put


def _put(store, ref, bucket, key, info, validate: bool) -> float:  # noqa: ANN001 - a bench
    from chalicelib import s3
    from chalicelib.edge import get_settings
    from chalicelib.ingest import model_description

    describe = model_description(ref)
    assert describe is not None

    def timed(buf):  # noqa: ANN001, ANN202
        started = time.perf_counter()
        try:
            return describe(buf)
        finally:
            _INSIDE.append(time.perf_counter() - started)

    started = time.perf_counter()
    with closing(
        s3.stream(get_settings(), bucket, key, info, part_bytes=16 * MIB, connections=6, attempts=3)
    ) as chunks:
        store.put(ref, chunks, source="bench", describe=timed if validate else None)
    return time.perf_counter() - started


def _describe_alone(path: str) -> tuple[float, int]:
    import mmap

    from chalicelib import model_check

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapping:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        started = time.perf_counter()
        model_check.describe("big.onnx", mapping)
        elapsed = time.perf_counter() - started
        return elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def run(mib: int, n: int) -> dict[str, float]:
    import boto3

    from chalicelib import edge, s3
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store
    from devstack.moto import MotoServer
    from tests.support.onnx_models import big_mlp

    server = MotoServer().start()
    work = tempfile.mkdtemp(prefix="ingest-validation-")
    try:
        os.environ["AWS_ENDPOINT_URL_S3"] = server.endpoint
        for var, value in (
            ("AWS_ACCESS_KEY_ID", "x"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ):
            os.environ.setdefault(var, value)
        edge.reset()
        data, _ = big_mlp(mib * MIB)
        client = boto3.client("s3", endpoint_url=server.endpoint)
        client.create_bucket(Bucket="bench")
        client.put_object(Bucket="bench", Key="models/big.onnx", Body=data)
        info = s3.head(edge.get_settings(), "bench", "models/big.onnx")
        ref = ObjectRef("models", "big.onnx")
        times: dict[bool, list[float]] = {True: [], False: []}
        for i in range(n):
            for validate in (i % 2 == 0, i % 2 != 0):  # alternate which goes first
                root = os.path.join(work, f"store-{i}-{validate}")
                times[validate].append(_put(Store(root), ref, "bench", "models/big.onnx", info, validate))
                shutil.rmtree(root)
        path = os.path.join(work, "model.onnx")
        with open(path, "wb") as f:
            f.write(data)
        alone = [_describe_alone(path) for _ in range(n)]
        with_v, without = statistics.median(times[True]), statistics.median(times[False])
        return {
            "modelBytes": len(data),
            "putWithValidationS": round(with_v, 4),
            "putWithoutS": round(without, 4),
            "ratio": round(with_v / without, 3),
            "describeInsidePutS": round(statistics.median(_INSIDE), 5),
            "describeShareOfPut": round(statistics.median(_INSIDE) / with_v, 5),
            "describeAloneS": round(statistics.median(t for t, _ in alone), 5),
            "describeMinorFaults": statistics.median(f for _, f in alone),
        }
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def _store_calls(validate: bool, mib: int) -> dict[str, int]:
    """Syscalls on the store's paths of one put, under strace (a child run)."""
    root = tempfile.mkdtemp(prefix="ingest-strace-")
    log = os.path.join(root, "strace.log")
    code = (
        "import sys; from chalicelib.names import ObjectRef; from chalicelib.store import Store;"
        "from chalicelib.ingest import model_description; from tests.support.onnx_models import big_mlp;"
        f"data,_=big_mlp({mib}*1024*1024); ref=ObjectRef('models','big.onnx');"
        "chunks=[memoryview(data)[i:i+16*1024*1024] for i in range(0,len(data),16*1024*1024)];"
        f"d=model_description(ref) if {validate} else None;"
        "Store(sys.argv[1]+'/store').put(ref, chunks, source='b', describe=d)"
    )
    try:
        subprocess.run(
            ["strace", "-f", "-y", "-o", log, "-e", "trace=openat,close,mmap,munmap,fstat,read,pread64", sys.executable]
            + ["-c", code, root],
            check=True,
            capture_output=True,
        )
        store = os.path.join(root, "store")
        counts: dict[str, int] = {}
        for line in open(log):
            if store not in line:
                continue
            call = re.sub(r"^\d+\s+", "", line).split("(", 1)[0]
            counts[call] = counts.get(call, 0) + 1
        return counts
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--strace", action="store_true", help="also count the store's syscalls with strace")
    args = parser.parse_args()
    report: dict[str, object] = dict(run(args.mib, args.n))
    if args.strace and shutil.which("strace"):
        with_v, without = _store_calls(True, args.mib), _store_calls(False, args.mib)
        report["storeCallsWith"], report["storeCallsWithout"] = with_v, without
        report["storeCallsAdded"] = {k: with_v.get(k, 0) - without.get(k, 0) for k in sorted(with_v | without)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
