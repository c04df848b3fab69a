"""In-memory fakes of AWS services for unit and functional tests (no network)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from producer.shards import Shard, ShardMap, hash_key

HASH_SPACE = 2**128
# PutRecords limits (Kinesis API reference, PutRecords): at most 500 records and 5 MiB a
# request "including partition keys"; a record's data blob plus its partition key up to 1 MiB;
# a partition key 1 to 256 Unicode characters (its bytes are what counts toward the sizes).
PUT_RECORDS_MAX_COUNT = 500
PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024
RECORD_MAX_BYTES = 1024 * 1024
PARTITION_KEY_MAX_CHARS = 256


def even_shards(count: int, prefix: str = "shardId-") -> list[Shard]:
    """``count`` shards splitting the hash space evenly, as CreateStream does."""
    return spread(count, prefix, 0, HASH_SPACE - 1)


def spread(count: int, prefix: str, start: int, end: int, first: int = 0) -> list[Shard]:
    """``count`` shards splitting ``start..end`` evenly, numbered from ``first``."""
    step = (end - start + 1) // count
    return [
        Shard(
            f"{prefix}{first + i:012d}",
            start + i * step,
            end if i == count - 1 else start + (i + 1) * step - 1,
        )
        for i in range(count)
    ]


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
    """ListShards and PutRecords with Kinesis's routing: an entry lands on the open shard owning
    its ExplicitHashKey, else the MD5 of its PartitionKey. Sizes are counted as Kinesis counts
    them, in bytes, and a request over a limit fails whole (InvalidArgumentException).

    ``fail(entry) -> error code | None`` injects per-entry failures (throttling and the like).
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
        middle = (parent.start + parent.end) // 2
        self._replace(
            [parent],
            [Shard(self._child_id(), parent.start, middle),
             Shard(self._child_id(), middle + 1, parent.end)],
        )  # fmt: skip

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
        children = [Shard(self._child_id(), 0, 0) for _ in range(target)]
        even = spread(target, "x", 0, HASH_SPACE - 1)
        self._replace(
            list(self.open_shards),
            [Shard(c.shard_id, e.start, e.end) for c, e in zip(children, even, strict=True)],
        )

    def shard(self, shard_id: str) -> Shard:
        """An open or closed shard by id."""
        return next(s for s in [*self.open_shards, *self.closed] if s.shard_id == shard_id)

    # --- the API ------------------------------------------------------------------------
    def list_shards(self, **_: Any) -> dict[str, Any]:
        def listed(shard: Shard, closed: bool) -> dict[str, Any]:
            numbers = {"StartingSequenceNumber": "0"}
            if closed:
                numbers["EndingSequenceNumber"] = "9"
            return {
                "ShardId": shard.shard_id,
                "HashKeyRange": {
                    "StartingHashKey": str(shard.start), "EndingHashKey": str(shard.end)
                },
                "SequenceNumberRange": numbers,
            }  # fmt: skip

        shards = [listed(s, True) for s in self.closed]
        return {"Shards": shards + [listed(s, False) for s in self.open_shards]}

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
