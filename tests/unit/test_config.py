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
