"""What the producer answers from a request's line and headers alone, before any body byte is
read, on every route and both ways in (the fast path and FastAPI): so an unauthenticated or
oversize request costs its headers and nothing more.

In order: the API key (401 unless the path is a health check), an internal path reached by
another spelling (404), a declared body over the limit (413), a body that is not JSON (415).
A refusal of a request that still has a body coming closes the connection, so the server does
not go on reading (or draining) it.

Slow clients: ``ProducerHttp`` (the uvicorn protocol) closes a connection whose request
headers are not complete in time; the body has its own deadline in ``fastpath.read_body``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from common.errors import ErrorCode, error_body
from producer.api.deps import api_key_matches

# liveness and readiness (GET): the load balancer's and the container's health checks send
# no key
OPEN_PATHS = frozenset({"/health", "/ready"})
# served only when asked for by exactly this path (the load balancer answers it 404 itself,
# infra/components/ingest.py; an encoded spelling it would forward is refused here too)
INTERNAL_PATHS = frozenset({"/metrics"})
UNAUTHORIZED = error_body(ErrorCode.UNAUTHORIZED, "missing or wrong X-Api-Key header")

Refusal = tuple[int, dict[str, str], dict[str, str] | None]


def too_large(limit: int) -> tuple[int, dict[str, str]]:
    return 413, error_body(ErrorCode.BODY_TOO_LARGE, f"the body exceeds {limit} bytes")


def body_problem(headers: Headers, limit: int | None) -> tuple[int, dict[str, str]] | None:
    """413 for a body declared over ``limit`` bytes, 415 for one that is not JSON."""
    length = headers.get("content-length", "")
    if limit and length.isdigit() and int(length) > limit:
        return too_large(limit)
    media = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        detail = f"send JSON with Content-Type: application/json (got {media!r})"
        return 415, error_body(ErrorCode.UNSUPPORTED_MEDIA_TYPE, detail)
    return None


def has_body(headers: Headers) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0") not in ("", "0")


def refuse(scope: Scope, keys: tuple[bytes, ...], max_body_bytes: int) -> Refusal | None:
    """The answer this request gets from its headers alone, or None: read on. (Only POSTs
    have their bodies read, and only on the record routes.)"""
    headers = Headers(scope=scope)
    path = scope["path"]
    refusal: Refusal | None = None
    open_path = path in OPEN_PATHS and scope["method"] in ("GET", "HEAD")
    if keys and not open_path and not api_key_matches(keys, headers):
        refusal = 401, UNAUTHORIZED, {"WWW-Authenticate": "ApiKey"}
    elif path in INTERNAL_PATHS and scope.get("raw_path", path.encode()) != path.encode():
        refusal = 404, error_body(ErrorCode.NOT_FOUND, "Not Found"), None
    elif scope["method"] == "POST":
        problem = body_problem(headers, max_body_bytes)
        if problem is not None:
            refusal = (*problem, None)
    if refusal is not None and has_body(headers):
        status, answer, extra = refusal
        refusal = status, answer, {**(extra or {}), "Connection": "close"}
    return refusal


def _raw_json_response(status_line: bytes, answer: dict[str, str]) -> bytes:
    body = json.dumps(answer).encode()
    return (
        b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status_line, len(body), body)
    )


async def overloaded(scope: Scope, receive: Receive, send: Send) -> None:
    """uvicorn's answer past ``limit_concurrency``, in the API's shape (its own is text)."""
    answer = error_body(ErrorCode.OVERLOADED, "too many connections: retry later")
    body = json.dumps(answer).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ProducerHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, with

    - a deadline for a request's headers: from the connection's first byte, or the first byte
      of the next request on a kept-alive connection (idle keep-alive has uvicorn's own
      timeout), to the end of the headers. A client that is too slow gets 408 and the
      connection is closed. (uvicorn bounds neither: a connection that sends a few header bytes
      and then nothing is held for ever.)
    - the answers uvicorn gives on its own (400 for what is not HTTP, 503 past the concurrency
      limit) in the API's JSON shape instead of plain text.
    """

    def __init__(self, *args: Any, header_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self._header_timer: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        answer = error_body(ErrorCode.BAD_REQUEST, "the request is not valid HTTP/1.1")
        self.transport.write(_raw_json_response(b"400 Bad Request", answer))
        self.transport.close()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        # a Starlette-typed ASGI app (its scope a mapping; uvicorn's a TypedDict): same calls
        to_run = overloaded if app is service_unavailable else app
        super()._start_asgi_task(cycle, to_run)  # type: ignore[arg-type]  # Starlette's types

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        answer = error_body(ErrorCode.REQUEST_TIMEOUT, "the request headers took too long")
        self.transport.write(_raw_json_response(b"408 Request Timeout", answer))
        self.transport.close()
