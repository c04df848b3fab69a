"""The record processor's metrics, as CloudWatch EMF lines on stderr.

A record processor's stdout is the KCL protocol; its stderr is copied by the daemon, line for
line, to the container's output, where the awslogs driver ships it and CloudWatch extracts the
metrics. Each shard's processor emits its own line every ``interval`` seconds (and a last one at
shutdown) under the dimension ``Service=consumer``: counts add up across shards, and the
latencies' Maximum statistic is the worst shard. ``EndToEndLatency`` is a list of up to 100
values (EMF's limit), a uniform sample of the interval's records, from which CloudWatch computes
percentiles (p50, p99).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import IO

from common.emf import emf_line
from common.metric_catalog import CONSUMER

SAMPLE_SIZE = 100  # values per EMF metric at most


class ConsumerMetrics:
    """Sums over the current interval; ``batch`` adds one processRecords call's numbers.

    A line is written when a batch finds the interval over, and, once ``start_timer`` ran, by
    a timer thread when none comes (the KCL calls nothing on a quiet shard: without the timer
    a burst's counts would wait for the next record). Both hold the same lock.
    """

    def __init__(
        self, out: IO[str], interval: float = 60.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._out = out
        self._interval = interval
        self._clock = clock
        self._random = random.Random()
        self._started = clock()
        self._lock = threading.Lock()
        self._reset()

    def start_timer(self) -> None:
        """Emit due lines from a daemon thread too (the record processor calls this)."""

        def tick() -> None:
            while True:
                time.sleep(min(self._interval, 5.0) / 2)
                with self._lock:
                    if self.batches and self._clock() - self._started >= self._interval:
                        self._emit_locked()

        threading.Thread(target=tick, name="consumer-metrics", daemon=True).start()

    def _reset(self) -> None:
        self.written = self.quarantined = self.superseded = self.retries = self.batches = 0
        self.write_failures = 0
        self.write_ms = self.write_ms_max = 0.0
        self.behind_ms = 0
        self.latency_count = 0
        self.latency_ms_max = 0.0
        self.latency_sample: list[float] = []

    def batch(
        self,
        written: int,
        quarantined: int,
        write_ms: float,
        millis_behind: int | None,
        end_to_end_ms: list[float],
        retries: int = 0,
        superseded: int = 0,
    ) -> None:
        with self._lock:
            self.written += written
            self.quarantined += quarantined
            self.superseded += superseded
            self.retries += retries
            self.batches += 1
            self.write_ms += write_ms
            self.write_ms_max = max(self.write_ms_max, write_ms)
            self.behind_ms = max(self.behind_ms, millis_behind or 0)
            if end_to_end_ms:
                self._sample(end_to_end_ms)
                self.latency_ms_max = max(self.latency_ms_max, max(end_to_end_ms))
            if self._clock() - self._started >= self._interval:
                self._emit_locked()

    def _sample(self, values: list[float]) -> None:
        """Reservoir sampling: every value seen in the interval is kept with equal chance."""
        sample = self.latency_sample
        for value in values:
            self.latency_count += 1
            if len(sample) < SAMPLE_SIZE:
                sample.append(value)
            else:
                slot = self._random.randrange(self.latency_count)
                if slot < SAMPLE_SIZE:
                    sample[slot] = value

    def write_failed(self) -> None:
        """A batch could not be stored (not for a record's sake): the processor is about to
        exit for a replay, so the line goes out now, with ``WriteFailures`` = 1."""
        with self._lock:
            self.write_failures += 1
            self._emit_locked()

    def emit(self) -> None:
        """Write the interval's line (none when nothing happened) and start a new interval."""
        with self._lock:
            self._emit_locked()

    def _emit_locked(self) -> None:
        now = self._clock()
        if self.batches or self.write_failures:
            values: dict[str, float | list[float]] = {
                "RecordsWritten": self.written,
                "RecordsQuarantined": self.quarantined,
                "RecordsSuperseded": self.superseded,
                "WriteFailures": self.write_failures,
                "WriteRetries": self.retries,
                "BatchWriteLatency": round(self.write_ms / max(self.batches, 1), 3),
                "BatchWriteLatencyMax": round(self.write_ms_max, 3),
                "MillisBehindLatest": self.behind_ms,
                "EndToEndLatency": [round(v, 1) for v in self.latency_sample],
                "EndToEndLatencyMax": round(self.latency_ms_max, 3),
            }
            if not self.latency_sample:  # no record carried its ingest time: no latency
                del values["EndToEndLatency"], values["EndToEndLatencyMax"]
            metrics = {CONSUMER[name]: value for name, value in values.items()}
            self._out.write(emf_line(metrics, CONSUMER.dimensions, now) + "\n")
            self._out.flush()
        self._started = now
        self._reset()
