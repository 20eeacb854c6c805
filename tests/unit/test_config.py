import pytest

from chalicelib.config import GIB, ConfigError, human_size, load_settings


def test_defaults():
    s = load_settings({})
    assert s.efs_root == "/mnt/efs"
    assert s.bucket is None
    assert s.max_ingest_bytes == GIB


def test_values_and_errors():
    s = load_settings({"EFS_ROOT": "/x/y", "MODEL_BUCKET": " b ", "MAX_INGEST_BYTES": "10"})
    assert (s.efs_root, s.bucket, s.max_ingest_bytes) == ("/x/y", "b", 10)
    with pytest.raises(ConfigError):
        load_settings({"MAX_INGEST_BYTES": "lots"})
    with pytest.raises(ConfigError):
        load_settings({"MAX_INGEST_BYTES": "0"})


def test_human_size():
    assert human_size(GIB) == "1GB"
    assert human_size(1024 * 1024 * 5) == "5MB"
    assert human_size(1000) == "1000B"


def test_every_field_is_read_from_its_variable_and_defaults_live_in_the_dataclass():
    from dataclasses import fields

    from chalicelib.config import Settings, env_name

    assert load_settings({}) == Settings()
    names = {f.name: env_name(f) for f in fields(Settings)}
    assert names["bucket"] == "MODEL_BUCKET" and names["max_ingest_bytes"] == "MAX_INGEST_BYTES"
    # A non-default value for each field, set through its variable, arrives.
    samples = {int: "7", float: "2.5", str: "Value"}
    hints = __import__("typing").get_type_hints(Settings)

    def sample(f):
        minimum = f.metadata.get("minimum")
        if hints[f.name] is int and minimum:
            return str(int(minimum) + 7)  # above the field's own floor
        if f.metadata.get("choices"):
            return next(c for c in f.metadata["choices"] if c != f.default)  # one of its allowed values
        return samples.get(hints[f.name], "Value")

    env = {names[f.name]: sample(f) for f in fields(Settings)}
    loaded = load_settings(env)
    for f in fields(Settings):
        assert getattr(loaded, f.name) != f.default, f.name


def test_minimums_and_normalisation():
    assert load_settings({"MODEL_CACHE_BYTES": "0"}).model_cache_bytes == 0
    assert load_settings({"LOG_LEVEL": "debug", "MODEL_BUCKET": "  "}).log_level == "DEBUG"
    assert load_settings({"MODEL_BUCKET": "  "}).bucket is None
    for env in ({"MODEL_CACHE_BYTES": "-1"}, {"S3_READ_TIMEOUT": "0"}, {"LOCK_TIMEOUT_SECONDS": "soon"}):
        with pytest.raises(ConfigError, match=next(iter(env))):
            load_settings(env)
