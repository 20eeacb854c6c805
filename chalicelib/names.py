"""Validation of every name that becomes a path in the store.

A name is one path component that people actually use (``my model.onnx``,
``modèle.onnx``, ``résumé (final).bin``, ``モデル.onnx``), checked by an
allow list rather than a deny list:

- NFC-normalised at parse time, so names equal after NFC are one name and
  the store only ever sees (and lists) NFC;
- only Unicode letters, decimal digits and combining marks, the ASCII space
  (inside the name, not leading or trailing) and ``. _ - + = , @ ! ' ( )``.
  Everything else is refused: separators (``/``, ``\\``), NUL, control and
  format characters (bidi overrides, zero-width joiners), other spaces,
  unassigned, private-use and surrogate code points;
- no leading dot: ``.`` and ``..`` and the store's own dot files (temp files,
  ``.meta``, ``.locks``) can never be named;
- look-alikes are refused: characters that change under NFKC (fullwidth
  ``ｍｏｄｅｌ``, ``．``, ligatures, one-dot leaders), a mark that does not
  follow a letter or digit (a combining dot on a dot or a space), overlay
  marks (a combining solidus drawn through a letter), and a word
  that mixes scripts outside UTS #39's "highly restrictive" sets (Latin with
  Cyrillic ``mоdel``; Latin with Han, kana or Hangul is fine);
- at most :data:`MAX_NAME_BYTES` bytes of UTF-8, which leaves room within
  NAME_MAX (255 bytes) for the store's decorations ``.<name>.<32 hex>.tmp``
  and ``<name>.json`` / ``<name>.pending``.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote

from chalicelib.errors import InvalidRequest

MAX_NAME_BYTES = 200  # + ".", ".", 32 hex, ".tmp" = 239 <= NAME_MAX (255)
MAX_NAME_LENGTH = MAX_NAME_BYTES  # the old name of the limit (ASCII: one byte per character)

MODELS, INPUTS, OUTPUTS = "models", "inputs", "outputs"
KINDS = (MODELS, INPUTS, OUTPUTS)
INGEST_KINDS = (MODELS, INPUTS)

PUNCTUATION = frozenset(".,_-+=@!'() ")
_LETTER, _MARK, _DIGIT = ("Lu", "Ll", "Lt", "Lm", "Lo"), ("Mn", "Mc", "Me"), ("Nd",)

NAME_RULE = (
    f"1-{MAX_NAME_BYTES} bytes (UTF-8) of letters, digits, combining marks, spaces and "
    '". _ - + = , @ ! \' ( )", not starting with a dot or a space nor ending with a space, '
    "without separators, control or invisible characters, look-alikes or mixed-script words"
)

# Scripts that may share a word (UTS #39 "highly restrictive"); any single
# script may stand alone.
_SCRIPT_SETS = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
# Letters that belong to no one script (Common), and name prefixes that mean Han.
_COMMON = frozenset({"MODIFIER", "KATAKANA-HIRAGANA"})
_HAN = frozenset({"CJK", "IDEOGRAPHIC"})


@dataclass(frozen=True, order=True)
class ObjectRef:
    """A validated (kind, name) pair: ``models/resnet.onnx``."""

    kind: str
    name: str

    @property
    def key(self) -> str:
        """The object's key, the same in S3 and under the store root."""
        return f"{self.kind}/{self.name}"


def _script(letter: str) -> str | None:
    """The script of a letter, from its Unicode name (``None``: Common)."""
    word = unicodedata.name(letter, "").split(" ", 1)[0]
    if not word or word in _COMMON:
        return None
    return "HAN" if word in _HAN else word


def _words_single_script(name: str) -> bool:
    """Each word (run of letters and marks) uses one script or one allowed mix."""
    scripts: set[str] = set()
    for ch in name + " ":
        if unicodedata.category(ch) in _LETTER:
            script = _script(ch)
            if script is not None:
                scripts.add(script)
        elif unicodedata.category(ch) not in _MARK:  # a word ends
            if len(scripts) > 1 and not any(scripts <= allowed for allowed in _SCRIPT_SETS):
                return False
            scripts = set()
    return True


def _chars_allowed(name: str) -> bool:
    previous = ""
    for ch in name:
        category = unicodedata.category(ch)
        if category in _MARK:
            # A mark decorates a letter or digit, never a dot, a space or nothing;
            # overlays (combining class 1: U+0338 long solidus...) draw through it.
            if previous not in ("letter", "mark") or unicodedata.combining(ch) == 1:
                return False
            previous = "mark"
        elif category in _LETTER or category in _DIGIT:
            previous = "letter"
        elif ch in PUNCTUATION:
            previous = "punct"
        else:
            return False  # separators, Cc/Cf/Zl/Zp/Cs/Co/Cn, other symbols and spaces
    return True


def is_valid_name(name: object) -> bool:
    """True when ``name`` is a safe single path component, already in NFC."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_BYTES:
        return False
    return _valid(name)


@functools.lru_cache(maxsize=4096)
def _valid(name: str) -> bool:
    # Memoised: every request checks the same few names (model, input,
    # fileId) up to three times; at most 4,096 names of <= 255 bytes.
    if name[0] in ". " or name[-1] == " ":
        return False
    if not _chars_allowed(name):  # before encoding: surrogates do not encode
        return False
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return False
    if not unicodedata.is_normalized("NFC", name) or unicodedata.normalize("NFKC", name) != name:
        return False
    return _words_single_script(name)


def validate_name(name: object, field: str) -> str:
    """The NFC form of ``name``, or :class:`InvalidRequest` naming ``field``."""
    if isinstance(name, str) and len(name) <= 4 * MAX_NAME_BYTES:
        name = unicodedata.normalize("NFC", name)
    if not is_valid_name(name):
        raise InvalidRequest(f"Invalid '{field}': must be {NAME_RULE}")
    return name  # type: ignore[return-value]


def parse_path_name(raw: object, field: str = "name") -> str:
    """A name from a URL path parameter (``/models/{name}``), decoded exactly once.

    API Gateway (REST), ``chalice local`` and ``chalice.test.Client`` all pass
    path parameters still percent-encoded, as the client sent them. ``%`` is
    never part of a valid name, so a second decoding can never be needed, and
    invalid UTF-8 (``%c0%ae``) is refused rather than replaced.
    """
    if not isinstance(raw, str):
        raise InvalidRequest(f"Invalid '{field}': must be {NAME_RULE}")
    try:
        decoded = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequest(f"Invalid '{field}': not valid percent-encoded UTF-8") from None
    return validate_name(decoded, field)


def parse_key(key: object, field: str = "key", kinds: tuple[str, ...] = INGEST_KINDS) -> ObjectRef:
    """Parse ``<kind>/<name>`` (an S3 key) into an :class:`ObjectRef` (name in NFC)."""
    if not isinstance(key, str) or key.count("/") != 1:
        raise InvalidRequest(f"Invalid '{field}': must be '<prefix>/<name>' with prefix one of {', '.join(kinds)}")
    kind, name = key.split("/")
    if kind not in kinds:
        raise InvalidRequest(f"Invalid '{field}': prefix must be one of {', '.join(kinds)}")
    return ObjectRef(kind, validate_name(name, field))


def parse_filename(filename: object) -> ObjectRef:
    """Parse an inline ingest's ``filename``.

    A bare name goes under ``models/`` as in the seed; ``inputs/x.json`` or
    ``models/x`` choose the prefix explicitly.
    """
    if isinstance(filename, str) and "/" in filename:
        return parse_key(filename, field="filename")
    return ObjectRef(MODELS, validate_name(filename, "filename"))
