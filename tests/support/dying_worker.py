"""A local job worker whose "Lambda" is killed on every delivery of one block.

``python -m tests.support.dying_worker --endpoints ... --doomed N``: the real
``python -m devstack.jobs`` worker, except that a delivery naming block N
SIGKILLs the process before the handler runs, as a Lambda that times out,
runs out of memory or fails to initialise leaves nothing on the store. SQS
sees what it sees then: a received message that is never deleted.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from devstack import jobs


def main() -> int:
    argv = sys.argv[1:]
    at = argv.index("--doomed")
    doomed = int(argv[at + 1])
    del argv[at : at + 2]

    class DyingPoller(jobs.Poller):
        def invoke(self, event: dict[str, Any]) -> Any:
            if any(json.loads(r["body"]).get("block") == doomed for r in event["Records"]):
                print(f"dying on a delivery of block {doomed}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            return super().invoke(event)

    return jobs.main(argv, poller_class=DyingPoller)


if __name__ == "__main__":
    sys.exit(main())
