"""Fuzzing the producer's API: hypothesis drives both ways in (the ASGI fast path and,
with it stood aside, the FastAPI routes), with and without an API key; then a hostile-body
corpus, in process and over raw sockets against ``python -m producer``.

Every answer must be below 500 (the fake Kinesis accepts everything, so nothing may be
overloaded), every error must be the documented ``{"error": ..., "detail": ...}``, and a
record request must get the same status both ways in. ``pytest -s`` prints the counts.

In CI (``CI=true``) hypothesis is derandomized: the same cases every run, so a red CI is a
regression; locally each run explores new ones.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import socket
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producer.config import ProducerSettings
from producer.main import create_app
from tests.fakes import FakeKinesis, even_shards
from tests.served import Served, read_response, served_producer

KEY = "fuzz-key-0123456789"
RECORD_PATHS = ("/", "/batch")
# the error codes README "The API" documents (and uvicorn's own 400, and a truncated body's)
DOCUMENTED = {
    "unauthorized", "request_timeout", "body_too_large", "record_too_large", "batch_too_large",
    "unsupported_media_type", "invalid_record", "overloaded", "not_ready", "not_accepted",
    "not_found", "method_not_allowed", "bad_request", "incomplete_body",
}  # fmt: skip
SEEN: Counter[int] = Counter()  # status -> answers, over this module
CASES = Counter[str]()


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    fives = sum(n for status, n in SEEN.items() if status >= 500)
    sys.stderr.write(
        f"\nfuzz: {dict(CASES)} cases, {sum(SEEN.values())} answers, statuses "
        f"{dict(sorted(SEEN.items()))}, 5xx: {fives}\n"
    )


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[tuple[bool, bool], TestClient]]:
    """(fast path on, key configured) -> a running app against a fake Kinesis."""
    clients: dict[tuple[bool, bool], TestClient] = {}
    for fast in (True, False):
        for keyed in (True, False):
            conf = ProducerSettings(
                stream_name="s", max_buffered_time_ms=5, api_key=KEY if keyed else None
            )
            app = create_app(conf, client=FakeKinesis(even_shards(4)))
            app.fast_path = fast
            clients[(fast, keyed)] = TestClient(app).__enter__()
    yield clients
    for client in clients.values():
        client.__exit__(None, None, None)


def check(response: Any, method: str) -> None:
    """The invariants of every answer."""
    SEEN[response.status_code] += 1
    assert response.status_code < 500, response.text
    if response.status_code >= 400 and method != "HEAD":
        answer = response.json()
        # the Problem shape; a record refused alone also names its id (RecordFailed)
        assert isinstance(answer, dict) and {"error", "detail"} <= set(answer), answer
        assert set(answer) <= {"error", "detail", "id"}, answer
        assert answer["error"] in DOCUMENTED, answer


def send(client: TestClient, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
    response = client.request(method, path, headers=headers, content=body)
    check(response, method)
    return response


def outcome(response: Any) -> tuple[int, list[str] | str | None]:
    """What must agree both ways in: the status, and per record of a batch its error code."""
    if response.status_code == 200 and "records" in response.json():
        return 200, [r.get("error", "ok") for r in response.json()["records"]]
    body = response.json() if response.content else {}
    return response.status_code, body.get("error") if isinstance(body, dict) else None


# --- hypothesis ----------------------------------------------------------------------------

ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip
records = st.fixed_dictionaries(
    {"data": values},
    optional={
        "partition_key": st.none() | st.text(max_size=300) | st.integers(),
        "id": st.none() | st.text(max_size=80) | st.integers(),
        "extra": values,
    },
)


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity as JSON cannot carry them: refused


@st.composite
def mangled(draw: st.DrawFn, body: st.SearchStrategy[bytes]) -> bytes:
    """A body with a slice cut out or a byte changed."""
    raw = draw(body)
    if not raw:
        return raw
    at = draw(st.integers(0, len(raw) - 1))
    if draw(st.booleans()):
        return raw[:at] + raw[at + draw(st.integers(1, 8)) :]
    return raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]


record_bodies = records.map(_dump)
batch_bodies = st.fixed_dictionaries({"records": st.lists(records | values, max_size=6)}).map(_dump)
bodies = st.one_of(
    record_bodies,
    batch_bodies,
    values.map(_dump),
    mangled(record_bodies | batch_bodies),
    st.binary(max_size=64),
)
methods = st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
paths = st.sampled_from(
    ["/", "/batch", "/"] * 3
    + ["/health", "/ready", "/metrics", "/docs", "/openapi.json", "/batch/", "//", "/%6Detrics"]
) | ascii_text.map(lambda t: "/" + t.replace("?", "").replace("#", "").lstrip("/"))
media = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "application/vnd.x+json",
     "text/plain", "application/x-www-form-urlencoded", ""]
) | ascii_text  # fmt: skip
keys = st.sampled_from([KEY, KEY, KEY, "", "wrong", KEY + " ", KEY.upper()]) | ascii_text


@settings(
    max_examples=500,
    deadline=None,
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(method=methods, path=paths, content_type=media, key=st.none() | keys, body=bodies)
def test_fuzzed_requests_get_documented_answers_both_ways_in(
    apps: dict[tuple[bool, bool], TestClient],
    method: str,
    path: str,
    content_type: str,
    key: str | None,
    body: bytes,
) -> None:
    CASES["hypothesis"] += 1
    headers = {"content-type": content_type} if content_type else {}
    if key is not None:
        headers["x-api-key"] = key
    for keyed in (True, False):
        fast = send(apps[(True, keyed)], method, path, headers, body)
        routed = send(apps[(False, keyed)], method, path, headers, body)
        # THEN without the right key only the health checks answer anything but 401
        health = path in ("/health", "/ready") and method in ("GET", "HEAD")
        if keyed and key != KEY and not health:
            assert fast.status_code == routed.status_code == 401
        # AND a record request is answered alike both ways in
        if method == "POST" and path in RECORD_PATHS:
            assert outcome(fast) == outcome(routed), (body, fast.text, routed.text)


@settings(
    max_examples=400,
    deadline=None,
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(path=st.sampled_from(RECORD_PATHS), body=bodies)
def test_fuzzed_record_bodies_are_answered_alike_both_ways_in(
    apps: dict[tuple[bool, bool], TestClient], path: str, body: bytes
) -> None:
    # GIVEN a record request that passes the gate (the right key, JSON)
    CASES["hypothesis records"] += 1
    headers = {"content-type": "application/json", "x-api-key": KEY}
    fast = send(apps[(True, True)], "POST", path, headers, body)
    routed = send(apps[(False, True)], "POST", path, headers, body)
    # THEN the fast path and the FastAPI route give the same status, and in a batch the same
    # result for each record
    assert outcome(fast) == outcome(routed), (body, fast.text, routed.text)


# --- the hostile-body corpus, in process ----------------------------------------------------


def _nested(depth: int, kind: str) -> bytes:
    inner = b"1"
    if kind == "list":
        return b'{"data": ' + b"[" * depth + inner + b"]" * depth + b"}"
    return b'{"data": ' + b'{"a": ' * depth + inner + b"}" * depth + b"}"


NUMBERS = [
    "0", "-0", "0e0", "1E-130", "1e-131", "9.9999999999999999999999999999999999999E+125",
    "1e126", "-1e126", "1" * 38, "1" * 39, "0." + "1" * 38, "0." + "1" * 39,
    str(2**63 - 1), str(2**63), str(2**64), str(-(2**63) - 1), "1" * 4300, "1" * 4301,
    "1e308", "1.7976931348623157e308", "1e309", "-1e309", "5e-324", "1e-400", "-1e-400",
    "1E-0400", "1.234567e-310", "2e-308", "1e+0126",
    "1e999999999", "123456789012345678901234567890.5", "1.0000000000000001",
    "01", "1.", ".5", "+1", "0x10", "NaN", "Infinity", "-Infinity", "1e", "--1",
]  # fmt: skip


def _corpus() -> dict[str, bytes]:
    corpus: dict[str, bytes] = {}
    for depth in (1, 2, 31, 32, 33, 100, 500, 999, 1000, 1023, 1024, 1025, 2000):
        for kind in ("list", "object"):
            corpus[f"nested {kind} {depth}"] = _nested(depth, kind)
    for number in NUMBERS:
        corpus[f"number {number[:24]}"] = b'{"data": %s}' % number.encode()
        corpus[f"batch number {number[:24]}"] = b'{"records": [{"data": %s}]}' % number.encode()
    record = b'{"data": "x"}'
    corpus.update({
        "invalid utf-8 byte": b'{"data": "\xff"}',
        "overlong utf-8": b'{"data": "\xc0\xaf"}',
        "utf-8 encoded surrogate": b'{"data": "\xed\xa0\x80"}',
        "truncated utf-8": b'{"data": "\xe2\x82"}',
        "invalid utf-8 in a key": b'{"data": {"\xfe": 1}}',
        "invalid utf-8 in a partition key": b'{"data": 1, "partition_key": "\xff"}',
        "lone surrogate escape": b'{"data": "\\ud800"}',
        "reversed surrogate pair": b'{"data": "\\udc00\\ud800"}',
        "escaped NUL": b'{"data": "\\u0000"}',
        "raw control character": b'{"data": "a\x01b"}',
        "utf-8 BOM": codecs.BOM_UTF8 + record,
        "utf-16 LE BOM": codecs.BOM_UTF16_LE + record.decode().encode("utf-16-le"),
        "utf-16 BE BOM": codecs.BOM_UTF16_BE + record.decode().encode("utf-16-be"),
        "utf-32 BOM": codecs.BOM_UTF32_LE + record.decode().encode("utf-32-le"),
        "duplicate data": b'{"data": 1, "data": 2}',
        "duplicate records": b'{"records": [{"data": 1}], "records": [{"data": 2}]}',
        "duplicate nested key": b'{"data": {"a": 1, "a": 2}}',
        "duplicate partition key": b'{"data": 1, "partition_key": "a", "partition_key": 5}',
        "empty": b"", "whitespace": b" \t\r\n", "null": b"null", "NUL bytes": b"\x00" * 8,
        "trailing garbage": record + b"x", "two documents": record + record,
        "trailing comma": b'{"data": [1,],}', "single quotes": b"{'data': 1}",
        "comment": b'{"data": 1 /* c */}', "unterminated string": b'{"data": "abc',
        "truncated": record[:-1], "only an open brace": b"{",
        "long string": b'{"data": "' + b"a" * 2_000_000 + b'"}',
        "long key": b'{"data": {"' + b"k" * 70_000 + b'": 1}}',
        "many keys": b'{"data": {' + b",".join(b'"k%d": 1' % i for i in range(20_000)) + b"}}",
        "empty batch": b'{"records": []}', "batch of 501": b'{"records": [' + b",".join(
            [record] * 501) + b"]}",
        "batch not a list": b'{"records": {"data": 1}}', "batch of nulls": b'{"records": [null]}',
        "record at the 1 MiB limit": b'{"data": "' + b"a" * (1024 * 1024 - 100) + b'"}',
        "record past the 1 MiB limit": b'{"data": "' + b"a" * (1024 * 1024 + 10) + b'"}',
        "body past the limit": b'{"data": "' + b"a" * (6 * 1024 * 1024) + b'"}',
    })  # fmt: skip
    return corpus


CORPUS = _corpus()


@pytest.mark.parametrize("path", RECORD_PATHS)
@pytest.mark.parametrize("name", CORPUS)
def test_hostile_bodies_get_documented_answers_both_ways_in(
    apps: dict[tuple[bool, bool], TestClient], name: str, path: str
) -> None:
    CASES["corpus"] += 1
    body = CORPUS[name]
    for keyed in (True, False):
        for key in (KEY, "wrong") if keyed else (None,):
            headers = {"content-type": "application/json"}
            if key is not None:
                headers["x-api-key"] = key
            fast = send(apps[(True, keyed)], "POST", path, headers, body)
            routed = send(apps[(False, keyed)], "POST", path, headers, body)
            assert outcome(fast) == outcome(routed), (name, fast.text[:300], routed.text[:300])
            if key == "wrong":
                assert fast.status_code == 401


# --- the same at the HTTP level: chunked, lying lengths, truncated, over raw sockets ---------


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    with served_producer(
        PRODUCER_API_KEY=KEY, PRODUCER_HEADER_TIMEOUT_SECONDS="2", PRODUCER_BODY_TIMEOUT_SECONDS="2"
    ) as served:
        yield served


def _request(head: list[str], body: bytes = b"") -> bytes:
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _chunked(*pieces: bytes, extension: bytes = b"") -> bytes:
    out = b"".join(b"%x%s\r\n%s\r\n" % (len(p), extension, p) for p in pieces)
    return out + b"0\r\n\r\n"


RECORD = b'{"data": {"n": 1}}'
BASE = ["POST / HTTP/1.1", "Host: p", "Content-Type: application/json", f"X-Api-Key: {KEY}"]
WIRE = {
    "chunked record": (_request([*BASE, "Transfer-Encoding: chunked"], _chunked(RECORD)), 200),
    "chunked, one byte a chunk": (
        _request([*BASE, "Transfer-Encoding: chunked"], _chunked(*[bytes([b]) for b in RECORD])),
        200,
    ),
    "chunk extensions": (
        _request([*BASE, "Transfer-Encoding: chunked"], _chunked(RECORD, extension=b";x=1")),
        200,
    ),
    "bad chunk size": (_request([*BASE, "Transfer-Encoding: chunked"], b"zz\r\nab\r\n0\r\n\r\n"),
                       400),
    "chunked past the limit": (
        _request([*BASE, "Transfer-Encoding: chunked"],
                 _chunked(*[b" " * (1024 * 1024)] * 7)), 413),
    # the rest of the body is read as the next request, which is not HTTP: uvicorn answers
    # that at once (400) and closes, possibly before the first one's 422
    "Content-Length shorter than the body": (
        _request([*BASE, "Content-Length: 5"], RECORD), (400, 422)),
    "Content-Length and chunked": (
        _request([*BASE, "Content-Length: 18", "Transfer-Encoding: chunked"], _chunked(RECORD)),
        400),
    "negative Content-Length": (_request([*BASE, "Content-Length: -1"], RECORD), 400),
    "Content-Length not a number": (_request([*BASE, "Content-Length: ten"], RECORD), 400),
    "two Content-Lengths": (
        _request([*BASE, "Content-Length: 18", "Content-Length: 5"], RECORD), 400),
    "declared past the limit": (_request([*BASE, "Content-Length: 7000000"], b""), 413),
    "Content-Length longer than the body": (
        _request([*BASE, "Content-Length: 100"], RECORD), 408),
    "wrong key, expecting 100-continue": (
        _request(["POST / HTTP/1.1", "Host: p", "X-Api-Key: nope", "Expect: 100-continue",
                  "Content-Length: 18"]), 401),
    "not HTTP": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400),
    "header line without a colon": (_request([*BASE, "Oops", "Content-Length: 18"], RECORD), 400),
}  # fmt: skip


@pytest.mark.parametrize("name", WIRE)
def test_hostile_requests_on_the_wire(server: Served, name: str) -> None:
    CASES["wire"] += 1
    raw, expected = WIRE[name]
    with server.connect() as sock:
        with contextlib.suppress(OSError):  # refused while sending: the answer is what counts
            sock.sendall(raw)
        status, headers, body = read_response(sock, timeout=10)
    SEEN[status] += 1
    assert status in (expected if isinstance(expected, tuple) else (expected,)), (name, body)
    if status >= 400:
        answer = json.loads(body)
        assert set(answer) == {"error", "detail"}, answer
        assert headers["content-type"] == "application/json"


def test_a_truncated_body_on_the_wire_is_not_taken(server: Served) -> None:
    CASES["wire"] += 1
    before = _received(server)
    with server.connect() as sock:
        sock.sendall(_request([*BASE, "Content-Length: 100"], RECORD))
        sock.shutdown(socket.SHUT_WR)  # the client stops after a valid JSON prefix
        with pytest.raises((ConnectionError, TimeoutError)):
            read_response(sock, timeout=5)  # the connection closes without an answer
    assert _received(server) == before


def _received(server: Served) -> bytes:
    with server.connect() as sock:
        sock.sendall(_request(["GET /metrics HTTP/1.1", "Host: p", f"X-Api-Key: {KEY}"]))
        status, _, body = read_response(sock, timeout=5)
    assert status == 200
    (line,) = [x for x in body.splitlines() if x.startswith(b"producer_user_records_received")]
    return line
