"""Where a partition key lands: the stream's open shards and their hash-key ranges."""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
else:
    KinesisClient = Any


def hash_key(partition_key: str) -> int:
    """Kinesis's hash of a partition key: the MD5 digest read as a 128-bit big-endian int."""
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")


@dataclass(frozen=True, slots=True)
class Shard:
    """An open shard and its inclusive hash-key range."""

    shard_id: str
    start: int
    end: int

    def owns(self, key: int) -> bool:
        return self.start <= key <= self.end


class ShardMap:
    """The open shards of a stream, sorted by range; ``lookup`` finds the owner of a hash key.

    Contract: the ranges of open shards cover 0 .. 2**128-1 without overlap (Kinesis guarantees
    it for a stream that is not mid-reshard); a map read mid-reshard may be stale, which the
    collector detects from PutRecords answers (a record landing on another shard) and repairs
    by refreshing the map.
    """

    def __init__(self, shards: list[Shard]) -> None:
        if not shards:
            raise ValueError("a stream has at least one open shard")
        self.shards = sorted(shards, key=lambda s: s.start)
        self._starts = [s.start for s in self.shards]

    def lookup(self, key: int) -> Shard:
        return self.shards[bisect.bisect_right(self._starts, key) - 1]

    def shard_for(self, partition_key: str) -> Shard:
        return self.lookup(hash_key(partition_key))

    @classmethod
    def load(cls, client: KinesisClient, stream_name: str) -> ShardMap:
        """Read the open shards with ListShards (all pages)."""
        shards: list[Shard] = []
        kwargs: dict[str, Any] = {"StreamName": stream_name}
        while True:
            page = client.list_shards(**kwargs)
            for raw in page["Shards"]:
                if "EndingSequenceNumber" in raw["SequenceNumberRange"]:
                    continue  # closed by a reshard: takes no more writes
                rng = raw["HashKeyRange"]
                shards.append(
                    Shard(raw["ShardId"], int(rng["StartingHashKey"]), int(rng["EndingHashKey"]))
                )
            token = page.get("NextToken")
            if not token:
                return cls(shards)
            kwargs = {"NextToken": token}
