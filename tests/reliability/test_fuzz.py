"""Property-based fuzzing of every route through chalice.test.Client.

Properties, for every generated request: never a 5xx; every error is one
of the documented bodies (code, message, requestId; status per code); a
success has the documented fields. Each test counts the requests it really
sent and asserts the count, so the default run provably sends >= 2,000.
"""

from __future__ import annotations

import base64
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.routes import check_error_body

DEFAULT = dict(deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
SLOW = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12,
)
names = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,30}", fullmatch=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "..",
            ".",
            "",
            "a/b",
            "../x",
            "/etc/passwd",
            "x\x00y",
            "models/a",
            "inputs/b.json",
            "outputs/c",
            "a" * 201,
            "a" * 200,
            "ｍodel",
            "model.onnx",
        ]
    ),
)
valid_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,30}", fullmatch=True)
# Half the content types are JSON, so bodies get past the first check.
content_types = st.just("application/json") | st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/vnd.x+json",
        "text/plain",
        "application/octet-stream",
        "multipart/form-data; boundary=x",
        "",
        "application/x-www-form-urlencoded",
    ]
)
valid_ingest = st.fixed_dictionaries(
    {"data": st.text(max_size=300), "filename": valid_names}, optional={"encoding": st.just("text")}
) | st.fixed_dictionaries(
    {
        "data": st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
        "filename": valid_names.map(lambda n: "inputs/" + n) | valid_names,
        "encoding": st.just("base64"),
    }
)
ingest_bodies = (
    valid_ingest
    | st.fixed_dictionaries(
        {},
        optional={
            "data": st.one_of(
                st.text(max_size=200), st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()), json_values
            ),
            "filename": names | json_values,
            "encoding": st.sampled_from(["text", "base64", "hex", "", None]) | json_values,
            "key": names.map(lambda n: "models/" + n) | names | json_values,
        },
    )
    | st.dictionaries(st.text(max_size=12), json_values, max_size=5)
    | json_values
)
valid_predict = st.fixed_dictionaries(
    {"fileId": valid_names, "model": st.just("fuzz-model.bin")},
    optional={
        "inputs": st.dictionaries(st.text(max_size=8), st.lists(st.floats(allow_nan=False), max_size=4), max_size=2)
    },
)
predict_bodies = (
    valid_predict
    | st.fixed_dictionaries(
        {},
        optional={
            "fileId": names | json_values,
            "model": st.sampled_from(["fuzz-model.bin", "models/fuzz-model.bin"]) | names | json_values,
            "inputs": st.dictionaries(st.text(max_size=8), json_values, max_size=3) | json_values,
        },
    )
    | st.dictionaries(st.text(max_size=12), json_values, max_size=5)
    | json_values
)
upload_bodies = (
    st.fixed_dictionaries(
        {},
        optional={
            "key": names.map(lambda n: "models/" + n) | names | json_values,
            "sizeBytes": st.integers(min_value=-5, max_value=1 << 42) | json_values,
        },
    )
    | json_values
)
raw_bodies = (
    st.binary(max_size=300)
    | st.text(max_size=300).map(str.encode)
    | st.sampled_from(
        [b"", b"{", b"[]", b"null", b'{"a":', b"\xff\xfe", b'{"data": "x", "filename": "a"}' * 2, b"[" * 5000]
    )
)


class Sender:
    """Sends one request, checks the properties, counts it."""

    def __init__(self, client):
        self.client = client
        self.count = 0
        self.statuses: dict[int, int] = {}
        self.unrouted = 0

    def send(self, method, path, body=b"", content_type="application/json", framework_ok=False):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        headers = {"Content-Type": content_type} if content_type else {}
        r = self.client.http.request(method, path, body=body, headers=headers)
        self.count += 1
        self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (method, path, body[:200], r.body[:300])
        parsed = json.loads(r.body)
        if r.status_code >= 400:
            if framework_ok and r.status_code == 403 and "error" not in parsed:
                # A path no route matches never reaches the Lambda: API Gateway
                # (emulated by Chalice) answers it itself. Known gap, reported:
                # only a gateway response in infra/ could reshape this body.
                assert parsed == {"message": "Missing Authentication Token"}, parsed
                self.unrouted += 1
            elif framework_ok and r.status_code in (404, 405):
                # Chalice's routing answers (wrong method), reshaped by our middleware.
                assert parsed.get("error") in ("INVALID_REQUEST", "NOT_FOUND"), parsed
                assert isinstance(parsed.get("message"), str) and isinstance(parsed.get("requestId"), str)
            else:
                sent = path + " " + body.decode("utf-8", "replace")
                check_error_body(r.status_code, parsed, f"fuzz {method} {path}", sent)
        return r.status_code, parsed


@pytest.fixture
def sender(client, efs_root):
    s = Sender(client)
    status, body = s.send("POST", "/ingest", {"data": "fuzz model", "filename": "fuzz-model.bin"})
    assert status == 200
    return s


def _run(strategy, action, examples, opts):
    @settings(max_examples=examples, **opts)
    @given(strategy)
    def run(x):
        action(x)

    run()


def fuzz_ingest(sender, examples, opts=DEFAULT):
    def act(args):
        body, ctype = args
        status, resp = sender.send("POST", "/ingest", body, ctype)
        if status == 200:
            assert set(resp) >= {"fileId", "efsPath", "s3Key", "sizeBytes", "status"}
            assert resp["status"] in ("created", "updated", "exists")

    _run(st.tuples(ingest_bodies, content_types), act, examples, opts)


def fuzz_predict(sender, examples, opts=DEFAULT):
    def act(args):
        body, ctype = args
        status, resp = sender.send("POST", "/predict", body, ctype)
        if status == 200:
            assert resp["result"]["processed"] is True and isinstance(resp["durationMs"], (int, float))

    _run(st.tuples(predict_bodies, content_types), act, examples, opts)


def fuzz_raw(sender, examples, opts=DEFAULT):
    paths = st.sampled_from(["/ingest", "/predict", "/uploads"])
    _run(st.tuples(paths, raw_bodies, content_types), lambda a: sender.send("POST", a[0], a[1], a[2]), examples, opts)


def fuzz_other_routes(sender, examples, opts=DEFAULT):
    segment = st.text(alphabet=string.ascii_letters + string.digits + "._-%~+!$&'()*,;=:@", min_size=1, max_size=30)
    requests = st.one_of(
        st.tuples(st.just("POST"), st.just("/uploads"), upload_bodies),
        st.tuples(st.just("GET"), st.just("/models"), st.just(b"")),
        st.tuples(st.just("GET"), segment.map(lambda s: "/models/" + s), st.just(b"")),
        st.tuples(st.just("GET"), st.just("/health"), st.just(b"")),
        # Unknown routes and methods.
        st.tuples(
            st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "POST"]),
            st.sampled_from(["/", "/ingest", "/predict", "/health", "/models", "/uploads"])
            | segment.map(lambda s: "/" + s),
            st.binary(max_size=50),
        ),
    )

    def act(args):
        method, path, body = args
        status, resp = sender.send(method, path, body, framework_ok=True)
        if status == 200 and path == "/health":
            assert resp["status"] == "ok" and resp["store"]["writable"] is True

    _run(requests, act, examples, opts)


@pytest.mark.parametrize(
    "fuzz,examples",
    [
        (fuzz_ingest, 700),
        (fuzz_predict, 600),
        (fuzz_raw, 400),
        (fuzz_other_routes, 400),
    ],
    ids=["ingest", "predict", "raw-bodies", "other-routes"],
)
def test_fuzz_routes(sender, fuzz, examples, fuzz_total):
    fuzz(sender, examples)
    # Hypothesis may stop short only if it exhausts a strategy; ours cannot be.
    assert sender.count >= examples, sender.count
    assert sum(v for k, v in sender.statuses.items() if 400 <= k < 500) > 0, "no error case generated"
    if fuzz in (fuzz_ingest, fuzz_predict):  # valid requests are generated too, not only junk
        assert sender.statuses.get(200, 0) > 10, sender.statuses
    fuzz_total[fuzz.__name__] = sender.count


@pytest.fixture(scope="module")
def fuzz_total():
    """Requests really sent by the default fuzz tests; >= 2,000 once all ran."""
    counts = {}
    yield counts
    if len(counts) == 4:
        print(f"fuzz requests sent: {counts} = {sum(counts.values())}")
        assert sum(counts.values()) >= 2000, counts


@pytest.mark.slow
@pytest.mark.parametrize("fuzz", [fuzz_ingest, fuzz_predict, fuzz_raw, fuzz_other_routes])
def test_fuzz_routes_stress(sender, fuzz):
    fuzz(sender, 5000, SLOW)
    assert sender.count >= 5000
