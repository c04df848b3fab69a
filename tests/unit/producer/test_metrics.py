"""KPL-named metrics: Prometheus text and CloudWatch EMF lines."""

from __future__ import annotations

import asyncio
import json

from producer.collector import CollectorConfig, KinesisCollector
from producer.metrics import COUNTERS, DISTRIBUTIONS, ProducerMetrics
from producer.shards import ShardMap
from tests.fakes import FakeKinesis, even_shards


def _run_collector(kinesis: FakeKinesis, count: int) -> ProducerMetrics:
    async def scenario() -> ProducerMetrics:
        collector = KinesisCollector(
            kinesis,
            CollectorConfig(stream_name="s", max_buffered_time=0.01, backoff_base=0.001),
            ShardMap(kinesis.open_shards),
        )
        collector.start()
        await asyncio.gather(*(collector.put(f"k{i}", b"x" * 100) for i in range(count)))
        await collector.close()
        return collector.metrics

    return asyncio.run(scenario())


def test_collector_counts_like_the_kpl() -> None:
    # GIVEN a Kinesis that throttles each entry once
    seen: set[bytes] = set()

    def once(entry: dict[str, object]) -> str | None:
        data = entry["Data"]
        assert isinstance(data, bytes)
        if data in seen:
            return None
        seen.add(data)
        return "ProvisionedThroughputExceededException"

    kinesis = FakeKinesis(even_shards(2), fail=once)
    # WHEN 1,000 records are put
    metrics = _run_collector(kinesis, 1000)
    # THEN received/put counts match, aggregation shows, the throttling is counted by code
    assert metrics.counters["UserRecordsReceived"] == metrics.counters["UserRecordsPut"] == 1000
    assert metrics.counters["KinesisRecordsPut"] == len(kinesis.stored)
    assert metrics.counters["PutRecordsCalls"] == kinesis.calls
    assert metrics.errors["ProvisionedThroughputExceededException"] == len(kinesis.stored)
    per_record = metrics.distributions["UserRecordsPerKinesisRecord"]
    assert per_record.total == 1000 and per_record.count == len(kinesis.stored)
    assert metrics.distributions["BufferingTime"].count == 1000
    # AND per shard: what each stored, and one throttle per stored entry, on its own shard
    per_shard = {s.shard_id: 0 for s in kinesis.open_shards}
    for stored in kinesis.stored:
        per_shard[stored.shard_id] += 1
    assert dict(metrics.shard_records) == dict(metrics.shard_throttled) == per_shard
    assert sum(metrics.shard_bytes.values()) == sum(
        len(r.data) + len(r.partition_key) for r in kinesis.stored
    )


def test_prometheus_text_has_every_metric() -> None:
    metrics = ProducerMetrics()
    metrics.count("UserRecordsReceived", 3)
    metrics.error("InternalFailure")
    text = metrics.prometheus()
    assert "producer_user_records_received_total 3" in text
    assert 'producer_errors_total{code="InternalFailure"} 1' in text
    assert text.count("# TYPE") == len(COUNTERS) + len(DISTRIBUTIONS) + 4


def test_prometheus_text_has_the_per_shard_counts() -> None:
    metrics = ProducerMetrics()
    metrics.shard_put("shardId-000000000001", 500)
    metrics.shard_put("shardId-000000000001", 300)
    metrics.shard_throttled["shardId-000000000002"] += 1
    text = metrics.prometheus()
    assert 'producer_shard_kinesis_records_put_total{shard="shardId-000000000001"} 2' in text
    assert 'producer_shard_kinesis_bytes_put_total{shard="shardId-000000000001"} 800' in text
    assert 'producer_shard_throttled_total{shard="shardId-000000000002"} 1' in text


def test_emf_reports_the_increase_since_the_last_line() -> None:
    metrics = ProducerMetrics()
    metrics.count("UserRecordsPut", 5)
    first = json.loads(metrics.emf(now=1.0))
    metrics.count("UserRecordsPut", 2)
    second = json.loads(metrics.emf(now=2.0))
    assert (first["UserRecordsPut"], second["UserRecordsPut"]) == (5, 2)
    directive = second["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "KinesisIngest/Producer"
    assert {m["Name"] for m in directive["Metrics"]} == set(COUNTERS) | set(DISTRIBUTIONS)
    assert second["_aws"]["Timestamp"] == 2000
