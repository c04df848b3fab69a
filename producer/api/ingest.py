"""Taking records and answering for them: what ``POST /`` and ``POST /batch`` do, whichever way
the request came in (the ASGI fast path, ``fastpath.py``, or the FastAPI routes, ``routes.py``).

Answers are plain dicts shaped like the API's models (``models.py``): validating a response
costs more than taking the record.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from producer.aggregation import KINESIS_MAX_RECORD_BYTES
from producer.api.models import RecordIn
from producer.collector import (
    Accepted,
    KinesisCollector,
    Overloaded,
    RecordNotAccepted,
    Ticket,
    UserRecord,
)
from producer.ids import IdGenerator

RETRY_AFTER = {"Retry-After": "1"}
STATUS = {"record_too_large": 413, "overloaded": 503, "not_accepted": 503}
PARTITION_KEY_MAX = 256
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def envelope(record_id: str, data: Any) -> bytes:
    """The bytes put to Kinesis for one user record; the consumer reads the same shape.

    ``data`` holds no NaN or Infinity (``RecordIn`` refuses them, and orjson, which parses the
    fast path's requests, does not read them).
    """
    body = {"id": record_id, "ts": int(time.time() * 1000), "data": data}
    try:
        # orjson's bytes keep the buffer it wrote into: at least 1 KiB, about 8x a larger
        # output (tracemalloc, orjson 3.11). A record waits for Kinesis holding it, so it is
        # copied to its size (a memcpy; the buffer goes at once).
        return bytes(memoryview(orjson.dumps(body)))
    except orjson.JSONEncodeError:  # an integer beyond 64 bits: the standard encoder writes it
        return _ENCODER.encode(body).encode()


def problems(errors: Any) -> list[dict[str, str]]:
    """Pydantic errors as ``{"field": "body.data", "problem": "Field required"}``."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "record", "problem": err["msg"]}
        for err in errors
    ]


def plain_record(obj: Any) -> tuple[str | None, Any] | None:
    """``(partition_key, data)`` of an object that is plainly a valid ``RecordIn``; None when
    it is not, or not plainly (then ``RecordIn`` decides and names the problem).

    Contract: for a value read by ``fastpath.parse``, never accepts what ``RecordIn`` rejects
    and never differs from what it reads (a test checks this over a corpus).
    """
    if type(obj) is not dict or "data" not in obj:
        return None
    size = len(obj)
    if size == 1:
        return None, obj["data"]
    if size != 2 or "partition_key" not in obj:
        return None
    key = obj["partition_key"]
    if key is None:
        return None, obj["data"]
    if type(key) is not str or not 0 < len(key) <= PARTITION_KEY_MAX:
        return None
    return key, obj["data"]


@dataclass(frozen=True, slots=True)
class Ingest:
    """The producer's ingest operations over one collector."""

    collector: KinesisCollector
    ids: IdGenerator
    max_batch_records: int

    def take(self, partition_key: str | None, data: Any, ticket: Ticket) -> tuple[str, Any]:
        """Give the record an id and hand it to the collector: ``(id, UserRecord)``, or
        ``(id, failure answer)`` when it cannot be taken."""
        record_id = self.ids()
        key = partition_key or record_id
        payload = envelope(record_id, data)
        if len(payload) + len(key.encode()) > KINESIS_MAX_RECORD_BYTES:
            detail = "the record exceeds the 1 MiB Kinesis record limit"
            return record_id, {"error": "record_too_large", "detail": detail, "id": record_id}
        try:
            return record_id, self.collector.take(key, payload, ticket)
        except Overloaded as exc:
            return record_id, {"error": "overloaded", "detail": str(exc), "id": record_id}
        except RecordNotAccepted as exc:
            return record_id, {"error": "not_accepted", "detail": str(exc), "id": record_id}

    def take_one(self, partition_key: str | None, data: Any) -> Pending:
        """``POST /``, first half: the record taken (or refused); nothing awaited."""
        ticket = Ticket()
        return Pending(ticket, [self.take(partition_key, data, ticket)], single=True)

    def take_many(self, raws: list[Any], exact: bool = True) -> Pending | tuple[int, Any]:
        """``POST /batch``, first half: each record validated and taken (or refused) on its
        own, in request order; an answer at once when the batch is over the limit.

        ``exact``: the records were read by orjson (``fastpath.parse``), so they hold nothing
        JSON cannot carry, and a plain record needs no further check; else (Python's parser)
        each goes through ``RecordIn``.
        """
        limit = self.max_batch_records
        if len(raws) > limit:
            detail = f"at most {limit} records a batch"
            return 413, {"error": "batch_too_large", "detail": detail}
        ticket = Ticket()
        taken: list[tuple[str, Any]] = []
        for raw in raws:
            fields = plain_record(raw) if exact else None
            if fields is None:
                try:
                    record = RecordIn.model_validate(raw)
                except ValidationError as exc:
                    invalid = {"error": "invalid_record", "detail": problems(exc.errors())}
                    taken.append(("", invalid))
                    continue
                fields = record.partition_key, record.data
            taken.append(self.take(*fields, ticket))
        return Pending(ticket, taken, single=False)

    async def one(
        self, partition_key: str | None, data: Any
    ) -> tuple[int, dict[str, Any], dict[str, str] | None]:
        """``POST /``: status, answer and extra headers, once Kinesis has the record."""
        return await self.take_one(partition_key, data).answer()

    async def many(self, raws: list[Any], exact: bool = True) -> tuple[int, dict[str, Any]]:
        """``POST /batch``: each record validated and answered on its own, in request order."""
        pending = self.take_many(raws, exact)
        if isinstance(pending, tuple):
            return pending
        status, answer, _ = await pending.answer()
        return status, answer


@dataclass(slots=True)
class Pending:
    """The records one request had taken; ``answer`` waits for Kinesis and shapes the answer.

    It holds only the records and their ids: the body and what it was parsed into can go
    before the wait (``fastpath.py`` lets them go, so they do not count against memory then).
    """

    ticket: Ticket
    taken: list[tuple[str, Any]]
    single: bool

    async def answer(self) -> tuple[int, Any, dict[str, str] | None]:
        await self.ticket.wait()
        results = [
            settled(record_id, answer) if isinstance(answer, UserRecord) else answer
            for record_id, answer in self.taken
        ]
        if self.single:
            result = results[0]
            if "error" not in result:
                return 200, result, None
            status = STATUS[result["error"]]
            return status, result, RETRY_AFTER if status == 503 else None
        failed = sum("error" in r for r in results)
        return 200, {"failed_record_count": failed, "records": results}, None


def settled(record_id: str, record: UserRecord) -> dict[str, Any]:
    """A taken record's result, shaped like ``RecordAccepted`` or ``RecordFailed``."""
    outcome = record.outcome
    if isinstance(outcome, Accepted):
        return {"id": record_id, "shard_id": outcome.shard_id,
                "sequence_number": outcome.sequence_number}  # fmt: skip
    return {"error": "not_accepted", "detail": str(outcome), "id": record_id}
