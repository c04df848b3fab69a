"""``python -m local_stack.stream_metrics``: the stream's metrics that Kinesis publishes to
CloudWatch in AWS, published for the local stack, where kinesis-mock publishes none.

What the scaler reads with its CloudWatch source (``scaler.sources.CloudWatchSource``) and the
dashboard and alarms name: ``AWS/Kinesis`` IncomingBytes (Bytes), IncomingRecords (Count) and
WriteProvisionedThroughputExceeded (Count), per stream (dimension StreamName) and per shard
(StreamName, ShardId: enhanced shard-level monitoring, which the stack turns on). Names, units
and dimensions as in the Kinesis Data Streams Developer Guide, "Monitoring the Amazon Kinesis
Data Streams service with Amazon CloudWatch"
(https://docs.aws.amazon.com/streams/latest/dev/monitoring-with-cloudwatch.html), and the
shard-level metric names of the API Reference's ``EnhancedMetrics``.

The numbers are what the producers put: every ``interval`` seconds, the increase of their
per-shard counters (``GET /metrics``: Kinesis records and bytes put, records throttled; the
scaler's producer source reads the same), as one datapoint per metric stamped now. Every open
shard gets a datapoint (0 when nothing was put to it), and the stream one, so a quiet stream
reads as quiet, not as missing. Records put to the stream behind the producers' back (a test's
poison record) are not counted. Kept in the local CloudWatch's memory (moto): a restart of this
process keeps the counts it last published in ``--state`` (the stack deletes it when it starts):
a restart neither loses nor counts again; a producer's restart is seen (its counters go down)
and counted from zero.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import boto3

from common.logs import configure_logging
from common.metric_catalog import KINESIS
from scaler.sources import ProducerSource, Scrape, fetch_with_key, increase, scrape
from scaler.stream import StreamAdmin

log = logging.getLogger("stream-metrics")

NAMESPACE = KINESIS.name
# the producers' counter -> the Kinesis metric it stands in for
METRICS = {
    ProducerSource.BYTES: KINESIS["IncomingBytes"],
    ProducerSource.RECORDS: KINESIS["IncomingRecords"],
    ProducerSource.THROTTLED: KINESIS["WriteProvisionedThroughputExceeded"],
}
BATCH = 1000  # metric data items per PutMetricData (CloudWatch API Reference: 1,000 at most)


def metric_data(stream: str, open_shards: Sequence[str], delta: dict[str, Counter[str]],
                at: datetime) -> list[dict[str, Any]]:  # fmt: skip
    """The datapoints of one interval: per stream, and per shard for every open shard and
    every shard something was put to (a shard closed during the interval keeps its share)."""
    shards = sorted(set(open_shards).union(*(set(c) for c in delta.values())))
    data = []
    for counter, metric in METRICS.items():
        per_shard = delta.get(counter, Counter())
        stream_dims = [{"Name": "StreamName", "Value": stream}]
        name, unit = metric.name, metric.unit
        data.append({"MetricName": name, "Dimensions": stream_dims, "Timestamp": at,
                     "Value": float(sum(per_shard.values())), "Unit": unit})  # fmt: skip
        for shard in shards:
            dims = [*stream_dims, {"Name": "ShardId", "Value": shard}]
            data.append({"MetricName": name, "Dimensions": dims, "Timestamp": at,
                         "Value": float(per_shard[shard]), "Unit": unit})  # fmt: skip
    return data


class StreamMetrics:
    """Scrapes the producers and publishes the increase since the previous scrape."""

    def __init__(self, cloudwatch: Any, admin: StreamAdmin, urls: Sequence[str],
                 fetch: Callable[[str], str] | None = None,
                 clock: Callable[[], float] = time.time,
                 state: Path | None = None) -> None:  # fmt: skip
        """``state``: where the last counts published are kept. Absent, the producers' counts
        so far are all new (the stack's first start: its producer counts from its start);
        present, they were published up to the counts in it (a restart)."""
        self._cloudwatch, self._admin, self._urls = cloudwatch, admin, list(urls)
        self._fetch = fetch
        self._clock = clock
        self._state = state
        self._last: Scrape | None = None
        if state is not None:
            saved = json.loads(state.read_text()) if state.exists() else {}
            self._last = {url: {name: Counter(shards) for name, shards in counts.items()}
                          for url, counts in saved.items()}  # fmt: skip

    def _scrape(self) -> Scrape:
        return scrape(self._urls) if self._fetch is None else scrape(self._urls, self._fetch)

    def publish(self) -> int:
        """One interval: the number of datapoints published (0 for the first scrape without
        a state, the baseline)."""
        scraped = self._scrape()
        before = self._last
        # a producer that did not answer keeps its last counts: not counted again when it does
        counts = {**(before or {}), **scraped}
        if before is None:
            self._last = counts
            return 0
        delta = increase(before, scraped, list(METRICS))
        open_shards = [s.shard_id for s in self._admin.open_shards()]
        at = datetime.fromtimestamp(self._clock(), UTC)
        data = metric_data(self._admin.stream_name, open_shards, delta, at)
        for start in range(0, len(data), BATCH):
            self._cloudwatch.put_metric_data(Namespace=NAMESPACE,
                                             MetricData=data[start : start + BATCH])  # fmt: skip
        self._last = counts  # published: a failed call leaves its increase for the next one
        if self._state is not None:
            partial = self._state.with_suffix(".tmp")
            partial.write_text(json.dumps(counts))
            partial.replace(self._state)
        return len(data)

    def run(self, interval: float, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.publish()
            except Exception:  # the emulators restarting or slow: try again next interval
                log.exception("cannot publish the stream's metrics")
            stop.wait(interval)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local_stack.stream_metrics",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--stream", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--kinesis-endpoint", required=True)
    parser.add_argument("--cloudwatch-endpoint", required=True)
    parser.add_argument("--producer-metrics-url", action="append", required=True)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--state", type=Path, help="the last counts published (see StreamMetrics)")
    args = parser.parse_args(argv)
    configure_logging("stream-metrics")
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    session = boto3.session.Session(region_name=args.region)
    metrics = StreamMetrics(
        session.client("cloudwatch", endpoint_url=args.cloudwatch_endpoint),
        StreamAdmin(session.client("kinesis", endpoint_url=args.kinesis_endpoint), args.stream),
        args.producer_metrics_url,
        # the producer answers /metrics only with its key, when it has one (from the
        # environment, never the command line: ps shows that to everyone)
        fetch=fetch_with_key(os.environ.get("PRODUCER_API_KEY") or None),
        state=args.state,
    )
    log.info("publishing the stream's metrics", extra={"stream": args.stream,
                                                      "interval": args.interval})  # fmt: skip
    metrics.run(args.interval, stop)


if __name__ == "__main__":
    main()
