import unicodedata

import pytest

from chalicelib.errors import InvalidRequest
from chalicelib.names import (
    MAX_NAME_BYTES,
    ObjectRef,
    is_valid_name,
    parse_filename,
    parse_key,
    parse_path_name,
    validate_name,
)

VALID = [
    "model.pt",
    "resnet50.onnx",
    "a",
    "A-b_c.d+e",
    "x" * MAX_NAME_BYTES,
    "a..b",
    # names people use (issue 11)
    "my model.onnx",
    "modèle.onnx",
    "résumé (final).bin",
    "a+b=c,d@e!f'g(h)",
    "-rf",
    "(1)",
    "модель.onnx",
    "модель_v2.onnx",
    "μοντέλο.onnx",
    "模型.onnx",
    "モデル.onnx",
    "GPTモデル.onnx",
    "日本語のモデル.onnx",
    "모델.onnx",
    "नमूना.onnx",
    "نموذج.onnx",
    "מודל.onnx",
    "a  b",
    "٣.bin",
    "é" * (MAX_NAME_BYTES // 2),  # 2 bytes each: exactly the byte limit
]

INVALID = [
    # structure
    "",
    ".",
    "..",
    ".hidden",
    "../x",
    "a/b",
    "/etc/passwd",
    "a\\b",
    " x",
    "x ",
    " ",
    ". x",
    # NUL, control (Cc), format (Cf: bidi overrides, zero-width), line/paragraph separators
    "a\x00b",
    "a\nb",
    "a\tb",
    "a\x7fb",
    "model\u202egnp.exe",
    "a\u202db",
    "a\u2066b",
    "mod\u200bel",
    "mod\u200del",
    "mod\u200cel",
    "\ufeffmodel",
    "a\u2028b",
    "a\u2029b",
    "a\u00adb",
    # surrogate, private use, unassigned
    "a\ud800b",
    "a\ue000b",
    "a\U000e0001b",
    "a\u0378b",
    # other spaces and separators, look-alike punctuation
    "a\u00a0b",
    "a\u3000b",
    "a\u2009b",
    "a\uff0fb",
    "a\u2215b",
    "a\u2044b",
    "a\u29f8b",
    "\uff0e\uff0e",
    "\u2024\u2024",
    "\u2025",
    "\u2026",
    "x;y",
    "x|y",
    "x*",
    "x?",
    "~x",
    "$HOME",
    "a%2fb",
    "a:b",
    "a#b",
    # compatibility look-alikes (change under NFKC)
    "ｍodel",
    "ｍｏｄｅｌ",
    "ﬁle.bin",
    "x²",
    "µm.bin",
    "ª",
    # mixed-script words (Latin + Cyrillic/Greek homoglyphs)
    "mоdel",
    "pаypal.onnx",
    "Ωmega.onnx",
    # combining-mark tricks: a mark on a dot, a space, a separator or at the start
    ".\u0307",
    "\u0307",
    "\u0307x",
    "a.\u0307.b",
    "a \u0301b",
    "x\u0338",
    "a.\u0338",
    # over the byte limit
    "x" * (MAX_NAME_BYTES + 1),
    "é" * (MAX_NAME_BYTES // 2 + 1),
    "模" * 67,
    # not strings
    7,
    None,
    ["a"],
    b"a",
]


@pytest.mark.parametrize("name", VALID)
def test_valid_names(name):
    assert validate_name(name, "filename") == name
    assert is_valid_name(name)


@pytest.mark.parametrize("name", INVALID)
def test_invalid_names(name):
    with pytest.raises(InvalidRequest) as exc:
        validate_name(name, "filename")
    assert "filename" in exc.value.message
    assert not is_valid_name(name)


def test_corpora_are_distinct():
    assert len(set(map(repr, INVALID))) == len(INVALID) and len(set(VALID)) == len(VALID)


def test_nfc_and_nfd_are_one_name():
    nfd = unicodedata.normalize("NFD", "résumé (final).bin")
    assert nfd != "résumé (final).bin"
    assert validate_name(nfd, "filename") == "résumé (final).bin"
    # The store only ever sees NFC: a non-NFC name read back from disk is not ours.
    assert not is_valid_name(nfd)
    hangul = unicodedata.normalize("NFD", "모델.onnx")
    assert validate_name(hangul, "key") == "모델.onnx"
    assert parse_key("models/" + nfd) == ObjectRef("models", "résumé (final).bin")


def test_combining_marks_that_compose_are_letters():
    # e + COMBINING ACUTE composes to é; a dot below on a letter is a fine mark.
    assert validate_name("cafe\u0301.onnx", "f") == "café.onnx"
    assert validate_name("ạ.bin", "f") == "ạ.bin"
    assert validate_name("a\u0323\u0307.bin", "f") == unicodedata.normalize("NFC", "a\u0323\u0307.bin")


def test_byte_limit_leaves_room_for_store_decorations():
    longest = "模" * (MAX_NAME_BYTES // 3)
    assert is_valid_name(longest)
    temp = f".{longest}.{'0' * 32}.tmp"
    assert len(temp.encode()) <= 255 and len((longest + ".pending").encode()) <= 255


@pytest.mark.parametrize(
    "raw, name",
    [
        ("a%2Bb.bin", "a+b.bin"),
        ("my%20model.onnx", "my model.onnx"),
        ("a+b.bin", "a+b.bin"),
        ("r%C3%A9sum%C3%A9%20%28final%29.bin", "résumé (final).bin"),
        ("modèle.onnx", "modèle.onnx"),
        ("re%CC%81sume%CC%81.bin", "résumé.bin"),  # NFD, percent-encoded
    ],
)
def test_path_parameters_are_decoded_once(raw, name):
    assert parse_path_name(raw) == name


@pytest.mark.parametrize(
    "raw",
    [
        "%2e%2e",
        "..%2fx",
        "%252e%252e",
        "a%252Bb",
        "%c0%ae%c0%ae",
        "%ff",
        "a%00b",
        "a%2fb",
        "a%5cb",
        "%e2%80%aemodel",
        "%ef%bc%8f",
        "%20x",
        "100%",
    ],
)
def test_hostile_path_parameters_are_refused(raw):
    with pytest.raises(InvalidRequest) as exc:
        parse_path_name(raw)
    assert "'name'" in exc.value.message


def test_parse_key():
    assert parse_key("models/resnet50.pt") == ObjectRef("models", "resnet50.pt")
    assert parse_key("inputs/x.json").key == "inputs/x.json"
    assert parse_key("models/my model.onnx").name == "my model.onnx"
    for bad in [
        "outputs/x.result",
        "models/",
        "models/a/b",
        "x",
        "/models/a",
        "models/../a",
        "models/.a",
        "models\uff0fa",
        "models/a\u2215b",
    ]:
        with pytest.raises(InvalidRequest):
            parse_key(bad)


def test_filename_defaults_to_models():
    assert parse_filename("model.pt") == ObjectRef("models", "model.pt")
    assert parse_filename("inputs/in.json") == ObjectRef("inputs", "in.json")
    assert parse_filename("modèle.onnx") == ObjectRef("models", "modèle.onnx")
    with pytest.raises(InvalidRequest):
        parse_filename("outputs/x")
