"""The error registry: every class found, codes consistent, and the route reference's table in step."""

import gc
import re
from pathlib import Path

import pytest

from chalicelib import errors
from chalicelib.errors import ErrorSpec, FileTooLarge, ServiceError, registry

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"


def test_every_code_has_one_status_and_field():
    specs = registry()
    assert specs["FILE_TOO_LARGE"] == ErrorSpec("FILE_TOO_LARGE", 413, "maxSize")
    assert specs["TIMEOUT"] == ErrorSpec("TIMEOUT", 504, "stage")
    # Subclasses sharing a code (S3Unavailable, StoreCorrupt, ...) agree with it.
    assert specs["PROCESSING_FAILED"] == ErrorSpec("PROCESSING_FAILED", 500, None)
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, ServiceError)]
    assert {c.CODE for c in classes} == set(specs)


def test_reference_error_table_matches_the_registry():
    text = REFERENCE.read_text()
    table = text[text.index("\n## Errors\n") :]
    table = table[: table.index("\n\n", table.index("| Code"))]
    documented = {code: int(status) for code, status in re.findall(r"^\| `([A-Z_0-9]+)` \| (\d{3}) \|", table, re.M)}
    assert documented == {code: spec.status for code, spec in registry().items()}


def test_a_new_error_class_is_registered_by_defining_it():
    class Teapot(ServiceError):
        STATUS_CODE = 418
        CODE = "TEAPOT"
        FIELD = "pot"

    assert registry()["TEAPOT"] == ErrorSpec("TEAPOT", 418, "pot")
    del Teapot
    gc.collect()
    assert "TEAPOT" not in registry()


def test_a_class_that_contradicts_its_code_is_refused():
    class Confused(ServiceError):
        STATUS_CODE = 400
        CODE = "NOT_FOUND"

    with pytest.raises(TypeError, match="Confused"):
        registry()
    del Confused
    gc.collect()


def test_file_too_large_formats_its_limit():
    exc = FileTooLarge(5 * 1024 * 1024)
    assert exc.max_bytes == 5 * 1024 * 1024
    assert exc.to_body("r") == {"error": "FILE_TOO_LARGE", "message": exc.message, "maxSize": "5MB", "requestId": "r"}
