"""The producer's HTTP/1.1 protocol for uvicorn: httptools, as uvicorn's own, plus

- a deadline for a request's headers: from the connection's first byte, or the first byte of
  the next request on a kept-alive connection (idle keep-alive has uvicorn's own timeout), to
  the end of the headers. A client that is too slow gets 408 and the connection is closed.
  (uvicorn bounds neither: a connection that sends a few header bytes and then nothing is
  held for ever.)
- the keep-alive timeout as one timer per idle stretch: uvicorn arms a timer after every
  response and cancels it on the next request's first read (a timer made and cancelled per
  request); here a response only notes the time, and the timer, when it fires, closes the
  connection if it has been idle for the timeout since, else waits for the rest of it. An
  idle connection is closed the same timeout after its last answer; a busy one never.
- the answers uvicorn gives on its own (400 for what is not HTTP, 503 past the concurrency
  limit) in the API's JSON shape instead of plain text.
- the direct path: a record request (``POST /``, ``POST /batch``) whose whole body came with
  its headers is taken here, when the parser has read it, and answered by writing the
  response once Kinesis has the records. No ASGI task, no ``receive``/``send`` messages, no
  middleware: under load on one core those cost more than taking the record (profiled with
  py-spy: uvicorn's ``send``, the task and the ASGI layers were most of a request's time). It
  serves only what ``ProducerApp.serve_direct`` takes (plainly valid, accepted now); every
  other request, and every body that comes in pieces, goes through the ASGI app as before,
  which answers it the same way (tests/unit/producer/api/test_direct.py).
"""

from __future__ import annotations

import json
import logging
from functools import partial
from typing import Any, cast

import orjson
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from common.errors import ErrorCode, error_body
from producer.api.fastpath import INTERNAL_ERROR, RECORD_PATHS, Held, ProducerApp
from producer.api.ingest import Pending
from producer.metrics import ProducerMetrics

log = logging.getLogger(__name__)

Answer = tuple[int, Any, dict[str, str] | None]


class _Heads:
    """Each status's response head up to its Content-Length (status line, the server's default
    headers, Content-Type), made once for each list of default headers: uvicorn replaces that
    list every second, when the Date changes (``uvicorn.server.Server.on_tick``)."""

    def __init__(self) -> None:
        self._defaults: list[tuple[bytes, bytes]] | None = None
        self._heads: dict[int, bytes] = {}

    def __call__(self, status: int, defaults: list[tuple[bytes, bytes]]) -> bytes:
        if defaults is not self._defaults:
            self._defaults, self._heads = defaults, {}
        head = self._heads.get(status)
        if head is None:
            lines = [STATUS_LINE[status], *(b"%s: %s\r\n" % pair for pair in defaults)]
            head = self._heads[status] = b"".join(lines) + b"content-type: application/json\r\n"
        return head


_HEADS = _Heads()


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


def producer_app(app: Any) -> ProducerApp | None:
    """The ``ProducerApp`` under uvicorn's wrappers (proxy headers, message logger), if any."""
    while app is not None and not isinstance(app, ProducerApp):
        app = getattr(app, "app", None)
    return app


class ProducerHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol with the header deadline, JSON errors and the direct path
    (see the module's docstring)."""

    def __init__(self, *args: Any, header_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self._header_timer: Any = None
        self._headers_since: float | None = None  # a request's first byte, its headers to come
        # the direct path: off with access logs (uvicorn writes those from ``send``)
        self._direct = None if self.access_log else producer_app(self.app)
        self._deferred: tuple[RequestResponseCycle, Any] | None = None
        self._idle_since: float | None = None  # the last answer's time; None while busy
        self._keep_alive_timer: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        deferred, self._deferred = self._deferred, None
        if deferred is not None:  # the body did not all come with the headers
            super()._start_asgi_task(*deferred)
        if self._headers_since is not None and self._header_timer is None:
            # a request whose headers did not all come at once: their deadline runs from its
            # first byte (armed only now: most requests come whole, and need no timer)
            deadline = self._headers_since + self.header_timeout
            self._header_timer = self.loop.call_at(deadline, self._too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._headers_since = self.loop.time()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        deferred, self._deferred = self._deferred, None
        if deferred is not None and not self._serve_direct(deferred[0]):
            super()._start_asgi_task(*deferred)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._idle_since = None
        if self._keep_alive_timer is not None:
            self._keep_alive_timer.cancel()
            self._keep_alive_timer = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        answer = error_body(ErrorCode.BAD_REQUEST, "the request is not valid HTTP/1.1")
        self.transport.write(_raw_json_response(b"400 Bad Request", answer))
        self.transport.close()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        """uvicorn calls this from ``on_headers_complete`` only (a pipelined request is
        started by ``on_response_complete``, replaced below): a record request waits there
        for its body, to be served directly once it is all in (``on_message_complete``)."""
        if (
            self._direct is not None
            and app is self.app
            and cycle.scope["method"] == "POST"
            and cycle.scope["path"] in RECORD_PATHS
        ):
            self._deferred = cycle, app
            return
        self._start_now(cycle, app)

    def _start_now(self, cycle: Any, app: Any) -> None:
        """Run the ASGI app for ``cycle`` (a new request, or a pipelined one)."""
        if app is service_unavailable:
            app = overloaded  # Starlette-typed, same calls
        super()._start_asgi_task(cycle, app)

    # --- keep-alive ---------------------------------------------------------------------------
    def _unset_keepalive_if_required(self) -> None:
        """uvicorn calls this on every read (and when a response completes) to cancel its
        keep-alive timer: here the connection is only marked busy."""
        self._idle_since = None

    def on_response_complete(self) -> None:
        """uvicorn's (0.54: count the request, resume reading, start a pipelined request),
        but an idle connection notes the time instead of arming a timer per response."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            self._idle_since = None
            cycle, app = self.pipeline.pop()
            self._start_now(cycle, app)
            return
        self._idle_since = now = self.loop.time()
        if self._keep_alive_timer is None:
            self._keep_alive_timer = self.loop.call_at(
                now + self.timeout_keep_alive, self._keep_alive_due
            )

    def _keep_alive_due(self) -> None:
        self._keep_alive_timer = None
        since = self._idle_since
        if since is None or self.transport.is_closing():
            return  # busy: the response that ends it notes the time and arms the timer again
        due = since + self.timeout_keep_alive
        if self.loop.time() < due:  # answered again since the timer was armed
            self._keep_alive_timer = self.loop.call_at(due, self._keep_alive_due)
        else:
            self.timeout_keep_alive_handler()

    # --- the direct path --------------------------------------------------------------------
    def _serve_direct(self, cycle: RequestResponseCycle) -> bool:
        """Take the request's records here; False when the ASGI app is to serve it."""
        assert self._direct is not None
        # the metrics of the collector that takes the records: the lifespan lets go of the
        # ingest (app.ingest = None) before that collector's last flush answers them
        ingest = self._direct.ingest
        if ingest is None:
            return False
        metrics = ingest.collector.metrics
        try:
            served = self._direct.serve_direct(cast(Scope, cycle.scope), bytes(cycle.body))
        except Exception:  # a bug: the ASGI path answers (and logs) it
            log.exception("the direct path failed")
            return False
        if served is None:
            return False
        cycle.body = bytearray()
        taken, held = served
        if isinstance(taken, Pending):
            taken.ticket.when_done(partial(self._settled, cycle, taken, held, metrics))
        else:
            self._answer(cycle, (*taken, None), held, metrics)
        return True

    def _settled(
        self, cycle: RequestResponseCycle, pending: Pending, held: Held, metrics: ProducerMetrics
    ) -> None:
        try:
            answer = pending.result()
        except Exception:  # a bug, not the request's fault: answer rather than hang up
            log.exception("the direct path failed")
            answer = 500, INTERNAL_ERROR, None
        self._answer(cycle, answer, held, metrics)

    def _answer(
        self, cycle: RequestResponseCycle, answer: Answer, held: Held, metrics: ProducerMetrics
    ) -> None:
        """Write the response as uvicorn's ``send`` would for the same ASGI messages, then
        go on with the connection (keep-alive, a pipelined request) as it would."""
        held.release()
        try:
            status, content, extra = answer
            metrics.response(status)
            if cycle.disconnected:
                return
            body = orjson.dumps(content)
            head = b"%scontent-length: %d\r\n" % (_HEADS(status, cycle.default_headers), len(body))
            if extra:
                for name, value in extra.items():
                    head += b"%s: %s\r\n" % (name.lower().encode(), value.encode())
                    if name.lower() == "connection" and value.lower() == "close":
                        cycle.keep_alive = False
            if not cycle.keep_alive:
                head += b"connection: close\r\n"
            cycle.response_started = True
            self.transport.write(b"%s\r\n%s" % (head, body))
            cycle.response_complete = True
            cycle.message_event.set()
            if not cycle.keep_alive:
                self.transport.close()
            cycle.on_response()
        except Exception:  # never into the collector that called us: drop the connection
            log.exception("the direct path could not answer")
            self.transport.close()

    # --- the header deadline ----------------------------------------------------------------
    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        self._headers_since = None
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
