"""In-memory fakes of AWS services for unit and functional tests (no network)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from common.kinesis import (
    PARTITION_KEY_MAX_CHARS,
    PUT_RECORDS_MAX_BYTES,
    PUT_RECORDS_MAX_COUNT,
    RECORD_MAX_BYTES,
    Shard,
    even_shards,
    hash_key,
)
from producer.shards import ShardMap

__all__ = ["FakeKinesis", "StoredRecord", "client_error", "even_shards"]


def client_error(code: str, message: str, operation: str = "PutRecords") -> ClientError:
    """What boto3 raises for an error answer of the service."""
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@dataclass
class StoredRecord:
    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes


@dataclass
class FakeKinesis:
    """ListShards, PutRecords and PutRecord with Kinesis's routing: an entry lands on the open
    shard owning its ExplicitHashKey, else the MD5 of its PartitionKey. Sizes are counted as
    Kinesis counts them, in bytes, and a request over a limit fails whole
    (InvalidArgumentException). ListShards answers ``page_size`` shards a page (closed ones
    first), the next page by its ``NextToken`` alone, as Kinesis does.

    ``fail(entry) -> error code | None`` injects per-entry failures (throttling and the like);
    PutRecord raises them as the ``ClientError`` boto3 raises.
    Reshards the producer has not seen yet: ``split``, ``merge`` and ``update_shard_count``
    close shards and open children with new ids, as Kinesis does (closed shards are listed
    with an ``EndingSequenceNumber``); ``open_shards`` may also be swapped whole.
    Sequence numbers increase across the whole stream, so a parent's records come before its
    children's, as the KCL reads them.
    """

    open_shards: list[Shard]
    fail: Callable[[dict[str, Any]], str | None] = lambda _entry: None
    stored: list[StoredRecord] = field(default_factory=list)
    calls: int = 0
    closed: list[Shard] = field(default_factory=list)
    page_size: int = 1000  # ListShards' default MaxResults (API Reference, ListShards)
    _next_id: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._next_id = len(self.open_shards)

    # --- reshards -----------------------------------------------------------------------
    def _child_id(self) -> str:
        self._next_id += 1
        return f"shardId-{self._next_id:012d}"

    def _replace(self, gone: list[Shard], children: list[Shard]) -> None:
        with self._lock:
            self.closed.extend(gone)
            keep = [s for s in self.open_shards if s not in gone]
            self.open_shards = sorted(keep + children, key=lambda s: s.start)

    def split(self, shard_id: str) -> None:
        """SplitShard at the middle of the shard's range."""
        parent = next(s for s in self.open_shards if s.shard_id == shard_id)
        self._replace(
            [parent],
            [
                Shard(self._child_id(), parent.start, parent.midpoint - 1),
                Shard(self._child_id(), parent.midpoint, parent.end),
            ],
        )

    def merge(self, shard_id: str) -> None:
        """MergeShards of ``shard_id`` with its right-hand neighbour (adjacent ranges)."""
        shards = self.open_shards
        i = next(i for i, s in enumerate(shards) if s.shard_id == shard_id)
        left, right = shards[i], shards[(i + 1) % len(shards)]
        if left.end + 1 != right.start:  # the last shard merges with its left neighbour
            left, right = shards[i - 1], left
        self._replace([left, right], [Shard(self._child_id(), left.start, right.end)])

    def update_shard_count(self, target: int) -> None:
        """UpdateShardCount (uniform scaling): every open shard closed, ``target`` new ones."""
        first = self._next_id + 1
        self._next_id += target
        self._replace(list(self.open_shards), even_shards(target, first=first))

    def shard(self, shard_id: str) -> Shard:
        """An open or closed shard by id."""
        return next(s for s in [*self.open_shards, *self.closed] if s.shard_id == shard_id)

    # --- the API ------------------------------------------------------------------------
    def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        token = kwargs.get("NextToken")
        if token is not None and "StreamName" in kwargs:
            raise client_error(
                "InvalidArgumentException", "NextToken with StreamName", "ListShards"
            )
        listed = [s.listing(closed=True) for s in self.closed]
        listed += [s.listing() for s in self.open_shards]
        start = int(token or 0)
        end = start + min(kwargs.get("MaxResults", self.page_size), self.page_size)
        page: dict[str, Any] = {"Shards": listed[start:end]}
        if end < len(listed):
            page["NextToken"] = str(end)
        return page

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        Records = [as_sent(entry) for entry in Records]
        check_put_records(Records)
        routing = ShardMap(self.open_shards)
        results: list[dict[str, Any]] = []
        failed = 0
        with self._lock:
            self.calls += 1
            for entry in Records:
                code = self.fail(entry)
                if code:
                    failed += 1
                    results.append({"ErrorCode": code, "ErrorMessage": "injected"})
                    continue
                key = int(entry.get("ExplicitHashKey") or hash_key(entry["PartitionKey"]))
                shard = routing.lookup(key)
                seq = str(len(self.stored) + 1)
                self.stored.append(
                    StoredRecord(shard.shard_id, seq, entry["PartitionKey"], entry["Data"])
                )
                results.append({"ShardId": shard.shard_id, "SequenceNumber": seq})
        return {"FailedRecordCount": failed, "Records": results}

    def put_record(self, StreamName: str, Data: Any, PartitionKey: str) -> dict[str, Any]:
        answer = self.put_records(StreamName, [{"Data": Data, "PartitionKey": PartitionKey}])
        result = answer["Records"][0]
        if "ErrorCode" in result:
            raise client_error(result["ErrorCode"], result["ErrorMessage"], "PutRecord")
        return result


def as_sent(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry as Kinesis receives it: botocore takes Data as bytes, bytearray or str
    (``botocore/validate.py`` ``_validate_blob``) and sends its bytes base64-encoded."""
    data = entry["Data"]
    if not isinstance(data, bytes | bytearray | str):
        raise TypeError(f"Data of type {type(data).__name__}: botocore refuses it")
    return {**entry, "Data": data.encode() if isinstance(data, str) else bytes(data)}


def check_put_records(records: list[dict[str, Any]]) -> None:
    """Refuse a PutRecords request over Kinesis's limits as Kinesis does, counting bytes."""
    if not 0 < len(records) <= PUT_RECORDS_MAX_COUNT:
        raise client_error("ValidationException", f"{len(records)} records in one request")
    total = 0
    for entry in records:
        key = entry["PartitionKey"]
        if not 0 < len(key) <= PARTITION_KEY_MAX_CHARS:
            raise client_error("ValidationException", f"partition key of {len(key)} characters")
        size = len(entry["Data"]) + len(key.encode())
        if size > RECORD_MAX_BYTES:
            raise client_error("InvalidArgumentException", f"a record of {size} bytes")
        total += size
    if total > PUT_RECORDS_MAX_BYTES:
        raise client_error("InvalidArgumentException", f"Records size {total} exceeds 5 MB")
