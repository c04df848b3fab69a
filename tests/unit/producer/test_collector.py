"""The collector against a fake Kinesis that routes like the real one."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from collections.abc import Sequence

import pytest

from producer.collector import Accepted, CollectorConfig, KinesisCollector, RecordNotAccepted
from producer.ids import IdGenerator
from producer.shards import ShardMap
from tests.fakes import FakeKinesis, even_shards
from tests.kpl import sub_records


def _config(**overrides: float) -> CollectorConfig:
    values = {"max_buffered_time": 0.02, "record_ttl": 5.0, "backoff_base": 0.001, **overrides}
    return CollectorConfig(stream_name="s", **values)


async def _put_all(collector: KinesisCollector, records: list[tuple[str, bytes]]) -> list[object]:
    collector.start()
    try:
        return await asyncio.gather(
            *(collector.put(pk, data) for pk, data in records), return_exceptions=True
        )
    finally:
        await collector.close()


def _where_kcl_keeps(kinesis: FakeKinesis) -> Counter[bytes]:
    """User records the KCL would hand over: those of aggregates wholly inside their shard."""
    shards = {s.shard_id: s for s in kinesis.open_shards}
    kept: Counter[bytes] = Counter()
    for stored in kinesis.stored:
        subs = sub_records(stored.data, stored.partition_key)
        if all(shards[stored.shard_id].owns(key) for _, key, _ in subs):
            kept.update(data for _, _, data in subs)
    return kept


def _records(count: int, caller_keys: int = 0) -> list[tuple[str, bytes]]:
    ids = IdGenerator("cafe")
    rng = random.Random(11)
    out = []
    for i in range(count):
        record_id = ids()
        key = f"customer-{rng.randrange(caller_keys)}" if caller_keys else record_id
        out.append((key, f'{{"id":"{record_id}","n":{i}}}'.encode()))
    return out


def test_every_aggregate_stays_inside_its_shard() -> None:
    # GIVEN 5 shards and records with random keys plus records with a few caller-given keys
    kinesis = FakeKinesis(even_shards(5))
    records = _records(3000) + _records(1000, caller_keys=7)
    collector = KinesisCollector(kinesis, _config(), ShardMap(kinesis.open_shards))
    # WHEN all are put
    results = asyncio.run(_put_all(collector, records))
    # THEN all were acknowledged, each exactly once kept by the KCL's rule, and aggregated
    assert all(isinstance(r, Accepted) for r in results)
    kept = _where_kcl_keeps(kinesis)
    assert kept == Counter(data for _, data in records)
    assert len(kinesis.stored) < len(records) / 20


def test_acknowledgement_names_the_shard_that_stored_the_record() -> None:
    kinesis = FakeKinesis(even_shards(3))
    records = _records(200)
    collector = KinesisCollector(kinesis, _config(), ShardMap(kinesis.open_shards))
    results = asyncio.run(_put_all(collector, records))
    shard_map = ShardMap(kinesis.open_shards)
    for (pk, _), result in zip(records, results, strict=True):
        assert isinstance(result, Accepted)
        assert result.shard_id == shard_map.shard_for(pk).shard_id


def test_failed_entries_are_retried_until_accepted() -> None:
    # GIVEN a Kinesis that throttles the first two attempts of every entry
    attempts: Counter[bytes] = Counter()

    def throttle(entry: dict[str, object]) -> str | None:
        data = entry["Data"]
        assert isinstance(data, bytes)
        attempts[data] += 1
        return "ProvisionedThroughputExceededException" if attempts[data] <= 2 else None

    kinesis = FakeKinesis(even_shards(2), fail=throttle)
    records = _records(500)
    collector = KinesisCollector(kinesis, _config(), ShardMap(kinesis.open_shards))
    # WHEN put
    results = asyncio.run(_put_all(collector, records))
    # THEN every record is acknowledged and stored once
    assert all(isinstance(r, Accepted) for r in results)
    assert _where_kcl_keeps(kinesis) == Counter(data for _, data in records)


def test_records_fail_clearly_after_the_ttl() -> None:
    # GIVEN a Kinesis that never accepts anything and a 0.3 s TTL
    kinesis = FakeKinesis(even_shards(2), fail=lambda _: "InternalFailure")
    collector = KinesisCollector(kinesis, _config(record_ttl=0.3), ShardMap(kinesis.open_shards))
    # WHEN records are put
    results = asyncio.run(_put_all(collector, _records(50)))
    # THEN each caller gets RecordNotAccepted, none hangs, nothing is stored
    assert all(isinstance(r, RecordNotAccepted) for r in results)
    assert "TTL" in str(results[0])
    assert kinesis.stored == []


def test_a_reshard_the_producer_missed_is_repaired() -> None:
    # GIVEN the producer's map says 2 shards but the stream was split into 4
    kinesis = FakeKinesis(even_shards(4, prefix="shardId-child-"))
    stale = ShardMap(even_shards(2))
    records = _records(2000) + _records(500, caller_keys=3)
    collector = KinesisCollector(kinesis, _config(), stale)
    # WHEN all are put
    results = asyncio.run(_put_all(collector, records))
    # THEN every record is acknowledged and the KCL keeps each at least once
    assert all(isinstance(r, Accepted) for r in results)
    kept = _where_kcl_keeps(kinesis)
    assert set(kept) == {data for _, data in records}


def test_put_after_close_is_refused() -> None:
    kinesis = FakeKinesis(even_shards(1))

    async def scenario() -> None:
        collector = KinesisCollector(kinesis, _config(), ShardMap(kinesis.open_shards))
        collector.start()
        await collector.close()
        with pytest.raises(RecordNotAccepted):
            await collector.put("k", b"x")

    asyncio.run(scenario())


def test_ids_are_unique_and_distinct_across_generators() -> None:
    first, second = IdGenerator(), IdGenerator()
    ids = [first() for _ in range(1000)] + [second() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    assert len(set(itertools.islice((i.split("-")[0] for i in ids), 0, None))) == 2


def test_per_key_order_survives_retries() -> None:
    # GIVEN one caller key, small aggregates, and a Kinesis that throttles every other entry once
    attempts: Counter[bytes] = Counter()

    def throttle_some(entry: dict[str, object]) -> str | None:
        data = entry["Data"]
        assert isinstance(data, bytes)
        attempts[data] += 1
        ordinal = list(attempts).index(data)  # entries in the order Kinesis first saw them
        throttled = ordinal % 2 == 0 and attempts[data] == 1
        return "ProvisionedThroughputExceededException" if throttled else None

    kinesis = FakeKinesis(even_shards(2), fail=throttle_some)
    records = [("customer-1", f"{i:06d}".encode()) for i in range(600)]
    collector = KinesisCollector(
        kinesis,
        CollectorConfig(stream_name="s", aggregation_max_bytes=1024, max_buffered_time=0.005,
                        backoff_base=0.02),
        ShardMap(kinesis.open_shards),
    )  # fmt: skip
    # WHEN put in order
    results = asyncio.run(_put_all(collector, records))
    # THEN Kinesis stored them in the order they were taken, despite the retries
    assert all(isinstance(r, Accepted) for r in results)
    assert sum(attempts.values()) > len(kinesis.stored)  # some entries were retried
    stored = [data for s in kinesis.stored for _, _, data in sub_records(s.data, s.partition_key)]
    assert stored == [data for _, data in records]


def test_a_reshard_is_picked_up_by_the_periodic_refresh_before_any_record_goes_astray() -> None:
    # GIVEN a producer started on 2 shards, and the stream split into 4 meanwhile
    kinesis = FakeKinesis(even_shards(2))
    collector = KinesisCollector(
        kinesis, _config(shard_refresh_interval=0.02), ShardMap(kinesis.open_shards)
    )
    records = _records(1500) + _records(300, caller_keys=5)

    async def scenario() -> list[object]:
        collector.start()
        kinesis.open_shards = even_shards(4, prefix="shardId-child-")
        await asyncio.sleep(0.2)
        try:
            return await asyncio.gather(*(collector.put(pk, d) for pk, d in records))
        finally:
            await collector.close()

    results = asyncio.run(scenario())
    # THEN it routes by the new map: every aggregate lands where the map said, none re-sent
    assert all(isinstance(r, Accepted) for r in results)
    assert collector.metrics.counters["ShardMapRefreshes"] == 1
    assert collector.metrics.counters["Reroutes"] == 0
    assert {r.shard_id for r in results if isinstance(r, Accepted)} == {
        s.shard_id for s in kinesis.open_shards
    }
    assert set(_where_kcl_keeps(kinesis)) == {data for _, data in records}


def test_aggregates_hold_at_most_the_configured_record_count() -> None:
    kinesis = FakeKinesis(even_shards(1))
    collector = KinesisCollector(
        kinesis, _config(aggregation_max_count=7), ShardMap(kinesis.open_shards)
    )
    results = asyncio.run(_put_all(collector, _records(100)))
    assert all(isinstance(r, Accepted) for r in results)
    counts = [len(sub_records(s.data, s.partition_key)) for s in kinesis.stored]
    assert max(counts) == 7 and sum(counts) == 100


def test_if_the_dispatch_loop_dies_every_caller_is_answered_and_nothing_more_is_taken() -> None:
    # GIVEN a collector whose dispatch fails (a bug) once records are buffered
    kinesis = FakeKinesis(even_shards(2))
    collector = KinesisCollector(kinesis, _config(), ShardMap(kinesis.open_shards))

    async def broken_dispatch(flush: bool) -> None:
        raise RuntimeError("bug")

    collector._dispatch = broken_dispatch  # type: ignore[method-assign]  # broken for this test

    async def scenario() -> tuple[Sequence[object], object]:
        collector.start()
        results = await asyncio.wait_for(
            asyncio.gather(*(collector.put(pk, d) for pk, d in _records(50)),
                           return_exceptions=True),
            timeout=5,
        )  # fmt: skip
        try:
            await collector.put("k", b"late")
        except RecordNotAccepted as exc:
            late: object = exc
        await collector.close()
        return results, late

    # WHEN records are put THEN each caller gets RecordNotAccepted (no one waits forever)
    results, late = asyncio.run(scenario())
    assert all(isinstance(r, RecordNotAccepted) for r in results), results
    assert isinstance(late, RecordNotAccepted) and "stopped" in str(late)
    assert collector.broken is not None and collector.buffered_records == 0
