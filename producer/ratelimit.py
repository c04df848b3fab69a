"""The per-shard rate limit (the KPL's RateLimit): a token bucket per shard for records and one
for bytes, refilled at a percentage of the shard's write limits (1,000 records/s, 1 MiB/s).

The KPL's default is 150%: a little over the limit, so that a producer alone on a stream
uses all of it and Kinesis's own throttling (retried with backoff) settles the rest, while a
hot shard cannot take the whole PutRecords call down with it in a retry storm. Records held by
the limit stay buffered, so a shard that stays over its limit fills the buffer and the producer
answers 503 (back-pressure) instead of retrying without end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from common.kinesis import SHARD_WRITE_BYTES_PER_S, SHARD_WRITE_RECORDS_PER_S


class TokenBucket:
    """Holds up to one second of ``rate``; a take may overdraw it (an entry larger than the
    bucket goes once the bucket is full, and the debt is paid back before the next)."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = rate
        self.tokens = rate
        self.stamp = now

    def wait(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` may be taken (0: now)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        short = min(amount, self.capacity) - self.tokens
        return short / self.rate if short > 0 else 0.0

    def take(self, amount: float) -> None:
        self.tokens -= amount


class ShardRateLimiter:
    """Token buckets per shard id; ``percent`` of the shard write limits."""

    def __init__(self, percent: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.records_rate = SHARD_WRITE_RECORDS_PER_S * percent / 100
        self.bytes_rate = SHARD_WRITE_BYTES_PER_S * percent / 100
        self._clock = clock
        self._buckets: dict[str, tuple[TokenBucket, TokenBucket]] = {}

    def _pair(self, shard_id: str) -> tuple[TokenBucket, TokenBucket]:
        pair = self._buckets.get(shard_id)
        if pair is None:
            now = self._clock()
            pair = (TokenBucket(self.records_rate, now), TokenBucket(self.bytes_rate, now))
            self._buckets[shard_id] = pair
        return pair

    def delay(self, shard_id: str, size: int) -> float:
        """Seconds before one Kinesis record of ``size`` bytes may go to the shard."""
        records, data = self._pair(shard_id)
        now = self._clock()
        return max(records.wait(1, now), data.wait(size, now))

    def take(self, shard_id: str, size: int) -> None:
        records, data = self._pair(shard_id)
        records.take(1)
        data.take(size)

    def retain(self, shard_ids: Iterable[str]) -> None:
        """Forget the shards not in ``shard_ids`` (closed by a reshard)."""
        keep = set(shard_ids)
        for shard_id in [s for s in self._buckets if s not in keep]:
            del self._buckets[shard_id]
