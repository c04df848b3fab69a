"""One memory bound for everything the producer holds for waiting requests.

Request bodies (while they are read and while a request still needs them), the objects a
body is parsed into (while they live) and the records awaiting Kinesis are all charged, in
bytes, to one ``MemoryBudget`` (``PRODUCER_MAX_BUFFERED_BYTES``). What does not fit is
refused at once (503 with Retry-After) instead of being held: the KPL has no such bound and
grows until the process is killed (amazon-kinesis-producer issues 21, 122, 485), and a killed
producer turns records Kinesis already has into duplicates when clients send them again.

The charges are upper bounds, checked against tracemalloc in ``tests/unit/producer/test_memory.py``:
``parse_cost`` for parsing a JSON body (orjson or Python's parser), ``exact_parse_cost`` with
every number exact (the FastAPI route's parser, ``common.storable.loads``), ``record_cost`` for a
record from the moment it is taken until it is answered.
"""

from __future__ import annotations

from dataclasses import dataclass

# What parsing one JSON token may cost at most (CPython 3.11-3.13, 64-bit), with orjson's
# intermediate document and list over-allocation: an object (dict, GC header, its slot in
# the parent), an array, a value after a comma (a slot plus a number object), a string's
# header (per quote), a member (the dict grows from empty to keyed).
_OBJECT, _ARRAY, _COMMA, _QUOTE, _COLON = 80, 72, 56, 24, 120
# The text itself: an ASCII body once more as str (Python's parser decodes first), once as
# string contents and once as the fast path's digit scan (``fastpath.parse``); a non-ASCII
# one may widen to 4 bytes a character, twice.
_ASCII_FACTOR, _WIDE_FACTOR = 3, 11

# A record from take to answer, beside its data and key (measured with tracemalloc over
# POST / and POST /batch, see tests): the UserRecord, its id and answer dict, its slot in the
# aggregate's parts and the request's lists. Its data is held twice once aggregated.
RECORD_OVERHEAD = 640
# A record request from its first byte to its answer, beside its body and records: the ASGI
# scope and task, the answer (measured with tracemalloc in-process: ~4 KB).
REQUEST_OVERHEAD = 4096
# What an open connection may hold outside the bound (uvicorn's protocol and parser, the
# transport, up to its 64 KiB read high-water mark unread): uvicorn's concurrency limit is
# the bound over this, so connections cannot add more than the bound again.
CONNECTION_COST = 16 * 1024


def parse_cost(body: bytes) -> int:
    """An upper bound on the bytes parsing ``body`` as JSON takes at its peak."""
    count = body.count
    tokens = (
        _OBJECT * count(b"{")
        + _ARRAY * count(b"[")
        + _COMMA * count(b",")
        + _QUOTE * count(b'"')
        + _COLON * count(b":")
    )
    return tokens + len(body) * (_ASCII_FACTOR if body.isascii() else _WIDE_FACTOR)


# A number read exactly (``common.storable.loads``, the FastAPI route's parser) is a Decimal:
# 104 bytes against a float's 24 (sys.getsizeof, CPython 3.11).
_DECIMAL_EXTRA = 80


def exact_parse_cost(body: bytes) -> int:
    """An upper bound on the bytes parsing ``body`` with every number exact takes at its
    peak: ``parse_cost`` with each possible number a Decimal (a number follows a ``[``, a
    ``,`` or a ``:``, or is the whole body)."""
    count = body.count
    numbers = count(b"[") + count(b",") + count(b":") + 1
    return parse_cost(body) + _DECIMAL_EXTRA * numbers


def record_cost(data_bytes: int, key_bytes: int) -> int:
    """What one taken record holds until it is answered."""
    return 2 * data_bytes + key_bytes + RECORD_OVERHEAD


@dataclass(slots=True)
class MemoryBudget:
    """Bytes held for waiting requests, against ``limit``. Single-threaded (the event loop).

    Contract: ``reserve`` takes ``amount`` and returns True only if the total stays within
    ``limit``; every successful reserve is matched by one ``release`` of the same amount.
    """

    limit: int
    used: int = 0

    def reserve(self, amount: int) -> bool:
        used = self.used + amount
        if used > self.limit:
            return False
        self.used = used
        return True

    def release(self, amount: int) -> None:
        self.used -= amount
        assert self.used >= 0, self.used
