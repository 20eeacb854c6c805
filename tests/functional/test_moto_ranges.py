"""The local S3's ranged GET (devstack/moto_ranges.py): right bytes, moto's
own edge cases kept, and only the range read from the object's buffer."""

from __future__ import annotations

import os
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

MIB = 1024 * 1024
BIG = os.urandom(MIB) * 24 + b"tail"  # 24 MiB + 4 bytes


@pytest.fixture(scope="module")
def big(moto_server):
    s3 = boto3.client("s3", endpoint_url=moto_server.endpoint)
    bucket = f"ranges-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="big.bin", Body=BIG)
    return s3, bucket


def get(big, **kwargs):
    s3, bucket = big
    return s3.get_object(Bucket=bucket, Key="big.bin", **kwargs)


@pytest.mark.parametrize(
    "spec, first, last",
    [
        ("bytes=0-0", 0, 0),
        ("bytes=8388608-16777215", 8 * MIB, 16 * MIB - 1),
        (f"bytes={len(BIG) - 10}-{len(BIG) + 1000}", len(BIG) - 10, len(BIG) - 1),  # end past the end: clipped
        (f"bytes={len(BIG) - 3}-", len(BIG) - 3, len(BIG) - 1),  # open-ended
        ("bytes=-4", len(BIG) - 4, len(BIG) - 1),  # suffix
        (f"bytes=-{len(BIG) + 50}", 0, len(BIG) - 1),  # suffix longer than the object
    ],
)
def test_ranged_get_returns_exactly_the_range(big, spec, first, last):
    r = get(big, Range=spec)
    assert r["Body"].read() == BIG[first : last + 1]
    assert r["ContentRange"] == f"bytes {first}-{last}/{len(BIG)}"
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206


def test_range_starting_past_the_end_is_416(big):
    with pytest.raises(ClientError) as exc:
        get(big, Range=f"bytes={len(BIG)}-{len(BIG) + 10}")
    assert exc.value.response["Error"]["Code"] == "InvalidRange"


def test_if_match_is_honoured_on_ranges(big):
    s3, bucket = big
    etag = s3.head_object(Bucket=bucket, Key="big.bin")["ETag"]
    assert get(big, Range="bytes=5-9", IfMatch=etag)["Body"].read() == BIG[5:10]
    with pytest.raises(ClientError) as exc:
        get(big, Range="bytes=5-9", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert exc.value.response["Error"]["Code"] in ("PreconditionFailed", "412")


def test_unranged_and_unparsable_ranges_get_the_whole_object(big):
    assert get(big)["Body"].read() == BIG
    assert get(big, Range="bytes=0-1,5-6")["Body"].read() == BIG  # multiple ranges: moto sends it all


class CountingBuffer:
    """Wraps a key's buffer and counts the bytes read from it."""

    def __init__(self, inner):
        self.inner, self.read_bytes = inner, 0

    def read(self, n=-1):
        data = self.inner.read(n)
        self.read_bytes += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_range_reads_only_its_bytes_from_the_object():
    """In-process moto with the same patch: the cost of a range is the range."""
    from moto import mock_aws
    from moto.s3.models import s3_backends

    from devstack import moto_ranges

    assert moto_ranges.apply()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="ranges-inproc")
        s3.put_object(Bucket="ranges-inproc", Key="k", Body=BIG)
        key = s3_backends["123456789012"]["aws"].buckets["ranges-inproc"].keys["k"]
        s3.head_object(Bucket="ranges-inproc", Key="k")  # the ETag is computed once, at write
        counter = CountingBuffer(key._value_buffer)
        key._value_buffer = counter
        body = s3.get_object(Bucket="ranges-inproc", Key="k", Range="bytes=1048576-2097151")["Body"].read()
        assert body == BIG[MIB : 2 * MIB]
        assert counter.read_bytes == MIB  # not the 24 MiB object
        counter.read_bytes = 0
        assert s3.get_object(Bucket="ranges-inproc", Key="k")["Body"].read() == BIG  # plain GET: unchanged
        assert counter.read_bytes == len(BIG)


class CountingList(list):
    """A queue's message list that counts the scans of it."""

    scans = 0

    def __iter__(self):
        self.scans += 1
        return super().__iter__()


def test_an_sqs_receive_scans_the_queue_once_not_once_per_attribute():
    """In-process moto with the same patch: handing out a message does not
    rebuild every queue attribute (three more scans of the queue each) to read
    its retention period; the retention check itself still holds."""
    from moto import mock_aws
    from moto.sqs.models import sqs_backends

    from devstack import moto_ranges

    assert moto_ranges.apply()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="scans")["QueueUrl"]
        for i in range(5):
            sqs.send_message(QueueUrl=url, MessageBody=str(i))
        queue = sqs_backends["123456789012"]["us-east-1"].queues["scans"]
        queue._messages = counted = CountingList(queue._messages)
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
        assert [m["Body"] for m in got] == ["0"]
        assert counted.scans == 1, counted.scans
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"MessageRetentionPeriod": "60"})
        for message in counted:
            message.sent_timestamp -= 61_000  # sent 61 s ago: past the retention
        assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []


def test_the_backend_lookup_lists_moto_s_package_once():
    from moto import backends

    from devstack import moto_ranges

    assert moto_ranges.apply()
    first = backends.list_of_moto_modules()
    assert first is backends.list_of_moto_modules()  # not a fresh listdir per request
    assert {"s3", "sqs", "awslambda"} <= set(first)
