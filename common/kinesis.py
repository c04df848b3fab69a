"""Kinesis basics the services, tests and benchmarks share: where a partition key hashes, a
shard and its hash-key range, the stream's shards by ListShards, and the service's limits.

Limits, from the Kinesis Data Streams documentation:
- a shard takes writes of up to 1 MiB/s and 1,000 records/s; an aggregated (KPL) record
  counts as one record ("Quotas and limits",
  https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html);
- PutRecords: at most 500 records and 5 MiB a request, partition keys included; a record's
  data blob plus its partition key up to 1 MiB; a partition key 1 to 256 Unicode characters
  (API Reference, PutRecords:
  https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html).

Hash keys: Kinesis maps a partition key to a 128-bit integer with MD5 (API Reference,
PutRecord: "an MD5 hash function is used to map partition keys to 128-bit integer values");
an explicit hash key, when given, is used instead. Each open shard owns an inclusive range of
that space; together the open shards cover ``0 .. HASH_SPACE - 1`` without overlap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient as KinesisClient  # the services import it here
    from mypy_boto3_kinesis.type_defs import ShardTypeDef
else:
    KinesisClient = Any

HASH_SPACE = 2**128  # hash keys are 0 .. 2**128 - 1

SHARD_WRITE_BYTES_PER_S = 1024 * 1024
SHARD_WRITE_RECORDS_PER_S = 1000

PUT_RECORDS_MAX_COUNT = 500
PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024
RECORD_MAX_BYTES = 1024 * 1024  # data + partition key of one Kinesis record
PARTITION_KEY_MAX_CHARS = 256


def hash_key(partition_key: str) -> int:
    """Kinesis's hash of a partition key: the MD5 digest read as a 128-bit big-endian int."""
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")


@dataclass(frozen=True, slots=True)
class Shard:
    """A shard and its inclusive hash-key range."""

    shard_id: str
    start: int
    end: int

    def owns(self, key: int) -> bool:
        return self.start <= key <= self.end

    @property
    def width(self) -> float:
        """The fraction of the hash space this shard owns."""
        return (self.end - self.start + 1) / HASH_SPACE

    @property
    def midpoint(self) -> int:
        """The hash key that halves this shard: SplitShard's NewStartingHashKey (the upper
        child's start)."""
        return (self.start + self.end + 1) // 2

    @classmethod
    def listed(cls, raw: Mapping[str, Any]) -> Shard:
        """The shard of one ListShards (or DescribeStream) entry."""
        hashes = raw["HashKeyRange"]
        return cls(raw["ShardId"], int(hashes["StartingHashKey"]), int(hashes["EndingHashKey"]))

    def listing(self, closed: bool = False) -> dict[str, Any]:
        """This shard as ListShards describes it (for fakes and stand-in endpoints); a closed
        shard has an ending sequence number."""
        numbers = {"StartingSequenceNumber": "0"}
        if closed:
            numbers["EndingSequenceNumber"] = "9"
        hashes = {"StartingHashKey": str(self.start), "EndingHashKey": str(self.end)}
        return {"ShardId": self.shard_id, "HashKeyRange": hashes, "SequenceNumberRange": numbers}


def adjacent(lower: Shard, upper: Shard) -> bool:
    """Whether ``upper``'s range starts right after ``lower``'s (MergeShards needs it)."""
    return lower.end + 1 == upper.start


def even_shards(
    count: int,
    prefix: str = "shardId-",
    start: int = 0,
    end: int = HASH_SPACE - 1,
    first: int = 0,
) -> list[Shard]:
    """``count`` shards splitting ``start..end`` (by default the whole hash space) evenly, as
    CreateStream and UpdateShardCount (uniform scaling) do; the last takes the remainder.
    Numbered from ``first``: ``shardId-000000000000`` ..."""
    step = (end - start + 1) // count
    return [
        Shard(
            f"{prefix}{first + i:012d}",
            start + i * step,
            end if i == count - 1 else start + (i + 1) * step - 1,
        )
        for i in range(count)
    ]


def is_open(raw: Mapping[str, Any]) -> bool:
    """Whether a ListShards entry is open: a shard closed by a reshard has an ending sequence
    number and takes no more writes."""
    return "EndingSequenceNumber" not in raw["SequenceNumberRange"]


def list_shards(client: KinesisClient, stream_name: str) -> Iterator[ShardTypeDef]:
    """Every shard of the stream, open and closed, as ListShards lists them (all pages). A
    next page is asked for by its token alone: ListShards refuses a ``NextToken`` with a
    ``StreamName`` (API Reference, ListShards:
    https://docs.aws.amazon.com/kinesis/latest/APIReference/API_ListShards.html)."""
    kwargs: dict[str, Any] = {"StreamName": stream_name}
    while True:
        page = client.list_shards(**kwargs)
        yield from page["Shards"]
        token = page.get("NextToken")
        if not token:
            return
        kwargs = {"NextToken": token}


def open_shards(client: KinesisClient, stream_name: str) -> list[Shard]:
    """The stream's open shards, sorted by hash range."""
    shards = [Shard.listed(raw) for raw in list_shards(client, stream_name) if is_open(raw)]
    return sorted(shards, key=lambda s: s.start)
