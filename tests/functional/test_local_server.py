"""The `make local` pieces: the S3 event watcher and the TCP_NODELAY server."""

import http.client
import json
import socket
import threading

from devstack.local import NoDelayHTTPServer, S3EventWatcher, s3_event


def test_s3_event_has_the_real_shape():
    event = s3_event("bkt", "models/a b+c.pt", 3, '"etag"', "eu-west-1")
    record = event["Records"][0]
    assert record["eventName"] == "ObjectCreated:Put" and record["eventSource"] == "aws:s3"
    assert record["s3"]["bucket"]["name"] == "bkt"
    assert record["s3"]["object"] == {
        "key": "models/a+b%2Bc.pt",
        "size": 3,
        "eTag": "etag",
        "sequencer": record["s3"]["object"]["sequencer"],
    }


def test_watcher_delivers_new_and_changed_objects_once(bucket, s3_client, efs_root):
    import app

    watcher = S3EventWatcher(app.app, bucket)
    s3_client.put_object(Bucket=bucket, Key="models/m.pt", Body=b"v1")
    s3_client.put_object(Bucket=bucket, Key="inputs/x.json", Body=b"{}")
    s3_client.put_object(Bucket=bucket, Key="outputs/ignored.result", Body=b"r")
    assert watcher.scan() == 2
    assert (efs_root / "models" / "m.pt").read_bytes() == b"v1"
    assert watcher.scan() == 0  # nothing new: no event
    s3_client.put_object(Bucket=bucket, Key="models/m.pt", Body=b"v2")
    assert watcher.scan() == 1
    manifest = json.loads((efs_root / ".meta" / "models" / "m.pt.json").read_text())
    assert manifest["version"] == 2 and (efs_root / "models" / "m.pt").read_bytes() == b"v2"
    assert not (efs_root / "outputs" / "ignored.result").exists()


def test_watcher_delivers_removed_objects_once(bucket, s3_client, efs_root):
    import app

    watcher = S3EventWatcher(app.app, bucket)
    s3_client.put_object(Bucket=bucket, Key="models/m.pt", Body=b"v1")
    s3_client.put_object(Bucket=bucket, Key="models/keep.pt", Body=b"k")
    assert watcher.scan() == 2
    s3_client.delete_object(Bucket=bucket, Key="models/m.pt")
    assert watcher.scan() == 1  # one ObjectRemoved event
    assert not (efs_root / "models" / "m.pt").exists()
    assert not (efs_root / ".meta" / "models" / "m.pt.json").exists()
    assert (efs_root / "models" / "keep.pt").read_bytes() == b"k"
    assert watcher.scan() == 0  # delivered once
    s3_client.put_object(Bucket=bucket, Key="models/m.pt", Body=b"v2")
    assert watcher.scan() == 1
    assert (efs_root / "models" / "m.pt").read_bytes() == b"v2"


def test_removed_event_has_the_real_shape():
    record = s3_event("bkt", "models/x.pt", 0, "", "eu-west-1", "ObjectRemoved:Delete")["Records"][0]
    assert record["eventName"] == "ObjectRemoved:Delete"


def test_async_ingest_end_to_end_through_the_watcher(bucket, s3_client, efs_root, monkeypatch):
    """POST /ingest above SYNC_INGEST_MAX_BYTES -> 202; the in-place copy keeps the
    ETag and (within the same second) LastModified, and the watcher still delivers it."""
    import time

    from chalice.test import Client

    import app
    from chalicelib import edge

    monkeypatch.setenv("SYNC_INGEST_MAX_BYTES", "1024")
    edge.reset()
    watcher = S3EventWatcher(app.app, bucket)
    s3_client.put_object(Bucket=bucket, Key="models/big model.bin", Body=b"B" * 4096)
    assert watcher.scan() == 1  # the upload's own event lands it
    (efs_root / "models" / "big model.bin").unlink()  # as if that ingest had been lost
    (efs_root / ".meta" / "models" / "big model.bin.json").unlink()
    etag = s3_client.head_object(Bucket=bucket, Key="models/big model.bin")["ETag"]
    with Client(app.app) as client:
        resp = client.http.post(
            "/ingest", headers={"Content-Type": "application/json"}, body=json.dumps({"key": "models/big model.bin"})
        )
        assert resp.status_code == 202, resp.body
        status_url = json.loads(resp.body)["statusUrl"]
        assert json.loads(client.http.get(status_url).body)["state"] == "pending"
        assert s3_client.head_object(Bucket=bucket, Key="models/big model.bin")["ETag"] == etag
        deadline = time.monotonic() + 10
        while watcher.scan() == 0:  # the copy's event, as S3 would send it
            assert time.monotonic() < deadline, "the hand-off's copy was never delivered"
        state = json.loads(client.http.get(status_url).body)
    assert state["state"] == "ready" and state["sizeBytes"] == 4096
    assert watcher.scan() == 0  # delivered once
    time.sleep(2.1)
    assert watcher.scan() == 0  # and settled: no HEAD-driven redelivery later either


def test_nodelay_server_sets_tcp_nodelay_on_connections():
    seen = []

    class Handler:
        def __init__(self, request, client_address, server):
            seen.append(request.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            request.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

    server = NoDelayHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().status == 204
    thread.join(5)
    server.server_close()
    assert seen and seen[0] != 0
