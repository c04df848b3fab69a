"""What the scaler reasons about: per-minute load samples and decisions (over the shards of
``common.kinesis``).

Loads are rates (bytes/s and records/s, averaged over one minute) as Kinesis meters them on
ingest: an aggregated record counts as one record. A load's *utilisation* on one shard is the
larger of its two fractions of the shard write limits (1 MiB/s, 1,000 records/s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from common.kinesis import SHARD_WRITE_BYTES_PER_S, SHARD_WRITE_RECORDS_PER_S


@dataclass(frozen=True, slots=True)
class Load:
    bytes_per_s: float = 0.0
    records_per_s: float = 0.0

    def utilisation(self, shards: float = 1.0) -> float:
        """Fraction of the write limit of ``shards`` shards this load uses (1.0 = at the limit)."""
        bytes_part = self.bytes_per_s / SHARD_WRITE_BYTES_PER_S
        return max(bytes_part, self.records_per_s / SHARD_WRITE_RECORDS_PER_S) / shards

    def scaled(self, factor: float) -> Load:
        return Load(self.bytes_per_s * factor, self.records_per_s * factor)

    def __add__(self, other: Load) -> Load:
        return Load(self.bytes_per_s + other.bytes_per_s, self.records_per_s + other.records_per_s)


@dataclass(frozen=True, slots=True)
class Sample:
    """One minute of stream load. ``shards`` has per-shard loads when they are known (Kinesis
    enhanced shard-level monitoring, or counts from the producers); ``throttled`` counts the
    writes refused with ProvisionedThroughputExceeded in that minute."""

    minute: int  # minutes since the epoch
    stream: Load
    throttled: int = 0
    shards: dict[str, Load] = field(default_factory=dict)


class Action(StrEnum):
    HOLD = "hold"
    UPDATE_SHARD_COUNT = "update_shard_count"
    SPLIT = "split"
    MERGE = "merge"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do now and why. ``target`` is the open shard count after the action."""

    action: Action
    reason: str
    current: int
    target: int
    shards: tuple[str, ...] = ()  # the shard to split, or the two shards to merge (lower first)
    split_at: int | None = None  # SplitShard's NewStartingHashKey
    # a HOLD where the load calls for a change that a limit forbids (max_shards under load):
    # notified like an operation, as Scaling Utils does
    refused: bool = False

    @property
    def direction(self) -> int:
        """+1 scales up, -1 down, 0 neither."""
        return (self.target > self.current) - (self.target < self.current)
