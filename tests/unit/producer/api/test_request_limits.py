"""Auth and limits before the body: against ``python -m producer`` itself (uvicorn,
httptools, uvloop) over raw sockets, so what the server reads and holds is what it would in
production."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from producer.config import ProducerSettings
from producer.main import create_app
from tests.fakes import FakeKinesis, even_shards
from tests.served import Served, read_response, served_producer

MiB = 1024 * 1024
KEY = "right-key-0123456789"
HUGE = 300 * MiB


@pytest.fixture(scope="module")
def keyed() -> Iterator[Served]:
    with served_producer(PRODUCER_API_KEY=KEY) as served:
        yield served


def _head(path: str, key: str | None, extra: str = "", method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: producer", "Content-Type: application/json"]
    if key is not None:
        lines.append(f"X-Api-Key: {key}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def _stream_chunks(sock: socket.socket, total: int, sent: list[int]) -> None:
    """Send ``total`` bytes of a chunked body in 1 MiB chunks until the server stops taking
    them; ``sent`` holds what the socket accepted."""
    payload = b"%x\r\n" % MiB + b" " * MiB + b"\r\n"  # JSON whitespace, for all it matters
    try:
        while sent[0] < total:
            sock.sendall(payload)
            sent[0] += MiB
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server closed the connection: what we had not sent it never read


def huge_chunked(served: Served, key: str) -> tuple[int, dict[str, Any]]:
    """A chunked 300 MiB body to ``POST /``: the status, with the server's peak RSS growth
    and what the client got into the socket before the answer."""
    served.reset_peak()
    before = served.status("VmRSS")
    sent = [0]
    with served.connect(timeout=60) as sock:
        sock.sendall(_head("/", key, "Transfer-Encoding: chunked\r\n"))
        sender = threading.Thread(target=_stream_chunks, args=(sock, HUGE, sent), daemon=True)
        started = time.monotonic()
        sender.start()
        status, _, body = read_response(sock, timeout=120)
        answered = time.monotonic() - started
        with contextlib.suppress(OSError):  # the server may have closed it already
            sock.shutdown(socket.SHUT_RDWR)
        sender.join(timeout=60)
    peak = served.status("VmHWM") - before
    numbers: dict[str, object] = {
        "status": status,
        "peak_rss_growth_mib": round(peak / MiB, 1),
        "client_sent_mib_before_answer_or_close": sent[0] // MiB,
        "answered_after_s": round(answered, 2),
        "error": json.loads(body).get("error"),
    }
    sys.stderr.write(f"huge chunked body, {'right' if key == KEY else 'wrong'} key: {numbers}\n")
    return status, numbers


def test_a_wrong_key_is_answered_401_before_any_body_byte(keyed: Served) -> None:
    # GIVEN a request with a wrong key that announces a body it has not sent yet
    with keyed.connect() as sock:
        sock.sendall(_head("/", "wrong", "Transfer-Encoding: chunked\r\n"))
        # WHEN nothing more is sent, THEN the answer is 401 at once: the body is never needed
        status, headers, body = read_response(sock, timeout=5)
    assert status == 401 and json.loads(body)["error"] == "unauthorized"
    assert headers.get("connection") == "close"  # and the connection is not kept to drain it


def test_a_wrong_key_with_a_300_mib_chunked_body_costs_headers_only(keyed: Served) -> None:
    status, numbers = huge_chunked(keyed, "wrong")
    assert status == 401
    # the issue measured +600 MiB for this request: now what a request costs without its body
    assert numbers["peak_rss_growth_mib"] < 16


def test_the_right_key_with_a_300_mib_chunked_body_stops_at_the_limit(keyed: Served) -> None:
    status, numbers = huge_chunked(keyed, KEY)
    assert status == 413 and numbers["error"] == "body_too_large"
    assert numbers["peak_rss_growth_mib"] < 64


# --- in process: every route, both ways in --------------------------------------------------


def _app_client(**settings: object) -> TestClient:
    conf = ProducerSettings(stream_name="s", max_buffered_time_ms=5, **settings)
    return TestClient(create_app(conf, client=FakeKinesis(even_shards(2))))


OPEN = ["/health", "/ready"]
GATED = [
    ("GET", "/metrics"), ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/redoc"),
    ("GET", "/nowhere"), ("POST", "/"), ("POST", "/batch"), ("PUT", "/"), ("POST", "/health"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path"), GATED)
def test_every_route_but_the_health_checks_needs_a_key(method: str, path: str) -> None:
    with _app_client(api_keys="new-key,old-key") as client:
        # WHEN asked without a key, or with a wrong one
        for headers in ({}, {"X-Api-Key": "wrong"}, {"X-Api-Key": "new-key,old-key"}):
            response = client.request(method, path, headers=headers, json={"data": 1})
            # THEN 401 in the documented shape, whatever the route would have said
            assert response.status_code == 401, (headers, response.text)
            assert response.json() == {
                "error": "unauthorized",
                "detail": "missing or wrong X-Api-Key header",
            }
            assert response.headers["www-authenticate"] == "ApiKey"
        # AND with either key (a rotation) the route answers as it would without a key set
        for key in ("new-key", "old-key"):
            answer = client.request(method, path, headers={"X-Api-Key": key}, json={"data": 1})
            assert answer.status_code != 401


def test_the_health_checks_need_no_key() -> None:
    with _app_client(api_key="k") as client:
        for path in OPEN:
            assert client.get(path).status_code == 200


def test_metrics_only_by_their_own_name() -> None:
    with _app_client(api_key="k") as client:
        key = {"X-Api-Key": "k"}
        assert client.get("/metrics", headers=key).status_code == 200
        # an encoded spelling the load balancer's path rule would not match
        assert client.get("/%6Detrics", headers=key).status_code == 404
        assert client.get("/metric%73", headers=key).json()["error"] == "not_found"


def test_no_answer_carries_internal_exception_text(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "internal-detail-4711"
    with _app_client() as client:
        collector = client.app.state.collector  # type: ignore[attr-defined]  # our FastAPI app
        # GIVEN the collector failed with an exception of its own
        collector.broken = RuntimeError(secret)
        health = client.get("/health")
        # THEN /health says so, 503, and not what the exception said
        assert health.status_code == 503 and secret not in health.text
        assert health.json()["error"] == "collector_stopped"
        # AND a record refused because of it says nothing internal either
        refused = client.post("/", json={"data": 1})
        assert refused.status_code == 503 and secret not in refused.text
        # AND a bug in a route is a JSON 500 with no exception text
        collector.broken = None

        def broken() -> str:
            raise RuntimeError(secret)

        monkeypatch.setattr(collector.metrics, "prometheus", broken)
        failed = TestClient(client.app, raise_server_exceptions=False).get("/metrics")
        assert failed.status_code == 500 and secret not in failed.text
        assert failed.json()["error"] == "internal_error"


# --- slow and lying clients, against the real server ------------------------------------------


@pytest.fixture(scope="module")
def impatient() -> Iterator[Served]:
    with served_producer(
        PRODUCER_HEADER_TIMEOUT_SECONDS="1", PRODUCER_BODY_TIMEOUT_SECONDS="1"
    ) as served:
        yield served


@pytest.mark.parametrize("sent", [b"", b"POST / HTTP/1.1\r\nHost: p\r\nContent-Ty"])
def test_headers_that_do_not_arrive_in_time_get_408_and_the_connection_closes(
    impatient: Served, sent: bytes
) -> None:
    with impatient.connect() as sock:
        sock.sendall(sent)
        status, headers, body = read_response(sock, timeout=5)
        assert status == 408 and json.loads(body)["error"] == "request_timeout"
        assert headers["connection"] == "close"
        assert sock.recv(1) == b""  # closed


def test_a_body_that_does_not_arrive_in_time_gets_408_and_nothing_is_taken(
    impatient: Served,
) -> None:
    before = _received(impatient)
    with impatient.connect() as sock:
        sock.sendall(_head("/", None, "Content-Length: 100\r\n") + b'{"data": 1}')
        status, headers, body = read_response(sock, timeout=5)
    assert status == 408 and json.loads(body)["error"] == "request_timeout"
    assert headers["connection"] == "close"
    assert _received(impatient) == before


def test_a_truncated_body_is_not_taken_even_when_what_came_is_json(impatient: Served) -> None:
    before = _received(impatient)
    with impatient.connect() as sock:
        # a body that lies about its length: valid JSON, then the client stops writing
        sock.sendall(_head("/", None, "Content-Length: 100\r\n") + b'{"data": 1}')
        sock.shutdown(socket.SHUT_WR)
        time.sleep(0.5)
    assert _received(impatient) == before


def _received(served: Served) -> int:
    with served.connect() as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: p\r\n\r\n")
        _, _, body = read_response(sock, timeout=5)
    found = re.search(rb"^producer_user_records_received_total (\d+)", body, re.MULTILINE)
    assert found is not None
    return int(found.group(1))


def test_before_the_collector_runs_a_record_is_refused_unread() -> None:
    # GIVEN the app before its lifespan started (or after it ended)
    client = _app_client()
    # WHEN a record comes THEN 503 and Retry-After, and FastAPI never reads its body
    response = client.post("/", json={"data": 1})
    assert response.status_code == 503 and response.json()["error"] == "not_ready"
    assert response.headers["retry-after"] == "1"


def test_past_the_connection_limit_the_answer_is_json_503() -> None:
    with served_producer(PRODUCER_MAX_CONNECTIONS="2") as served, served.connect() as held:
        held.sendall(b"GET /health HTTP/1.1\r\nHost: p\r\n\r\n")
        assert read_response(held, timeout=5)[0] == 200  # kept alive: with the next, 2 of 2
        with served.connect() as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: p\r\n\r\n")
            status, headers, body = read_response(sock, timeout=5)
    assert status == 503 and headers["retry-after"] == "1"
    assert json.loads(body)["error"] == "overloaded"


# --- keep-alive: an idle connection is closed after its timeout, a busy one never -------------


@pytest.fixture(scope="module")
def brief() -> Iterator[Served]:
    with served_producer(PRODUCER_KEEP_ALIVE_SECONDS="1") as served:
        yield served


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (sending nothing more)."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(
    brief: Served,
) -> None:
    with brief.connect() as sock:
        sock.sendall(_head("/", None, "Content-Length: 11\r\n") + b'{"data": 1}')
        status, headers, _ = read_response(sock, timeout=5)
        assert status == 200 and "connection" not in headers  # kept alive
        assert not _closed_within(sock, 0.7)  # not before its second
        assert _closed_within(sock, 3)


def test_a_connection_busy_past_the_keep_alive_timeout_is_not_closed(brief: Served) -> None:
    """A request every 0.3 s for 2.4 s (answered at once: health checks): never idle for the
    1 s timeout, so never closed. The deadline runs from the last answer, not the first; a
    timer that fired a second after the first answer while idle would close it."""
    with brief.connect() as sock:
        for _ in range(8):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: producer\r\n\r\n")
            status, _, _ = read_response(sock, timeout=5)
            assert status == 200
            assert not _closed_within(sock, 0.3)
        assert _closed_within(sock, 3)
