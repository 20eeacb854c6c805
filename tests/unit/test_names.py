import pytest

from chalicelib.errors import InvalidRequest
from chalicelib.names import MAX_NAME_LENGTH, ObjectRef, parse_filename, parse_key, validate_name


@pytest.mark.parametrize("name", ["model.pt", "resnet50.onnx", "a", "A-b_c.d+e", "x" * MAX_NAME_LENGTH, "a..b"])
def test_valid_names(name):
    assert validate_name(name, "filename") == name


@pytest.mark.parametrize("name", [
    "", ".", "..", ".hidden", "../x", "a/b", "/etc/passwd", "a\\b", "a\x00b", "a\nb", "a b",
    "x" * (MAX_NAME_LENGTH + 1), "ｍodel", "mod\u200bel", 7, None, ["a"], "-rf" if False else "~x",
])
def test_invalid_names(name):
    with pytest.raises(InvalidRequest) as exc:
        validate_name(name, "filename")
    assert "filename" in exc.value.message


def test_parse_key():
    assert parse_key("models/resnet50.pt") == ObjectRef("models", "resnet50.pt")
    assert parse_key("inputs/x.json").key == "inputs/x.json"
    for bad in ["outputs/x.result", "models/", "models/a/b", "x", "/models/a", "models/../a", "models/.a"]:
        with pytest.raises(InvalidRequest):
            parse_key(bad)


def test_filename_defaults_to_models():
    assert parse_filename("model.pt") == ObjectRef("models", "model.pt")
    assert parse_filename("inputs/in.json") == ObjectRef("inputs", "in.json")
    with pytest.raises(InvalidRequest):
        parse_filename("outputs/x")
