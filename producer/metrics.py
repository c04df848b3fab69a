"""The producer's metrics, named like the KPL's: one registry, two outputs.

``prometheus()`` renders the Prometheus text format for ``GET /metrics`` (local use);
``emf()`` renders a CloudWatch Embedded Metric Format log line with the counts since the last
call (in AWS the log driver ships it and CloudWatch extracts the metrics).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from common.emf import emf_line
from common.metric_catalog import PRODUCER, Kind, Metric

# the metrics of the producer's EMF lines, counters and distributions, in the catalogue's order
COUNTERS = {m.name: m for m in PRODUCER if m.cloudwatch and m.kind is Kind.COUNTER}
DISTRIBUTIONS = {m.name: m for m in PRODUCER if m.cloudwatch and m.kind is Kind.DISTRIBUTION}
# the per-shard counters of the Prometheus text (what the scaler's producer source reads)
SHARD_RECORDS, SHARD_BYTES, SHARD_THROTTLED, ERRORS = (
    PRODUCER[name]
    for name in ("ShardKinesisRecordsPut", "ShardKinesisBytesPut", "ShardThrottled", "Errors")
)


@dataclass
class Distribution:
    count: int = 0
    total: float = 0.0
    maximum: float = 0.0

    def add(self, value: float, times: int = 1) -> None:
        self.count += times
        self.total += value * times
        self.maximum = max(self.maximum, value)


@dataclass
class ProducerMetrics:
    counters: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # ErrorsByCode
    distributions: dict[str, Distribution] = field(
        default_factory=lambda: {name: Distribution() for name in DISTRIBUTIONS}
    )
    # per shard, for the shard scaler's local metric source: Kinesis records and bytes put,
    # entries refused with ProvisionedThroughputExceeded
    shard_records: Counter[str] = field(default_factory=Counter)
    shard_bytes: Counter[str] = field(default_factory=Counter)
    shard_throttled: Counter[str] = field(default_factory=Counter)
    _last_emf: Counter[str] = field(default_factory=Counter)

    def count(self, name: str, value: int = 1) -> None:
        assert name in COUNTERS, name
        self.counters[name] += value

    def observe(self, name: str, value: float, times: int = 1) -> None:
        self.distributions[name].add(value, times)

    def observe_total(self, name: str, total: float, count: int, maximum: float) -> None:
        """``count`` values summing to ``total``, the largest ``maximum``."""
        dist = self.distributions[name]
        dist.count += count
        dist.total += total
        dist.maximum = max(dist.maximum, maximum)

    def response(self, status: int) -> None:
        """One answered record request (POST / or /batch) with HTTP ``status``."""
        counters = self.counters
        counters["Requests"] += 1
        if status >= 400:
            name = (
                "Responses503"
                if status == 503
                else "Responses5xx"
                if status >= 500
                else "Responses4xx"
            )
            counters[name] += 1

    def error(self, code: str) -> None:
        self.errors[code] += 1

    def shard_put(self, shard_id: str, size: int) -> None:
        self.shard_records[shard_id] += 1
        self.shard_bytes[shard_id] += size

    def prometheus(self) -> str:
        lines = []
        for name, m in COUNTERS.items():
            lines += _family(m, "counter")
            lines.append(f"{m.prometheus} {self.counters[name]}")
        for name, m in DISTRIBUTIONS.items():
            dist = self.distributions[name]
            lines += _family(m, "summary")
            lines += [f"{m.prometheus}_count {dist.count}", f"{m.prometheus}_sum {dist.total:g}"]
        for m, counts in (
            (ERRORS, self.errors),
            (SHARD_RECORDS, self.shard_records),
            (SHARD_BYTES, self.shard_bytes),
            (SHARD_THROTTLED, self.shard_throttled),
        ):
            (label,) = m.dimensions[0]
            lines += _family(m, "counter")
            lines += [f'{m.prometheus}{{{label}="{k}"}} {n}' for k, n in sorted(counts.items())]
        return "\n".join(lines) + "\n"

    def snapshot(self) -> dict[str, Any]:
        """Every count, as JSON-ready values (``merged`` sums snapshots)."""
        return {
            "counters": dict(self.counters),
            "errors": dict(self.errors),
            "distributions": {name: asdict(d) for name, d in self.distributions.items()},
            "shard_records": dict(self.shard_records),
            "shard_bytes": dict(self.shard_bytes),
            "shard_throttled": dict(self.shard_throttled),
        }

    @classmethod
    def merged(cls, snapshots: Iterable[dict[str, Any]]) -> ProducerMetrics:
        """The totals of several processes' snapshots: counts summed, maxima the largest."""
        total = cls()
        for snap in snapshots:
            for name in ("counters", "errors", "shard_records", "shard_bytes", "shard_throttled"):
                getattr(total, name).update(snap[name])
            for name, dist in snap["distributions"].items():
                if name in total.distributions:
                    total.observe_total(name, dist["total"], dist["count"], dist["maximum"])
        return total

    def emf(self, now: float | None = None, since: Counter[str] | None = None) -> str:
        """An EMF line with the counters' increase since the previous call (or since the counts
        in ``since``, which it then updates), and the averages."""
        last = self._last_emf if since is None else since
        values: dict[Metric, float | list[float]] = {}
        for name, metric in COUNTERS.items():
            values[metric] = self.counters[name] - last[name]
            last[name] = self.counters[name]
        for name, dist in self.distributions.items():
            values[DISTRIBUTIONS[name]] = dist.total / dist.count if dist.count else 0.0
        stamp = now if now is not None else time.time()
        return emf_line(values, PRODUCER.dimensions, stamp)


def _family(metric: Metric, kind: str) -> list[str]:
    """The HELP and TYPE lines of a Prometheus metric family."""
    return [f"# HELP {metric.prometheus} {metric.meaning}", f"# TYPE {metric.prometheus} {kind}"]
