"""In-memory fakes of AWS services for unit and functional tests (no network)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from producer.shards import Shard, ShardMap, hash_key

HASH_SPACE = 2**128


def even_shards(count: int, prefix: str = "shardId-") -> list[Shard]:
    """``count`` shards splitting the hash space evenly, as CreateStream does."""
    step = HASH_SPACE // count
    return [
        Shard(
            f"{prefix}{i:012d}",
            i * step,
            HASH_SPACE - 1 if i == count - 1 else (i + 1) * step - 1,
        )
        for i in range(count)
    ]


@dataclass
class StoredRecord:
    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes


@dataclass
class FakeKinesis:
    """ListShards and PutRecords with Kinesis's routing: an entry lands on the shard owning its
    ExplicitHashKey, else the MD5 of its PartitionKey.

    ``fail(entry) -> error code | None`` injects per-entry failures (throttling and the like);
    ``open_shards`` may be swapped to simulate a reshard the producer has not seen yet.
    """

    open_shards: list[Shard]
    fail: Callable[[dict[str, Any]], str | None] = lambda _entry: None
    stored: list[StoredRecord] = field(default_factory=list)
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def list_shards(self, **_: Any) -> dict[str, Any]:
        return {
            "Shards": [
                {
                    "ShardId": s.shard_id,
                    "HashKeyRange": {"StartingHashKey": str(s.start), "EndingHashKey": str(s.end)},
                    "SequenceNumberRange": {"StartingSequenceNumber": "0"},
                }
                for s in self.open_shards
            ]
        }

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        assert 0 < len(Records) <= 500, len(Records)
        assert sum(len(r["Data"]) + len(r["PartitionKey"]) for r in Records) <= 5 * 1024 * 1024
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
