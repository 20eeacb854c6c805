"""The test process's environment: Lambda contexts with their deployed timeouts.

Per-process state built from the environment is forgotten with
``chalicelib.edge.reset()``, the app's one reset.
"""

from __future__ import annotations


def deployed_lambda_timeouts(stage: str = "dev") -> None:
    """Run ``chalice.test.Client``'s direct invocations with their deployed timeouts.

    Its ``lambda_.invoke`` hands every function a context with 3 s left,
    whatever ``.chalice/config.json`` says; the service bounds its waits by
    that remaining time, so an S3 event under load would be cut at ~2 s in
    tests while the deployed function has 900 s. Idempotent.
    """
    import json
    from pathlib import Path

    import chalice.test
    from chalice.local import LambdaContext

    if getattr(chalice.test.LambdaContext, "deployed_timeouts", False):
        return
    config = json.loads((Path(__file__).resolve().parents[2] / ".chalice" / "config.json").read_text())
    default = config.get("lambda_timeout", 60)
    functions = config["stages"][stage].get("lambda_functions", {})

    class DeployedLambdaContext(LambdaContext):
        deployed_timeouts = True

        def __init__(
            self, function_name: str, memory_size: int, max_runtime_ms: int = 3000, time_source: object = None
        ) -> None:
            seconds = functions.get(function_name, {}).get("lambda_timeout", default)
            super().__init__(function_name, memory_size, seconds * 1000, time_source)  # type: ignore[arg-type]

    chalice.test.LambdaContext = DeployedLambdaContext  # type: ignore[misc]
