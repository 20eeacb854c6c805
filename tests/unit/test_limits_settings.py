"""The limits of issue 9 as settings: defaults, parsing, and what runners get."""

from __future__ import annotations

import pytest

from chalicelib.config import MIB, ConfigError, load_settings
from chalicelib.runners import Limits


def test_defaults_fit_lambda_and_the_gateway():
    s = load_settings({})
    assert s.max_output_elements == s.max_tensor_elements == 1_000_000
    assert s.max_response_bytes == 5 * MIB < 6_000_000  # Lambda answers at most 6 MB
    assert s.inference_memory_bytes == 512 * MIB
    assert s.predict_timeout_seconds < s.request_timeout_seconds < 29.0  # API Gateway's limit
    assert s.deadline_margin_seconds == 1.0


def test_limits_are_built_from_settings():
    s = load_settings(
        {
            "MAX_OUTPUT_ELEMENTS": "7",
            "MAX_RESPONSE_BYTES": "1000",
            "INFERENCE_MEMORY_BYTES": "4096",
            "PREDICT_TIMEOUT_SECONDS": "0.5",
            "MODEL_CACHE_BYTES": "123",
            "MAX_TENSOR_ELEMENTS": "9",
            "MAX_REQUEST_BYTES": "77",
        }
    )
    assert Limits.from_settings(s) == Limits(
        max_tensor_elements=9,
        max_output_elements=7,
        max_input_json_bytes=77,
        max_model_bytes=123,
        model_cache_bytes=123,
        inference_memory_bytes=4096,
        predict_timeout_seconds=0.5,
        max_response_bytes=1000,
    )


def test_one_model_may_take_the_whole_cache_unless_told_less():
    assert load_settings({"MODEL_CACHE_BYTES": "1000"}).max_model_bytes == 1000
    s = load_settings({"MODEL_CACHE_BYTES": "1000", "MAX_MODEL_BYTES": "300"})
    limits = Limits.from_settings(s)
    assert (limits.max_model_bytes, limits.model_cache_bytes) == (300, 1000)  # the worker is sized by the cache
    with pytest.raises(ConfigError, match="MAX_MODEL_BYTES .* must not exceed MODEL_CACHE_BYTES"):
        load_settings({"MODEL_CACHE_BYTES": "1000", "MAX_MODEL_BYTES": "1001"})


@pytest.mark.parametrize(
    "name, value",
    [
        ("MAX_OUTPUT_ELEMENTS", "0"),
        ("PREDICT_TIMEOUT_SECONDS", "-1"),
        ("REQUEST_TIMEOUT_SECONDS", "soon"),
        ("INFERENCE_MEMORY_BYTES", "1.5"),
        ("DEADLINE_MARGIN_SECONDS", "0"),
    ],
)
def test_bad_values_are_refused(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})
