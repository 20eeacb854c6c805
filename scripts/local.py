"""`make local`: the API on http://127.0.0.1:$PORT (default 8000) with a local S3, until Ctrl-C.

    python -m scripts.local [--port N] [--s3-port N] [--host H]

The stack itself lives in devstack/local.py.
"""

from __future__ import annotations

import sys

from devstack.local import main

if __name__ == "__main__":
    sys.exit(main())
