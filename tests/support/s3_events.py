"""S3 event notifications as S3 sends them, for the S3 handler's tests."""

from __future__ import annotations

from urllib.parse import quote_plus


def s3_event(bucket: str, key: str, name: str = "ObjectCreated:Put", **obj: str) -> dict:
    """One record: ``name`` (``ObjectRemoved:Delete``...), the key URL-encoded
    (``+`` for a space); ``obj`` adds ``versionId``, ``eTag``... to its ``s3.object``."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-12-04T18:00:00.000Z",
                "eventName": name,
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(key), "sequencer": "0055AED6DCD90281E5", **obj},
                },
            }
        ]
    }
