"""The per-shard rate limit: token buckets on a fake clock, and the collector under it."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from producer.collector import Accepted, CollectorConfig, KinesisCollector
from producer.ratelimit import ShardRateLimiter
from producer.shards import ShardMap
from tests.fakes import FakeKinesis, even_shards
from tests.vtime import FakeClock


def _send_while_allowed(limiter: ShardRateLimiter, shard_id: str, size: int) -> int:
    sent = 0
    while limiter.delay(shard_id, size) == 0:
        limiter.take(shard_id, size)
        sent += 1
    return sent


def test_a_shard_gets_its_percentage_of_the_record_limit_per_second() -> None:
    # GIVEN 150% of 1,000 records/s: a full bucket holds 1,500 records
    clock = FakeClock(100.0)
    limiter = ShardRateLimiter(150, clock)
    assert _send_while_allowed(limiter, "a", 10) == 1500
    # THEN the next record may go after 1/1500 s, and half a second refills 750
    assert limiter.delay("a", 10) == 1 / 1500
    clock.advance(0.5)
    assert _send_while_allowed(limiter, "a", 10) == 750


def test_bytes_are_limited_too_and_a_large_record_waits_for_a_full_bucket() -> None:
    clock = FakeClock(100.0)
    limiter = ShardRateLimiter(50, clock)  # 512 KiB/s
    assert limiter.delay("a", 1024 * 1024) == 0  # larger than the bucket: goes when full
    limiter.take("a", 1024 * 1024)  # and leaves a debt of 512 KiB
    assert limiter.delay("a", 1000) == (512 * 1024 + 1000) / (512 * 1024)
    # AND another shard has its own bucket
    assert limiter.delay("b", 1000) == 0


def test_closed_shards_are_forgotten() -> None:
    clock = FakeClock(100.0)
    limiter = ShardRateLimiter(1, clock)  # 10 records/s
    for _ in range(10):
        limiter.take("parent", 1)
    assert limiter.delay("parent", 1) > 0
    limiter.retain(["child"])
    assert limiter.delay("parent", 1) == 0  # a new bucket: the old one is gone


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_shard_over_its_limit_is_held_back_and_does_not_hold_up_the_others(loop: str) -> None:
    # (uvloop is what uvicorn runs: its clock steps by milliseconds and its call_at may give
    # a plain Handle; both once stranded records held by the limit)
    # GIVEN 2% of the shard limit (20 Kinesis records/s) and one user record per Kinesis record
    kinesis = FakeKinesis(even_shards(2))
    shard_map = ShardMap(kinesis.open_shards)
    hot, cold = shard_map.shards
    hot_keys = [f"k{i}" for i in range(400) if shard_map.shard_for(f"k{i}") is hot]
    cold_key = next(f"c{i}" for i in range(400) if shard_map.shard_for(f"c{i}") is cold)
    times: list[tuple[float, str]] = []
    put = kinesis.put_records

    def timed_put(**kwargs: object) -> dict[str, object]:
        answer = put(**kwargs)
        records: list[dict[str, str]] = answer["Records"]
        times.extend((time.monotonic(), r["ShardId"]) for r in records)
        return answer

    kinesis.put_records = timed_put  # type: ignore[method-assign, assignment]  # wrapped for this test
    config = CollectorConfig(stream_name="s", aggregation_max_count=1, max_buffered_time=0.005,
                             rate_limit_percent=2, shard_refresh_interval=0)  # fmt: skip
    collector = KinesisCollector(kinesis, config, shard_map)

    async def scenario() -> tuple[list[object], float, float]:
        collector.start()
        start = time.monotonic()
        held = [asyncio.ensure_future(collector.put(k, b"x")) for k in hot_keys[:40]]
        await asyncio.sleep(0.05)
        alone = await collector.put(cold_key, b"y")
        alone_at = time.monotonic() - start
        results = await asyncio.gather(*held, return_exceptions=True)
        await collector.close()
        return [*results, alone], alone_at, time.monotonic() - start

    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        results, cold_at, elapsed = runner.run(scenario())
    # THEN all are accepted; the hot shard's 40 took about a second (20 at once, 20 at 20/s)
    assert all(isinstance(r, Accepted) for r in results)
    assert elapsed >= 0.9, elapsed
    hot_times = sorted(t for t, shard in times if shard == hot.shard_id)
    first = hot_times[0]
    assert sum(t < first + 0.5 for t in hot_times) <= 20 + 11  # the bucket plus 0.5 s of refill
    assert collector.metrics.counters["KinesisRecordsRateLimited"] >= 15
    # AND the cold shard's record did not wait for the hot shard's backlog
    assert cold_at < 0.5, cold_at
