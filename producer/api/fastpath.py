"""The ASGI fast path: well-formed ``POST /`` and ``POST /batch`` requests are served before
FastAPI's middleware stack, router and dependency injection, which cost several times what
taking a record does (py-spy on ``make bench``: ``solve_dependencies``, ``Request`` and the
route's wrappers were most of a request's time).

The fast path only serves what is plainly valid. Everything else (a missing or wrong API key,
JSON that does not parse, a record that is not plainly a ``RecordIn``) is replayed, body and
all, into the FastAPI app, whose routes run the same operations (``ingest.py``) and whose
validation names what is wrong. So the OpenAPI document, the error answers and the fast path
cannot disagree about what a good request is.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from common.errors import ErrorCode, error_body
from producer.api.gate import refuse, too_large
from producer.api.ingest import RETRY_AFTER, Ingest, Pending, plain_record
from producer.memory import REQUEST_OVERHEAD, MemoryBudget, exact_parse_cost, parse_cost
from producer.metrics import ProducerMetrics

log = logging.getLogger(__name__)

JSON_HEADER = (b"content-type", b"application/json")
RECORD_PATHS = ("/", "/batch")
NOT_READY = error_body(ErrorCode.NOT_READY, "the producer is starting or stopping")
# a refusal while the body may still be coming (too large, too slow, cut short): the
# connection closes rather than have the server read or drain the rest
CLOSE = {"Connection": "close"}
REFUSED_HEADERS = {503: RETRY_AFTER, 400: CLOSE, 408: CLOSE, 413: CLOSE}


async def send_json(
    send: Send, status: int, answer: Any, headers: dict[str, str] | None = None
) -> None:
    """One JSON answer (compact UTF-8, like Starlette's ``JSONResponse``)."""
    body = orjson.dumps(answer)
    raw = [JSON_HEADER, (b"content-length", str(len(body)).encode())]
    if headers:
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


INTERNAL_ERROR = error_body(ErrorCode.INTERNAL_ERROR, "see the producer's log")


class Held:
    """What one request holds of the memory bound; ``release`` gives all of it back."""

    __slots__ = ("amount", "budget")

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.amount = 0

    def reserve(self, amount: int, total: int = 0) -> None:
        """Hold ``amount`` more bytes, or raise ``Refused``: 413 when the request's
        ``total`` with it could never fit, else 503."""
        if not self.budget.reserve(amount):
            raise too_costly(total + amount, self.budget)
        self.amount += amount

    def keep(self, amount: int) -> None:
        """Hold only ``amount`` bytes from now on."""
        self.budget.release(self.amount - amount)
        self.amount = amount

    def release(self) -> None:
        self.budget.release(self.amount)
        self.amount = 0


class Refused(Exception):
    """A request the producer will not read or parse: ``answer`` is its (status, body)."""

    def __init__(self, status: int, answer: dict[str, str]) -> None:
        super().__init__(answer["detail"])
        self.status, self.answer = status, answer


def overloaded(detail: str) -> Refused:
    return Refused(503, error_body(ErrorCode.OVERLOADED, detail))


async def read_body(
    receive: Receive, limit: int, budget: MemoryBudget | None = None, timeout: float = 30.0
) -> bytes:
    """The request body, charged to ``budget`` as it arrives: twice its size while it comes in
    chunks (they are joined at the end), then its size, which the caller releases.

    Raises ``Refused``: 413 once it passes ``limit`` bytes (a chunked upload has no
    Content-Length to check up front), 503 when the memory bound cannot hold it, 408 when it
    has not all come within ``timeout`` seconds (a slow client holds no memory for long), 400
    when the client went away before it ended (a truncated body is not taken, even when what
    came is valid JSON).
    """
    chunks: list[bytes] = []
    size = held = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    detail = "the client went away before the body ended"
                    raise Refused(400, error_body(ErrorCode.INCOMPLETE_BODY, detail))
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise Refused(*too_large(limit))
                if budget is not None and chunk:
                    if not budget.reserve(2 * len(chunk)):
                        used, bound = budget.used, budget.limit
                        raise overloaded(f"the producer holds {used} of {bound} bytes")
                    held += 2 * len(chunk)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if budget is not None:
            budget.release(held - len(body))
            held = len(body)
        return body
    except BaseException as exc:
        if budget is not None:
            budget.release(held)
        if isinstance(exc, TimeoutError):
            detail = f"the body did not arrive within {timeout:g} s"
            raise Refused(408, error_body(ErrorCode.REQUEST_TIMEOUT, detail)) from None
        raise


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over ``body`` again, then what the client sends next."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


# every digit and "." as "0", "e" and "E" as "e", "+" and "-" as "-", everything else as " ":
# then 16 digits in a row, or an exponent of three digits or more, is one substring search
# (ten times faster than a regular expression over a batch)
_NUMERIC = bytes(
    0x30 if 0x30 <= i <= 0x39 or i == 0x2E
    else 0x65 if i in (0x45, 0x65)
    else 0x2D if i in (0x2B, 0x2D)
    else 0x20
    for i in range(256)
)  # fmt: skip
_SIXTEEN = b"0" * 16


def parse(body: bytes) -> Any:
    """The JSON value of ``body`` read by orjson, or None when orjson cannot read it exactly.

    orjson refuses what is not JSON (and NaN, Infinity, numbers beyond a double's range), reads
    a number with a fraction or an exponent as a double, and an integer beyond 64 bits as a
    double too. A double holds every decimal of up to 15 significant digits exactly enough
    that its shortest form (what the storability contract reads, and what orjson writes into
    the envelope) is the same number again (DBL_DIG = 15); an integer of up to 15 digits is
    exact. A body with 16 digits or dots in a row anywhere (a number that may carry more, or a
    string that looks like one) is left to the exact parser (``common.storable.loads``), and so
    is one with an exponent of three digits: orjson reads 1e-400 as 0.0 without a word (and a
    subnormal with fewer digits than were sent), which the contract would then store as 0
    (found by tests/unit/producer/api/test_fuzz.py); DynamoDB's numbers stop at exponents -130
    and 125.
    """
    numeric = body.translate(_NUMERIC)
    if _SIXTEEN in numeric or b"e000" in numeric or b"e-000" in numeric:  # a long exponent
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


class ProducerApp(FastAPI):
    """The producer's FastAPI app, with the record endpoints' fast path in front.

    Every HTTP request passes the gate first (``gate.refuse``: the key and the declared body,
    from the headers alone). ``ingest`` is set by the lifespan once the collector runs; until
    then a record POST is answered 503. The record routes' bodies are read here, within the
    limit and the body deadline, and only then handed to FastAPI when the fast path does not
    serve them: no FastAPI route reads a body from the client itself.
    """

    ingest: Ingest | None = None
    api_key: tuple[bytes, ...] | None = None
    max_body_bytes: int = 6 * 1024 * 1024
    body_timeout: float = 30.0
    fast_path: bool = True  # False: every record request goes on to FastAPI (tests, fuzzing)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        records = scope["method"] == "POST" and scope["path"] in RECORD_PATHS
        ingest = self.ingest
        refusal = refuse(scope, self.api_key or (), self.max_body_bytes)
        if refusal is None and records and ingest is None:
            refusal = 503, NOT_READY, {**RETRY_AFTER, "Connection": "close"}
        if refusal is not None:
            if records and ingest is not None:
                ingest.collector.metrics.response(refusal[0])
            await send_json(send, *refusal)
            return
        if not records or ingest is None:
            await super().__call__(scope, receive, send)
            return
        metrics = ingest.collector.metrics
        held = Held(ingest.collector.budget)
        try:
            held.reserve(REQUEST_OVERHEAD)
            body = await read_body(receive, self.max_body_bytes, held.budget, self.body_timeout)
            held.amount += len(body)
            cost = parse_cost(body)
            pending = self.take_body(ingest, scope["path"], body, held, cost)
            if pending is None:  # FastAPI answers, holding the body and its parse until then
                # it reads every number as a Decimal
                held.reserve(exact_parse_cost(body) - cost, total=cost)
                scope = as_json(scope)
                await super().__call__(scope, replay(body, receive), counting(send, metrics))
                return
            del body  # the records are taken: the body and its parse are gone
            answer = await pending.answer() if isinstance(pending, Pending) else (*pending, None)
        except Refused as refused:
            if refused.status == 503:
                metrics.count("RequestsOverloaded")
            answer = refused.status, refused.answer, REFUSED_HEADERS.get(refused.status)
        except Exception:  # a bug, not the request's fault: answer rather than hang up
            log.exception("the ingest fast path failed")
            answer = 500, INTERNAL_ERROR, None
        finally:
            held.release()
        metrics.response(answer[0])
        await send_json(send, *answer)

    def take_body(
        self, ingest: Ingest, path: str, body: bytes, held: Held, cost: int
    ) -> Pending | tuple[int, Any] | None:
        """The records of a body already read (and held): parsed and taken when the request
        is plainly valid, else None (FastAPI answers it). ``cost`` is the body's
        ``parse_cost``, held while it is parsed; once the records are taken only
        ``REQUEST_OVERHEAD`` stays held until the answer. Raises ``Refused`` when the parse
        does not fit in the memory bound."""
        held.reserve(cost)
        pending = self._take(ingest, path, body) if self.fast_path else None
        if pending is not None:
            held.keep(REQUEST_OVERHEAD)
        return pending

    def serve_direct(
        self, scope: Scope, body: bytes
    ) -> tuple[Pending | tuple[int, Any], Held] | None:
        """A record request whose headers and whole body a server read itself
        (``producer.api.protocol``), taken with no ASGI call: the taken records (or the answer
        at once) and what they hold until the answer, which the caller releases. None when
        the request is anything but plainly valid and acceptable now: then the ASGI app
        serves it, from the start, as it serves every other request."""
        ingest = self.ingest
        if ingest is None or not self.fast_path or len(body) > self.max_body_bytes:
            return None
        if refuse(scope, self.api_key or (), self.max_body_bytes) is not None:
            return None
        held = Held(ingest.collector.budget)
        try:
            held.reserve(REQUEST_OVERHEAD + len(body))
            pending = self.take_body(ingest, scope["path"], body, held, parse_cost(body))
        except Refused:
            pending = None
        if pending is None:
            held.release()
            return None
        return pending, held

    @staticmethod
    def _take(ingest: Ingest, path: str, body: bytes) -> Pending | tuple[int, Any] | None:
        """Parse a plainly valid request and take its records (nothing awaited: the parsed
        objects live only until this returns); None for FastAPI to answer."""
        obj = parse(body)
        if obj is None:
            return None
        if path == "/":
            fields = plain_record(obj)
            return None if fields is None else ingest.take_one(fields)
        if type(obj) is not dict or len(obj) != 1 or type(obj.get("records")) is not list:
            return None
        if not obj["records"]:
            return None  # BatchIn's min_length names the problem
        return ingest.take_many(obj.pop("records"))


def too_costly(cost: int, budget: MemoryBudget) -> Refused:
    """503 when parsing the body does not fit in the memory bound now, 413 when it never
    could."""
    if cost > budget.limit:
        detail = (
            f"parsing this body would take about {cost >> 20} MiB, more than the producer's"
            f" memory bound ({budget.limit >> 20} MiB): send smaller bodies"
        )
        return Refused(413, error_body(ErrorCode.BODY_TOO_LARGE, detail))
    return overloaded(f"the producer holds {budget.used} of {budget.limit} bytes")


def as_json(scope: Scope) -> Scope:
    """``scope`` with ``Content-Type: application/json`` when it has none: the gate takes a
    body without one as JSON, and so must the FastAPI route (which would read it as bytes and
    answer 422 where the fast path answered 200; found by tests/unit/producer/api/test_fuzz.py)."""
    if any(name == b"content-type" for name, _ in scope["headers"]):
        return scope
    return {**scope, "headers": [*scope["headers"], (b"content-type", b"application/json")]}


def counting(send: Send, metrics: ProducerMetrics) -> Send:
    """``send``, counting the status of the response it starts."""

    async def counted(message: Message) -> None:
        if message["type"] == "http.response.start":
            metrics.response(message["status"])
        await send(message)

    return counted
