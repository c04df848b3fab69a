"""The local stack's AWS/Kinesis metrics: what the producers put, published to CloudWatch (moto,
in process) the way Kinesis publishes it, and read back by the scaler's CloudWatch source."""

from __future__ import annotations

from typing import Any

import boto3
from moto import mock_aws

from common.kinesis import Shard
from local_stack.stream_metrics import StreamMetrics
from scaler.model import Load
from scaler.sources import CloudWatchSource
from tests.vtime import FakeClock

PROMETHEUS = """producer_shard_kinesis_records_put_total{shard="a"} %d
producer_shard_kinesis_bytes_put_total{shard="a"} %d
producer_shard_throttled_total{shard="a"} %d
producer_shard_kinesis_records_put_total{shard="closed"} 7
producer_kinesis_records_put_total 12345
"""
MINUTE = 60 * 29_000_000  # the start of some minute, in epoch seconds


class Admin:
    stream_name = "s"

    def open_shards(self) -> list[Shard]:
        return [Shard("a", 0, 1), Shard("b", 2, 3)]


ADMIN: Any = Admin()  # the stream calls the publisher makes (StreamAdmin's)


def test_the_scaler_reads_what_the_producers_put_as_kinesis_metrics() -> None:
    # GIVEN a producer whose counters for shard "a" grow by 60 records, 600,000 bytes and one
    # throttled record in each of two intervals of a minute, then by 30 records in the next
    # minute; shard "b" is open and gets nothing, "closed" got records before the first scrape
    pages = [(0, 0, 0), (60, 600_000, 1), (120, 1_200_000, 2), (150, 1_500_000, 2)]
    clock = FakeClock(MINUTE + 10)
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
        metrics = StreamMetrics(cloudwatch, ADMIN, ["p"], clock=clock,
                                fetch=lambda _url: PROMETHEUS % pages.pop(0))  # fmt: skip
        # WHEN the publisher scrapes at :10 (its baseline), :30 and :50, and at :10 the
        # next minute
        published = []
        for at in (MINUTE + 10, MINUTE + 30, MINUTE + 50, MINUTE + 70):
            clock.now = at
            published.append(metrics.publish())
        # THEN each interval has a datapoint per metric for the stream and each shard, open or
        # written to (3 metrics x (stream + a, b, closed))
        assert published == [0, 12, 12, 12]
        listed = cloudwatch.list_metrics(Namespace="AWS/Kinesis")["Metrics"]
        names = {(m["MetricName"], frozenset((d["Name"], d["Value"]) for d in m["Dimensions"]))
                 for m in listed}  # fmt: skip
        assert ("IncomingBytes", frozenset({("StreamName", "s")})) in names
        assert ("WriteProvisionedThroughputExceeded",
                frozenset({("StreamName", "s"), ("ShardId", "b")})) in names  # fmt: skip
        # AND the scaler's CloudWatch source, two minutes on, reads the complete minute as
        # the producers' rates: 1.2 MB and 120 records in 60 s on "a", nothing on "b"
        source = CloudWatchSource(cloudwatch, "s", shard_level=True,
                                  clock=lambda: MINUTE + 150)  # fmt: skip
        (sample,) = source.samples(ADMIN.open_shards(), 3)
    assert sample.minute == MINUTE // 60
    assert sample.stream == Load(1_200_000 / 60, 120 / 60)
    assert sample.shards == {"a": Load(1_200_000 / 60, 120 / 60), "b": Load()}
    assert sample.throttled == 2


def test_a_producer_restart_counts_from_zero_and_a_dead_one_is_left_out() -> None:
    # GIVEN two producers: "p2" restarts (its counters start again), "p1" stops answering
    pages: dict[str, list[Any]] = {"p1": [(10, 100, 0), OSError("refused"), (12, 120, 0)],
                                   "p2": [(50, 500, 0), (5, 40, 0), (5, 40, 0)]}  # fmt: skip

    def fetch(url: str) -> str:
        page = pages[url].pop(0)
        if isinstance(page, Exception):
            raise page
        return PROMETHEUS % page

    sent: list[list[dict[str, Any]]] = []

    class CloudWatch:
        def put_metric_data(self, Namespace: str, MetricData: list[dict[str, Any]]) -> None:
            assert Namespace == "AWS/Kinesis"
            sent.append(MetricData)

    metrics = StreamMetrics(CloudWatch(), ADMIN, ["p1", "p2"], fetch=fetch)
    # WHEN it scrapes three times
    for _ in range(3):
        metrics.publish()
    # THEN the stream's first increase is p2's whole count since its restart (p1 unknown this
    # time), the second p1's growth since it last answered (not its whole count again)
    streams = [{d["MetricName"]: d["Value"] for d in data if len(d["Dimensions"]) == 1}
               for data in sent]  # fmt: skip
    assert streams == [
        {"IncomingRecords": 5.0, "IncomingBytes": 40.0, "WriteProvisionedThroughputExceeded": 0.0},
        {"IncomingRecords": 2.0, "IncomingBytes": 20.0, "WriteProvisionedThroughputExceeded": 0.0},
    ]
    units = {d["MetricName"]: d["Unit"] for d in sent[0]}
    assert units == {"IncomingRecords": "Count", "IncomingBytes": "Bytes",
                     "WriteProvisionedThroughputExceeded": "Count"}  # fmt: skip


def test_with_a_state_file_the_first_start_counts_all_and_a_restart_nothing_twice(
    tmp_path: Any,
) -> None:
    # GIVEN a producer that put 47 records before the publisher's first scrape (40 to "a", 7
    # to "closed"), then 10 more, then 5 more
    pages = [(40, 400, 0), (50, 500, 0), (55, 550, 0)]
    sent: list[float] = []

    class CloudWatch:
        def put_metric_data(self, Namespace: str, MetricData: list[dict[str, Any]]) -> None:
            stream = [d for d in MetricData if len(d["Dimensions"]) == 1]
            sent.extend(d["Value"] for d in stream if d["MetricName"] == "IncomingRecords")

    def start() -> StreamMetrics:
        return StreamMetrics(CloudWatch(), ADMIN, ["p"], state=tmp_path / "state.json",
                             fetch=lambda _url: PROMETHEUS % pages.pop(0))  # fmt: skip

    # WHEN the publisher starts without a state (the stack's first start), publishes twice,
    # and a new one (a restart) publishes once
    first = start()
    first.publish()
    first.publish()
    start().publish()
    # THEN the 47 are counted (the producer counts from its start), and each later record once
    assert sent == [47.0, 10.0, 5.0]
