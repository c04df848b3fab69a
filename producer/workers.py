"""The whole server's metrics when uvicorn runs several worker processes (PRODUCER_WORKERS > 1).

Each worker is a process of its own, with its own collector and counters. ``python -m
producer`` gives its workers one directory (``PRODUCER_METRICS_DIR``, a temporary directory
removed when the server stops). Each worker writes its counts there (``worker-<pid>.json``,
replaced atomically) every ``PUBLISH_INTERVAL`` seconds, and before it answers ``GET
/metrics`` with the sum of every worker's file: its own counts are current, the others' at most
``PUBLISH_INTERVAL`` old. A worker that died stays in the sum with its last counts, so the
counters never go down (uvicorn starts its replacement under another pid).

The EMF lines are written by one worker at a time, with the whole server's counts: the one
holding the exclusive ``flock`` on ``emf.lock`` (the kernel releases it when that worker exits
or dies; another takes it at its next interval). What the last line counted is kept in
``emf-last.json``, so a new writer reports only what is new: CloudWatch sums the lines' counts.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import Counter
from pathlib import Path

from producer.metrics import ProducerMetrics

PUBLISH_INTERVAL = 1.0  # seconds
LOCK = "emf.lock"
LAST_EMF = "emf-last.json"


def _write(path: Path, text: str) -> None:
    """Replace ``path`` at once: a reader sees the old or the new content, never a part."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


class WorkerMetrics:
    """One worker's view of the server's metrics (see the module's docstring)."""

    def __init__(self, directory: Path, own: ProducerMetrics, pid: int | None = None) -> None:
        self.directory = directory
        self.own = own
        self.path = directory / f"worker-{os.getpid() if pid is None else pid}.json"
        self._lock: int | None = None

    def publish(self) -> None:
        """Write this worker's counts for the others."""
        _write(self.path, json.dumps(self.own.snapshot()))

    def totals(self) -> ProducerMetrics:
        """Every worker's counts summed, this worker's as of now."""
        self.publish()
        return ProducerMetrics.merged(
            json.loads(path.read_text()) for path in sorted(self.directory.glob("worker-*.json"))
        )

    def leads(self) -> bool:
        """Whether this worker writes the EMF lines: it holds the lock, or takes it now."""
        if self._lock is None:
            fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._lock = fd
        return True

    def emf(self, now: float | None = None) -> str | None:
        """The EMF line of the server's counts since the last line any worker wrote; None
        when another worker writes them."""
        if not self.leads():
            return None
        last_path = self.directory / LAST_EMF
        last: Counter[str] = Counter()
        if last_path.exists():
            last.update(json.loads(last_path.read_text()))
        line = self.totals().emf(now, since=last)
        _write(last_path, json.dumps(last))
        return line

    def release(self) -> None:
        """Stop writing the EMF lines (another worker takes over at its next interval)."""
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None
