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

NAMESPACE = "KinesisIngest/Producer"

# name -> (CloudWatch unit, help); counters unless listed in DISTRIBUTIONS
COUNTERS = {
    "UserRecordsReceived": ("Count", "user records taken by the producer"),
    "UserRecordsPut": ("Count", "user records Kinesis accepted"),
    "UserRecordsNotAccepted": ("Count", "user records answered 503 after the record TTL"),
    "UserRecordsOverloaded": ("Count", "user records refused with 503 by back-pressure"),
    "RequestsOverloaded": (
        "Count",
        "requests refused with 503 before their body was read or parsed (memory bound)",
    ),
    "KinesisRecordsPut": ("Count", "Kinesis records (aggregates) accepted"),
    "PutRecordsCalls": ("Count", "PutRecords requests made"),
    "Retries": ("Count", "PutRecords entries or calls retried"),
    "Reroutes": ("Count", "aggregates re-sent after a reshard"),
    "ShardMapRefreshes": ("Count", "shard maps adopted after a reshard"),
    "KinesisRecordsRateLimited": ("Count", "Kinesis records held back by the per-shard rate limit"),
    "Requests": ("Count", "requests to the record endpoints (POST / and /batch)"),
    "Responses4xx": ("Count", "record requests refused as bad input (4xx)"),
    "Responses503": ("Count", "record requests answered 503 (overloaded, not accepted, draining)"),
    "Responses5xx": ("Count", "record requests answered with another 5xx (a bug)"),
}
DISTRIBUTIONS = {
    "BufferingTime": ("Milliseconds", "time from taking a record to Kinesis accepting it"),
    "UserRecordsPerKinesisRecord": ("Count", "user records in each accepted Kinesis record"),
}


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
        for name, (_, text) in COUNTERS.items():
            metric = f"producer_{_snake(name)}_total"
            lines += [f"# HELP {metric} {text}", f"# TYPE {metric} counter",
                      f"{metric} {self.counters[name]}"]  # fmt: skip
        for name, (_, text) in DISTRIBUTIONS.items():
            metric, dist = f"producer_{_snake(name)}", self.distributions[name]
            lines += [f"# HELP {metric} {text}", f"# TYPE {metric} summary",
                      f"{metric}_count {dist.count}", f"{metric}_sum {dist.total:g}"]  # fmt: skip
        lines += ["# HELP producer_errors_total PutRecords errors by code",
                  "# TYPE producer_errors_total counter"]  # fmt: skip
        lines += [
            f'producer_errors_total{{code="{c}"}} {n}' for c, n in sorted(self.errors.items())
        ]
        for metric, counts, text in (
            ("producer_shard_kinesis_records_put_total", self.shard_records, "records put"),
            ("producer_shard_kinesis_bytes_put_total", self.shard_bytes, "bytes put"),
            ("producer_shard_throttled_total", self.shard_throttled, "entries throttled"),
        ):
            lines += [f"# HELP {metric} Kinesis {text} by shard", f"# TYPE {metric} counter"]
            lines += [f'{metric}{{shard="{s}"}} {n}' for s, n in sorted(counts.items())]
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
        values: dict[str, float] = {}
        for name in COUNTERS:
            values[name] = self.counters[name] - last[name]
            last[name] = self.counters[name]
        for name, dist in self.distributions.items():
            values[name] = dist.total / dist.count if dist.count else 0.0
        units = {name: unit for name, (unit, _) in (COUNTERS | DISTRIBUTIONS).items()}
        metrics = {name: (value, units[name]) for name, value in values.items()}
        stamp = now if now is not None else time.time()
        return emf_line(NAMESPACE, {"Service": "producer"}, metrics, stamp)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
