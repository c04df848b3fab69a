"""One AWS call, summarized to what IAM needs, and the per-process log of them.

A log file (``<dir>/<source>-<pid>.json``) holds ``{"stack": {...}, "calls": [{"service",
"api", "operation", "params", "count"}]}``; ``service`` is who made the call (producer,
consumer, scaler), ``params`` only the parameters that name resources or condition keys.
The log is rewritten (atomically) when a new kind of call appears and at most every few
seconds otherwise, so a process killed with SIGKILL loses at most a few seconds of counts.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CALLS_DIR_ENV = "KINESIS_INGEST_AWS_CALLS_DIR"  # where the logs go; unset: nothing recorded
SERVICE_ENV = "KINESIS_INGEST_SERVICE"  # which service this process is

NAMING = (
    "StreamName",
    "StreamARN",
    "ConsumerName",
    "ConsumerARN",
    "TableName",
    "IndexName",
    "Namespace",
    "TopicArn",
    "ResourceId",
    "ServiceNamespace",
    "ScalableDimension",
)


def summarize(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of a request that IAM authorizes against: resource names, the tables
    of a batch or transaction (with each entry's kind), a metric namespace."""
    kept: dict[str, Any] = {k: params[k] for k in NAMING if isinstance(params.get(k), str)}
    if isinstance(params.get("RequestItems"), Mapping):
        kept["Tables"] = sorted(params["RequestItems"])
    if isinstance(params.get("TransactItems"), list):
        kept["TransactItems"] = sorted(
            {
                (kind, body["TableName"])
                for item in params["TransactItems"]
                for kind, body in item.items()
                if isinstance(body, Mapping)
            }
        )
    return kept


class CallLog:
    """Counts calls by (service, api, operation, params); thread-safe; writes ``path``."""

    def __init__(
        self, path: Path, stack: Mapping[str, Any] | None = None, every: float = 3.0
    ) -> None:
        self.path = path
        self.stack = dict(stack or {})
        self._every = every
        self._counts: Counter[tuple[str, str, str, str]] = Counter()
        self._lock = threading.Lock()
        self._written = 0.0

    def add(self, service: str, api: str, operation: str, params: Mapping[str, Any]) -> None:
        key = (service, api, operation, json.dumps(summarize(params), sort_keys=True))
        with self._lock:
            new = key not in self._counts
            self._counts[key] += 1
            if new or time.monotonic() - self._written > self._every:
                self._write()

    def flush(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        calls = [
            {"service": s, "api": a, "operation": o, "params": json.loads(p), "count": n}
            for (s, a, o, p), n in sorted(self._counts.items())
        ]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"stack": self.stack, "calls": calls}))
        temporary.replace(self.path)
        self._written = time.monotonic()


def read_logs(directory: Path) -> list[dict[str, Any]]:
    """Every call log under ``directory`` (recursively): their ``stack`` and ``calls``."""
    found = [json.loads(p.read_text()) for p in sorted(directory.rglob("*.json"))]
    return [log for log in found if isinstance(log, dict) and {"stack", "calls"} <= set(log)]
