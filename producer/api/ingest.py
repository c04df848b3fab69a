"""Taking records and answering for them: what ``POST /`` and ``POST /batch`` do, whichever way
the request came in (the ASGI fast path, ``fastpath.py``, or the FastAPI routes, ``routes.py``).

Every record passes the storability contract (``common.storable``) before it is taken: what
DynamoDB could not store as an item is refused here (413 for its size, 422 otherwise, naming
the field), so a record the producer acknowledges is one the consumer can store.

Answers are plain dicts shaped like the API's models (``models.py``): validating a response
costs more than taking the record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from common import envelope
from common.errors import ErrorCode, error_body
from common.kinesis import RECORD_MAX_BYTES
from common.storable import NotStorable, check_record
from producer.api.models import ID_PATTERN, RecordIn
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
STATUS = {  # a /batch record's error -> the status POST / answers it with
    ErrorCode.INVALID_RECORD: 422,
    ErrorCode.RECORD_TOO_LARGE: 413,
    ErrorCode.OVERLOADED: 503,
    ErrorCode.NOT_ACCEPTED: 503,
}
PARTITION_KEY_MAX = 256
_ID = re.compile(ID_PATTERN)

Fields = tuple[str | None, str | None, Any]  # (id, partition key, data) of a well-formed record


def problems(errors: Any) -> list[dict[str, str]]:
    """Pydantic errors as ``{"field": "body.data", "problem": "Field required"}`` (a JSON
    decode error says what the parser found)."""
    found = []
    for err in errors:
        problem = err["msg"]
        if err.get("type") == "json_invalid":
            problem += f": {err['ctx']['error']}"
        found.append(
            {"field": ".".join(str(p) for p in err["loc"]) or "record", "problem": problem}
        )
    return found


def plain_record(obj: Any) -> Fields | None:
    """``(id, partition_key, data)`` of an object that is plainly a well-formed ``RecordIn``;
    None when it is not, or not plainly (then ``RecordIn`` decides and names the problem).

    Contract: for a value read by ``fastpath.parse``, never accepts what ``RecordIn`` rejects
    and never differs from what it reads (a test checks this over a corpus).
    """
    if type(obj) is not dict or "data" not in obj:
        return None
    if len(obj) == 1:
        return None, None, obj["data"]
    record_id = obj.get("id")
    key = obj.get("partition_key")
    if len(obj) != 1 + ("id" in obj) + ("partition_key" in obj):
        return None  # an unknown field
    if record_id is not None and (type(record_id) is not str or not _ID.fullmatch(record_id)):
        return None
    if key is not None and (type(key) is not str or not 0 < len(key) <= PARTITION_KEY_MAX):
        return None
    return record_id, key, obj["data"]


def invalid(exc: NotStorable, prefix: str = "") -> dict[str, Any]:
    """The failure answer for a record the contract refused: 413 for its size, else 422."""
    error = ErrorCode.RECORD_TOO_LARGE if exc.too_large else ErrorCode.INVALID_RECORD
    return error_body(error, [{"field": prefix + exc.field, "problem": exc.problem}])


@dataclass(frozen=True, slots=True)
class Ingest:
    """The producer's ingest operations over one collector."""

    collector: KinesisCollector
    ids: IdGenerator
    max_batch_records: int

    def take(self, fields: Fields, ticket: Ticket, prefix: str = "") -> tuple[str | None, Any]:
        """Check the record against the storability contract, give it an id (the client's,
        else a new one) and hand it to the collector: ``(id, UserRecord)``, or ``(id, failure
        answer)`` when it cannot be taken (``prefix`` goes before the field it names)."""
        client_id, partition_key, data = fields
        record_id = client_id or self.ids()
        key = partition_key or record_id
        try:
            check_record(record_id, key, data)
        except NotStorable as exc:
            answer = invalid(exc, prefix)
            if client_id is not None:
                answer["id"] = client_id
            return client_id, answer
        payload = envelope.dump(record_id, data, client_id is not None)
        if len(payload) + len(key.encode()) > RECORD_MAX_BYTES:  # JSON escapes
            problem = "the record exceeds the 1 MiB Kinesis record limit once written as JSON"
            detail = [{"field": prefix + "data", "problem": problem}]
            return record_id, error_body(ErrorCode.RECORD_TOO_LARGE, detail, id=record_id)
        try:
            return record_id, self.collector.take(key, payload, ticket)
        except Overloaded as exc:
            return record_id, error_body(ErrorCode.OVERLOADED, str(exc), id=record_id)
        except RecordNotAccepted as exc:
            return record_id, error_body(ErrorCode.NOT_ACCEPTED, str(exc), id=record_id)

    def take_one(self, fields: Fields) -> Pending:
        """``POST /``, first half: the record checked and taken (or refused); nothing
        awaited."""
        ticket = Ticket()
        return Pending(ticket, [self.take(fields, ticket, prefix="body.")], single=True)

    def take_many(self, raws: list[Any], exact: bool = True) -> Pending | tuple[int, Any]:
        """``POST /batch``, first half: each record validated and taken (or refused) on its
        own, in request order; an answer at once when the batch is over the limit.

        Every record is validated before any is taken: a bad record (or a bug) never leaves
        the request half sent. ``exact``: the records were read by orjson
        (``fastpath.parse``), so a plain record needs no pydantic model; else each goes
        through ``RecordIn``.
        """
        limit = self.max_batch_records
        if len(raws) > limit:
            detail = f"at most {limit} records a batch"
            return 413, error_body(ErrorCode.BATCH_TOO_LARGE, detail)
        checked: list[Fields | dict[str, Any]] = []
        for raw in raws:
            fields = plain_record(raw) if exact else None
            if fields is None:
                try:
                    record = RecordIn.model_validate(raw)
                except ValidationError as exc:
                    checked.append(error_body(ErrorCode.INVALID_RECORD, problems(exc.errors())))
                    continue
                fields = record.id, record.partition_key, record.data
            checked.append(fields)
        ticket = Ticket()
        taken = [self.take(f, ticket) if type(f) is tuple else (None, f) for f in checked]
        return Pending(ticket, taken, single=False)

    async def one(self, fields: Fields) -> tuple[int, dict[str, Any], dict[str, str] | None]:
        """``POST /``: status, answer and extra headers, once Kinesis has the record."""
        return await self.take_one(fields).answer()

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
    taken: list[tuple[str | None, Any]]
    single: bool

    async def answer(self) -> tuple[int, Any, dict[str, str] | None]:
        await self.ticket.wait()
        return self.result()

    def result(self) -> tuple[int, Any, dict[str, str] | None]:
        """Status, answer and extra headers, once the ticket is done."""
        if self.single:
            result = settled(*self.taken[0])
            if "error" not in result:
                return 200, result, None
            status = STATUS[result["error"]]
            return status, result, RETRY_AFTER if status == 503 else None
        results = [settled(record_id, taken) for record_id, taken in self.taken]
        failed = sum("error" in r for r in results)
        return 200, {"failed_record_count": failed, "records": results}, None


def settled(record_id: str | None, taken: UserRecord | dict[str, Any]) -> dict[str, Any]:
    """A record's result, shaped like ``RecordAccepted`` or ``RecordFailed``: a taken record's
    outcome, or the failure answer of one that was not taken, as it is."""
    if not isinstance(taken, UserRecord):
        return taken
    outcome = taken.outcome
    if isinstance(outcome, Accepted):
        return {
            "id": record_id,
            "shard_id": outcome.shard_id,
            "sequence_number": outcome.sequence_number,
        }
    return error_body(ErrorCode.NOT_ACCEPTED, str(outcome), id=record_id)
