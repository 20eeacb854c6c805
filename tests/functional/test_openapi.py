"""docs/openapi.yaml stays true: valid OpenAPI 3, every route of the app and
nothing else, every documented error code with its status and extra field.

The contract run against a real local server is tests/functional/test_openapi_contract.py.
"""

import json

from openapi_spec_validator import validate

import app
from chalicelib.errors import registry
from tests.support.openapi import DOCUMENT, JOBS_PATHS, JOBS_ROUTES_MERGED, document, operations, resolve


def app_operations():
    return {(path, method) for path, routes in app.app.routes.items() for method in routes}


def test_the_document_is_valid_openapi_3():
    doc = document()
    validate(doc)
    assert doc["openapi"].startswith("3.")


def test_every_route_and_method_of_the_app_is_documented_and_nothing_else():
    served, documented = app_operations(), operations()
    assert served - documented == set(), "routes of app.py missing from docs/openapi.yaml"
    assert documented - served == set(), "docs/openapi.yaml documents routes app.py does not have"


def test_the_job_routes_switch_matches_the_app():
    """While JOBS_ROUTES_MERGED is False the job routes are documented but not
    served; once they are served, the switch in tests/support/openapi.py must be on."""
    served_paths = {path for path, _ in app_operations()}
    assert JOBS_PATHS <= set(document()["paths"])
    if JOBS_ROUTES_MERGED:
        assert JOBS_PATHS <= served_paths
    else:
        assert not JOBS_PATHS & served_paths, "the job routes are merged: set JOBS_ROUTES_MERGED = True"


def test_every_code_of_the_error_registry_is_documented_with_its_status_and_field():
    specs = registry()
    assert set(document()["components"]["schemas"]["ErrorCode"]["enum"]) == set(specs)
    # Each response of each status, resolved, as text: the code (and its extra field) must be in one.
    by_status: dict[str, list[str]] = {}
    for item in document()["paths"].values():
        for op in (v for k, v in item.items() if k != "parameters"):
            for status, response in op.get("responses", {}).items():
                by_status.setdefault(status, []).append(json.dumps(resolve(response)))
    for spec in specs.values():
        texts = [t for t in by_status.get(str(spec.status), []) if spec.code in t]
        assert texts, f"no {spec.status} response documents {spec.code}"
        if spec.field is not None:
            assert any(f'"{spec.field}"' in t for t in texts), f"{spec.code}'s field {spec.field} is not documented"


def test_v2_errors_are_documented_in_the_protocol_shape():
    for path, item in document()["paths"].items():
        if not path.startswith("/v2"):
            continue
        for method, op in item.items():
            if method in ("get", "post"):
                for status, response in op["responses"].items():
                    if status in ("403", "429") or int(status) < 400:
                        continue  # API Gateway's own answers come in our shape
                    if (path, status) == ("/v2/health/ready", "503"):
                        continue  # not ready is the protocol's {"ready": false}
                    schema = resolve(response)["content"]["application/json"]["schema"]
                    assert schema["required"] == ["error", "code", "requestId"], (path, method, status)


def test_the_python_snippet_of_docs_api_md_lists_every_path(capsys, monkeypatch):
    text = (DOCUMENT.parent / "api.md").read_text()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(DOCUMENT.parents[1])
    exec(compile(snippet, "docs/api.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 1)[0] for line in printed] == list(document()["paths"])
    assert "/ingest ['OPTIONS', 'POST']" in printed
