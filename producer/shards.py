"""Where a partition key lands: the stream's open shards and their hash-key ranges."""

from __future__ import annotations

import bisect

from common.kinesis import KinesisClient, Shard, hash_key, open_shards


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
        return cls(open_shards(client, stream_name))
