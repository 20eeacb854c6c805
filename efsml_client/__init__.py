"""A Python client and CLI for the efs-ml service (docs/client.md).

Standalone: it imports neither ``chalicelib`` nor ``app`` (it is not in the
Lambda package, which ``chalice package`` builds from ``app.py`` and
``chalicelib/`` only), just ``requests``, ``numpy`` and ``tqdm``.
"""

from efsml_client.client import Client, ClientError, IngestFailed, ServiceError, Unreachable, WaitTimedOut

__all__ = ["Client", "ClientError", "IngestFailed", "ServiceError", "Unreachable", "WaitTimedOut"]
