"""The record envelope: the bytes the producer puts to Kinesis for one user record, and what
the consumer reads back from them. Both ends use this module, so the two cannot drift apart.

Version 1 (the only one so far) is compact UTF-8 JSON, keys in this order::

    {"id": "<record id>", "ts": <epoch ms the producer took it>, "data": <the client's value>}

with ``"client_id": true`` after ``data`` when the client chose the id (its idempotency key;
the consumer then keeps the copy with the latest stream position). Version 1 carries no
version field: a later shape must add one (``"v": 2``), and a reader takes its absence to
mean version 1. Readers ignore keys they do not know.

``data`` is written exactly as the storability contract reads it (``common.storable``):
numbers digit for digit, so what DynamoDB stores is the number the client sent.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from common.storable import MAX_KEY_BYTES, dumps_exact, loads

VERSION = 1
ID, TS, DATA, CLIENT_ID = "id", "ts", "data", "client_id"


def dump(record_id: str, data: Any, client_id: bool, now_ms: int | None = None) -> bytes:
    """The envelope of one user record; ``ts`` is ``now_ms`` (default: the wall clock).

    ``data`` passed the storability contract: numbers are exact (orjson floats of at most 15
    significant digits, ints, or ``Decimal`` written digit for digit) and nesting is shallow.
    """
    ts = int(time.time() * 1000) if now_ms is None else now_ms
    body = {ID: record_id, TS: ts, DATA: data}
    if client_id:
        body[CLIENT_ID] = True
    # orjson's bytes keep the buffer it wrote into: at least 1 KiB, about 8x a larger output
    # (tracemalloc, orjson 3.11). A record waits for Kinesis holding it, so it is copied to its
    # size (a memcpy; the buffer goes at once).
    return bytes(memoryview(dumps_exact(body)))


class NotAnEnvelope(ValueError):
    """Bytes that are not a record envelope; the message says what is wrong with them."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed envelope. ``id`` is a non-empty string of valid Unicode, at most
    ``MAX_KEY_BYTES`` of UTF-8 (it keys the records table); ``data`` is the
    client's value (numbers exact: ``Decimal`` for fractions and long integers); ``ts`` is the
    integer ``ts`` (None when missing or not an integer: another writer's bytes);
    ``client_id`` is whether the id is the client's."""

    id: str
    data: Any
    ts: int | None
    client_id: bool


def load(raw: bytes) -> Envelope:
    """Read an envelope; raises ``NotAnEnvelope`` for bytes that are not one (not JSON, not an
    object, no usable ``id``, no ``data``)."""
    try:
        body = loads(raw)
    except json.JSONDecodeError as exc:
        raise NotAnEnvelope(f"not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise NotAnEnvelope("not a JSON object")
    record_id = body.get(ID)
    if not isinstance(record_id, str) or not record_id:
        raise NotAnEnvelope("no string 'id'")
    try:
        id_bytes = len(record_id.encode())
    except UnicodeEncodeError as exc:
        raise NotAnEnvelope("'id' is not valid Unicode (a lone UTF-16 surrogate)") from exc
    if id_bytes > MAX_KEY_BYTES:
        raise NotAnEnvelope(f"'id' longer than {MAX_KEY_BYTES} bytes")
    if DATA not in body:
        raise NotAnEnvelope("no 'data'")
    ts = body.get(TS)
    return Envelope(
        record_id, body[DATA], ts if type(ts) is int else None, body.get(CLIENT_ID) is True
    )
