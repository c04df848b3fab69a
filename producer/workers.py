"""Several uvicorn worker processes (PRODUCER_WORKERS > 1): the whole server's metrics, and a
listening socket for each worker (``WorkerAddress``).

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
import socket
from collections import Counter
from pathlib import Path
from typing import Any

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


# --- one listening socket per worker ------------------------------------------------------------


def bound_socket(host: str, port: int, *, reuse_port: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``SO_REUSEADDR``, as uvicorn binds; with
    ``SO_REUSEPORT`` unless told otherwise), not yet listening."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class WorkerAddress(socket.socket):
    """The address ``python -m producer`` gives uvicorn's workers, in place of one shared
    listening socket.

    uvicorn binds one socket in its supervisor and every worker accepts from it: whichever
    worker wakes first takes most of a burst of new connections (measured with two workers
    and 256 connections: 0.38 and 0.94 of a core busy in one run, 0.91 and 0.91 in another).
    This one is bound with ``SO_REUSEPORT`` in the supervisor and never listens there (it
    only holds the port, so that a port in use fails at startup). Sent to a worker (uvicorn
    pickles the sockets it passes), it arrives as a new socket of that worker's own, bound to
    the same address with ``SO_REUSEPORT``, and the kernel spreads new connections across the
    workers' sockets (socket(7), ``SO_REUSEPORT``: a distinct listener socket for each thread
    "provides improved load distribution as compared to ... having multiple threads that
    compete to accept(2) from the same socket").
    """

    @classmethod
    def bind_to(cls, host: str, port: int) -> WorkerAddress:
        """Raises ``OSError`` (EADDRINUSE) when something listens on the port already: with
        ``SO_REUSEPORT`` alone, a second server of the same user would share it silently."""
        if port:
            bound_socket(host, port, reuse_port=False).close()
        held = bound_socket(host, port)
        try:
            return cls(held.family, held.type, held.proto, fileno=held.detach())
        except BaseException:
            held.close()
            raise

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        host, port = self.getsockname()[:2]
        return bound_socket, (host, port)
