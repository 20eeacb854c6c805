"""Path attacks in every name-bearing field, and symlinks planted in the store.

Each hostile name gets 400 INVALID_REQUEST naming the field. Planted
symlinks (valid names) are never followed out of the root: an audit hook
records every file operation, and a sentinel directory outside the root is
snapshotted before and after.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse

import pytest

from tests.support import fsaudit
from tests.support.routes import check_error_body

ATTACKS = [
    # '..' in every encoding
    "..",
    "../x",
    "../../etc/passwd",
    "..\\x",
    "x/../y",
    "./x",
    ".",
    "%2e%2e",
    "%2e%2e%2fx",
    "..%2fx",
    "%252e%252e",
    "%252e%252e%252fetc",
    "..%5cx",
    "%c0%ae%c0%ae",
    "..%c0%afx",
    "%e0%80%ae%e0%80%ae",
    "\u00c0\u00ae\u00c0\u00ae",
    "．．",
    "．．／x",
    "․․",
    "‥",
    "…",
    "..／x",
    "\uff0e\uff0e\u2215x",
    "x\u2044..",
    # absolute and UNC paths, backslashes
    "/etc/passwd",
    "/tmp/outside",
    "//x",
    "\\\\server\\share",
    "C:\\windows\\x",
    "x\\y",
    "\\x",
    # NUL and control characters
    "x\x00.bin",
    "\x00",
    "x\x01y",
    "x\ny",
    "x\r\n",
    "x\ty",
    "x\x7f",
    # look-alikes, invisible and bidi characters
    "ｍｏｄｅｌ",
    "model\u202e",
    "mod\u200bel",
    "mоdel",
    "\ufeffmodel",
    # Unicode: bidi overrides and isolates, zero-width joiners, fullwidth and
    # other look-alike solidi, combining-dot and overlay tricks, lone surrogate,
    # private use, mixed-script and fullwidth homoglyphs of a real name
    "x\u202e\u2215..",
    "\u2066..\u2069",
    "..\u200d",
    "\u200d..",
    "x\u200dy",
    "x\u2060y",
    "\uff0f",
    "x\uff0f..",
    "x\u29f8y",
    "\u2215",
    ".\u0307",
    "\u0307.",
    "\u0307\u0307",
    "x.\u0307.",
    ".\u0323.",
    "x\u0338",
    " \u0301",
    "x\u2028y",
    "\ud800",
    "\U000f0000",
    "t\u0430rget.bin",
    "\uff54arget.bin",
    # dot files (the store's own temp/metadata namespace), empty, blank
    ".hidden",
    ".x.0123456789abcdef0123456789abcdef.tmp",
    "",
    " ",
    "x ",
    # shell-ish and home
    "~",
    "~/.ssh/id_rsa",
    "$HOME",
    "x;y",
    "x|y",
    "x*",
    "x?",
    # over-long
    "a" * 201,
    "a" * 256,
    "a" * 100_000,
]


def test_corpus_size():
    assert len(set(ATTACKS)) >= 40 and len(set(ATTACKS)) == len(ATTACKS)


@pytest.fixture
def sentinel(tmp_path):
    """A directory outside the store with a file an attacker would want."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret.bin").write_bytes(b"outside secret")
    (d / "x").write_bytes(b"outside x")
    # Decoy named like this name's temp file: a debris sweep that follows a
    # symlinked directory would delete it.
    (d / ".x.0123456789abcdef0123456789abcdef.tmp").write_bytes(b"decoy")
    return d


def snapshot(d):
    out = {}
    for dirpath, dirs, files in os.walk(d):
        for f in files + dirs:
            p = os.path.join(dirpath, f)
            st = os.lstat(p)
            digest = hashlib.sha256(open(p, "rb").read()).hexdigest() if os.path.isfile(p) else None
            out[os.path.relpath(p, d)] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


def _field_cases(attack):
    q = urllib.parse.quote(attack, safe="", errors="surrogatepass")
    return [
        ("filename", "POST", "/ingest", {"data": "x", "filename": attack}),
        ("filename", "POST", "/ingest", {"data": "x", "filename": "models/" + attack}),
        ("filename", "POST", "/ingest", {"data": "eA==", "encoding": "base64", "filename": "inputs/" + attack}),
        ("key", "POST", "/ingest", {"key": attack}),
        ("key", "POST", "/ingest", {"key": "models/" + attack}),
        ("key", "POST", "/uploads", {"key": "inputs/" + attack, "sizeBytes": 1}),
        ("model", "POST", "/predict", {"fileId": "f1", "model": attack}),
        ("model", "POST", "/predict", {"fileId": "f1", "model": "models/" + attack}),
        ("fileId", "POST", "/predict", {"fileId": attack, "model": "target.bin"}),
        ("name", "GET", "/models/" + q, None),
    ]


def test_path_attack_corpus(http, bucket, efs_root, sentinel, tmp_path):
    assert http.post("/ingest", {"data": "target", "filename": "target.bin"})[0] == 200
    before = snapshot(sentinel)
    root_before = sorted(os.listdir(efs_root / "models"))
    cases = 0
    with fsaudit.watch(str(efs_root), str(tmp_path)) as touched:
        for attack in ATTACKS:
            for field, method, path, body in _field_cases(attack):
                if method == "GET":
                    if not urllib.parse.quote(attack, safe="", errors="surrogatepass") or len(path) > 8000:
                        continue  # no path segment to carry it / beyond any URL limit
                    status, resp = http.request("GET", path)
                else:
                    status, resp = http.post(path, body)
                cases += 1
                check_error_body(status, resp, f"path attack {field}")
                assert resp["error"] == "INVALID_REQUEST" and f"'{field}'" in resp["message"], (attack, path, resp)
    assert cases >= 40 * 8, cases
    print(f"{cases} path-attack requests over {len(ATTACKS)} hostile names")
    assert touched == [] and snapshot(sentinel) == before
    assert sorted(os.listdir(efs_root / "models")) == root_before, "something was written for a hostile name"


def test_control_names_are_accepted(http, bucket, efs_root):
    """The same fields with benign names work, so the 400s above are the
    validator's doing, not a broken route."""
    assert http.post("/ingest", {"data": "x", "filename": "ok.bin"})[0] == 200
    status, body = http.post("/ingest", {"key": "models/missing.bin"})
    assert (status, body["error"]) == (404, "S3_NOT_FOUND")
    status, body = http.post("/predict", {"fileId": "f1", "model": "ok.bin"})
    assert status == 200
    assert http.request("GET", "/models/ok.bin")[0] == 200


# -- planted symlinks ------------------------------------------------------
def _plant(root, rel, target):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    if os.path.lexists(p):
        if os.path.isdir(p) and not os.path.islink(p):
            os.rename(p, p + ".orig")
        else:
            os.unlink(p)
    os.symlink(target, p)


def _ok_or_documented(status, body, where):
    if status != 200:
        check_error_body(status, body, where)


SCENARIOS = {
    # object -> a file outside, with and without a manifest of its own
    "object-no-manifest": ("models/x", "secret.bin", "x"),
    "object-with-manifest": ("models/x", "secret.bin", "x"),
    # whole store directories replaced by symlinks to the outside
    "models-dir": ("models", ".", "x"),
    "inputs-dir": ("inputs", ".", "x"),
    "outputs-dir": ("outputs", ".", "x"),
    "meta-dir": (".meta", ".", "x"),
    "meta-kind-dir": (".meta/models", ".", "x"),
    "meta-ids-dir": (".meta/ids", ".", "x"),
    "locks-dir": (".locks", ".", "x"),
    "lock-file": (".locks/models/x.lock", "secret.bin", "x"),
    "manifest-file": (".meta/models/x.json", "secret.bin", "x"),
    "output-file": ("outputs/f1.result", "secret.bin", "x"),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_planted_symlink_is_never_followed(scenario, http, efs_root, sentinel, tmp_path):
    from chalicelib.store import Store

    root = str(efs_root)
    rel, target, name = SCENARIOS[scenario]
    if scenario != "object-no-manifest":
        # A real object first, so manifests and the fileId index exist.
        status, ing = http.post("/ingest", {"data": "inside", "filename": name})
        assert status == 200
        assert http.post("/predict", {"fileId": "f1", "model": name})[0] == 200
    # Forged metadata outside, which a followed .meta link would serve.
    os.makedirs(sentinel / "models", exist_ok=True)
    (sentinel / "models" / "x.json").write_text('{"forged": true}')
    _plant(root, rel, str(sentinel / target) if target != "." else str(sentinel))
    from chalicelib.edge import model_cache

    model_cache().clear()  # a warm runner would hide a followed link
    before = snapshot(sentinel)
    with fsaudit.watch(root, str(sentinel)) as touched:
        for method, path, body in [
            ("POST", "/predict", {"fileId": "f1", "model": name}),
            ("POST", "/predict", {"fileId": "f2", "model": name}),
            ("GET", f"/models/{name}", None),
            ("GET", "/models", None),
            ("POST", "/ingest", {"data": "new", "filename": name}),
            ("POST", "/ingest", {"data": "in", "filename": f"inputs/{name}"}),
            ("POST", "/predict", {"fileId": "f1", "model": name}),
            ("GET", "/health", None),
        ]:
            status, resp = http.post(path, body) if method == "POST" else http.request(method, path)
            _ok_or_documented(status, resp, f"symlink {scenario}")
            if status == 200 and path == "/predict":
                # Whatever was served came from inside the store.
                assert resp["result"]["modelSize"] in (len("inside"), len("new")), resp
        Store(root).reclaim()
    assert touched == [], f"followed a planted symlink out of the store: {touched[:5]}"
    assert snapshot(sentinel) == before
