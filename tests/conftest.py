"""Shared fixtures: a store folder, a real moto S3 on loopback, the app client."""

from __future__ import annotations

import os
import uuid

import pytest

from chalicelib import edge
from devstack.moto import MotoServer
from tests.support.env import deployed_lambda_timeouts

# chalice.test.Client invokes functions with 3 s left; give them their deployed timeouts.
deployed_lambda_timeouts()

# Never let a test reach real AWS, whatever the developer's shell has.
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_var, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
)


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def efs_root(tmp_path, monkeypatch):
    root = tmp_path / "efs"
    root.mkdir()
    monkeypatch.setenv("EFS_ROOT", str(root))
    monkeypatch.delenv("MODEL_BUCKET", raising=False)
    edge.reset()
    yield root
    edge.reset()


@pytest.fixture
def bucket(moto_server, efs_root, monkeypatch):
    """A fresh bucket on the moto server, configured as MODEL_BUCKET."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server.endpoint)
    monkeypatch.setenv("MODEL_BUCKET", name)
    edge.reset()
    boto3.client("s3", endpoint_url=moto_server.endpoint).create_bucket(Bucket=name)
    yield name
    edge.reset()


@pytest.fixture
def s3_client(moto_server):
    import boto3

    return boto3.client("s3", endpoint_url=moto_server.endpoint)


@pytest.fixture
def client(efs_root):
    from chalice.test import Client

    import app

    with Client(app.app) as c:
        yield c


@pytest.fixture
def s3_proxy(bucket, moto_server, monkeypatch):
    """The app's S3 through a fault proxy on loopback (``tests.support.faultproxy``;
    set its ``rule``, read its ``log``), one attempt per S3 call. ``s3_client``
    still reaches moto directly."""
    from tests.support.faultproxy import FaultProxy

    proxy = FaultProxy(moto_server.endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint)
    monkeypatch.setenv("S3_MAX_ATTEMPTS", "1")
    edge.reset()
    yield proxy
    edge.reset()
    proxy.stop()
