"""Auth and limits before the body (issue 15): against ``python -m producer`` itself (uvicorn,
httptools, uvloop) over raw sockets, so what the server reads and holds is what it would in
production."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator

import pytest

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


def huge_chunked(served: Served, key: str) -> tuple[int, dict[str, object]]:
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
    assert numbers["peak_rss_growth_mib"] < 16  # type: ignore[operator]


def test_the_right_key_with_a_300_mib_chunked_body_stops_at_the_limit(keyed: Served) -> None:
    status, numbers = huge_chunked(keyed, KEY)
    assert status == 413 and numbers["error"] == "body_too_large"
    assert numbers["peak_rss_growth_mib"] < 64  # type: ignore[operator]
