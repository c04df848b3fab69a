"""The record processor's metrics, as CloudWatch EMF lines on stderr.

A record processor's stdout is the KCL protocol; its stderr is copied by the daemon, line for
line, to the container's output, where the awslogs driver ships it and CloudWatch extracts the
metrics. Each shard's processor emits its own line every ``interval`` seconds (and a last one at
shutdown) under the dimension ``Service=consumer``: counts add up across shards, and the
latencies' Maximum statistic is the worst shard.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

from common.emf import emf_line

NAMESPACE = "KinesisIngest/Consumer"
UNITS = {
    "RecordsWritten": "Count",  # items put to the records table
    "RecordsQuarantined": "Count",  # poison records put to the quarantine table
    "WriteRetries": "Count",  # BatchWriteItem calls retried (throttling, UnprocessedItems)
    "BatchWriteLatency": "Milliseconds",  # mean time to write one processRecords batch
    "BatchWriteLatencyMax": "Milliseconds",
    "MillisBehindLatest": "Milliseconds",  # the largest the KCL reported in the interval
    "EndToEndLatency": "Milliseconds",  # mean of stored_at - ingested_at (producer took it)
    "EndToEndLatencyMax": "Milliseconds",
}


class ConsumerMetrics:
    """Sums over the current interval; ``batch`` adds one processRecords call's numbers."""

    def __init__(
        self, out: IO[str], interval: float = 60.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._out = out
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._reset()

    def _reset(self) -> None:
        self.written = self.quarantined = self.retries = self.batches = 0
        self.write_ms = self.write_ms_max = 0.0
        self.behind_ms = 0
        self.latency_count = 0
        self.latency_ms = self.latency_ms_max = 0.0

    def batch(
        self,
        written: int,
        quarantined: int,
        write_ms: float,
        millis_behind: int | None,
        end_to_end_ms: list[float],
        retries: int = 0,
    ) -> None:
        self.written += written
        self.quarantined += quarantined
        self.retries += retries
        self.batches += 1
        self.write_ms += write_ms
        self.write_ms_max = max(self.write_ms_max, write_ms)
        self.behind_ms = max(self.behind_ms, millis_behind or 0)
        if end_to_end_ms:
            self.latency_count += len(end_to_end_ms)
            self.latency_ms += sum(end_to_end_ms)
            self.latency_ms_max = max(self.latency_ms_max, max(end_to_end_ms))
        if self._clock() - self._started >= self._interval:
            self.emit()

    def emit(self) -> None:
        """Write the interval's line (none when nothing happened) and start a new interval."""
        now = self._clock()
        if self.batches:
            values = {
                "RecordsWritten": self.written,
                "RecordsQuarantined": self.quarantined,
                "WriteRetries": self.retries,
                "BatchWriteLatency": round(self.write_ms / self.batches, 3),
                "BatchWriteLatencyMax": round(self.write_ms_max, 3),
                "MillisBehindLatest": self.behind_ms,
                "EndToEndLatency": round(self.latency_ms / max(self.latency_count, 1), 3),
                "EndToEndLatencyMax": round(self.latency_ms_max, 3),
            }
            metrics = {name: (value, UNITS[name]) for name, value in values.items()}
            self._out.write(emf_line(NAMESPACE, {"Service": "consumer"}, metrics, now) + "\n")
            self._out.flush()
        self._started = now
        self._reset()
