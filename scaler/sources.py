"""Where the load comes from. Both sources answer ``samples(shards, count)``: the last
``count`` complete samples, oldest first.

- ``CloudWatchSource`` (AWS): IncomingBytes, IncomingRecords and
  WriteProvisionedThroughputExceeded per minute at stream level, and per shard when the
  stream has enhanced (shard-level) monitoring; one GetMetricData call per 500 queries.
- ``ProducerSource`` (local stack, or anywhere the producers are reachable): scrapes the
  per-shard counters each producer publishes at ``GET /metrics`` once per check and turns the
  increase since the previous scrape into a sample. Exact for the records that went through
  the producers, which locally is all of them.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from common.kinesis import Shard
from common.metric_catalog import KINESIS, PRODUCER, Metric
from scaler.model import Load, Sample

log = logging.getLogger(__name__)

_METRICS = {
    "b": KINESIS["IncomingBytes"],
    "r": KINESIS["IncomingRecords"],
    "t": KINESIS["WriteProvisionedThroughputExceeded"],
}


class MetricSource(Protocol):
    def samples(self, shards: Sequence[Shard], count: int) -> list[Sample]: ...

    def now(self) -> int:
        """The current time in the samples' unit (what ``Sample.minute`` counts)."""
        ...


class CloudWatchSource:
    def __init__(self, client: Any, stream_name: str, shard_level: bool = True,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self._client = client
        self._stream = stream_name
        self._shard_level = shard_level
        self._clock = clock

    def _queries(self, shards: Sequence[Shard]) -> list[dict[str, Any]]:
        def query(qid: str, metric: Metric, shard: str | None) -> dict[str, Any]:
            dims = [{"Name": "StreamName", "Value": self._stream}]
            if shard is not None:
                dims.append({"Name": "ShardId", "Value": shard})
            assert metric.published_under(d["Name"] for d in dims), metric
            named = {"Namespace": metric.namespace, "MetricName": metric.name, "Dimensions": dims}
            stat = {"Metric": named, "Period": 60, "Stat": "Sum"}
            return {"Id": qid, "MetricStat": stat, "ReturnData": True}

        queries = [query(f"s{k}", metric, None) for k, metric in _METRICS.items()]
        if self._shard_level:
            for i, shard in enumerate(shards):
                queries += [query(f"h{i}{k}", _METRICS[k], shard.shard_id) for k in ("b", "r")]
        return queries

    def now(self) -> int:
        return int(self._clock() // 60)

    def samples(self, shards: Sequence[Shard], count: int) -> list[Sample]:
        # A minute's datapoint is complete a minute or two after it ends: leave the last one.
        end = datetime.fromtimestamp(self._clock() // 60 * 60, UTC) - timedelta(minutes=1)
        start = end - timedelta(minutes=count)
        queries = self._queries(shards)
        values: dict[str, dict[datetime, float]] = {}
        for chunk in range(0, len(queries), 500):
            kwargs: dict[str, Any] = {"MetricDataQueries": queries[chunk : chunk + 500],
                                      "StartTime": start, "EndTime": end}  # fmt: skip
            while True:
                answer = self._client.get_metric_data(**kwargs)
                for result in answer["MetricDataResults"]:
                    series = values.setdefault(result["Id"], {})
                    series.update(zip(result["Timestamps"], result["Values"], strict=True))
                if not answer.get("NextToken"):
                    break
                kwargs["NextToken"] = answer["NextToken"]
        minutes = sorted(values.get("sb", {}))
        samples = []
        for at in minutes[-count:]:
            per_shard = {}
            if self._shard_level:
                for i, shard in enumerate(shards):
                    b, r = values.get(f"h{i}b", {}).get(at), values.get(f"h{i}r", {}).get(at)
                    if b is not None and r is not None:
                        per_shard[shard.shard_id] = Load(b / 60, r / 60)
            stream = Load(values["sb"][at] / 60, values.get("sr", {}).get(at, 0.0) / 60)
            throttled = int(values.get("st", {}).get(at, 0.0))
            samples.append(Sample(int(at.timestamp() // 60), stream, throttled, per_shard))
        return samples


_LINE = re.compile(r'^(producer_shard_\w+)\{shard="([^"]+)"\} (\d+)$', re.MULTILINE)


def parse_shard_counts(text: str) -> dict[str, Counter[str]]:
    """Per-shard counters from a producer's Prometheus text: metric name -> shard -> count."""
    counts: dict[str, Counter[str]] = {}
    for metric, shard, value in _LINE.findall(text):
        counts.setdefault(metric, Counter())[shard] += int(value)
    return counts


def _fetch(url: str, api_key: str | None = None) -> str:
    headers = {"X-Api-Key": api_key} if api_key else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
        body: bytes = r.read()
    return body.decode()


def fetch_with_key(api_key: str | None) -> Callable[[str], str]:
    """GET a producer's ``/metrics``, with its API key when the producers need one."""
    return lambda url: _fetch(url, api_key)


Scrape = dict[str, dict[str, Counter[str]]]  # producer url -> metric -> shard -> count


def scrape(urls: Sequence[str], fetch: Callable[[str], str] = _fetch) -> Scrape:
    """Each producer's per-shard counters; a producer that does not answer is left out (a
    producer restarting: its share is missing this time)."""
    scraped = {}
    for url in urls:
        try:
            scraped[url] = parse_shard_counts(fetch(url))
        except OSError as exc:
            log.warning("cannot scrape producer metrics", extra={"url": url, "error": str(exc)})
    return scraped


def increase(before: Scrape, after: Scrape, names: Sequence[str]) -> dict[str, Counter[str]]:
    """How much each counter in ``names`` grew per shard from one scrape to the next, summed
    over the producers; a counter that went down means its producer restarted (all of it is
    new)."""
    delta = {name: Counter[str]() for name in names}
    for url, counts in after.items():
        for name, per_shard in delta.items():
            old = before.get(url, {}).get(name, Counter())
            for shard, value in counts.get(name, Counter()).items():
                per_shard[shard] += value - old[shard] if value >= old[shard] else value
    return delta


class ProducerSource:
    """Samples from the producers' per-shard counters, one per call to ``samples``."""

    RECORDS = PRODUCER["ShardKinesisRecordsPut"].prometheus
    BYTES = PRODUCER["ShardKinesisBytesPut"].prometheus
    THROTTLED = PRODUCER["ShardThrottled"].prometheus

    def __init__(
        self,
        urls: Sequence[str],
        fetch: Callable[[str], str] = _fetch,
        clock: Callable[[], float] = time.monotonic,
        keep: int = 1440,
        sample_seconds: float = 60.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._urls = list(urls)
        self._fetch = fetch
        self._clock = clock
        self._last: tuple[float, Scrape] | None = None
        self._samples: deque[Sample] = deque(maxlen=keep)
        # the samples' time is the wall clock in check intervals, not a count of this
        # process's checks: a restarted scaler's stored history stays comparable
        self._sample_seconds = sample_seconds
        self._wall = wall

    def samples(self, shards: Sequence[Shard], count: int) -> list[Sample]:
        now, scraped = self._clock(), scrape(self._urls, self._fetch)
        if self._last is not None:
            then, before = self._last
            seconds = max(now - then, 1e-3)
            delta = increase(before, scraped, (self.RECORDS, self.BYTES, self.THROTTLED))
            loads = {
                s: Load(delta[self.BYTES][s] / seconds, delta[self.RECORDS][s] / seconds)
                for s in set(delta[self.BYTES]) | set(delta[self.RECORDS])
            }
            open_ids = {s.shard_id for s in shards}
            per_shard = {s: load for s, load in loads.items() if s in open_ids}
            for shard_id in open_ids - set(per_shard):
                per_shard[shard_id] = Load()  # open, and no producer wrote to it
            total = sum(loads.values(), Load())
            throttled = sum(delta[self.THROTTLED].values())
            self._samples.append(Sample(self.now(), total, throttled, per_shard))
        # a producer that did not answer keeps its last counts: not counted again when it does
        self._last = (now, {**(self._last[1] if self._last else {}), **scraped})
        return list(self._samples)[-count:]

    def now(self) -> int:
        return int(self._wall() // self._sample_seconds)
