"""The consumer container's health check: ``python -m consumer.health`` exits 1 when a record
processor is stuck.

Each record processor keeps a heartbeat file (``<heartbeat_dir>/<shard>.json``) saying since
when it has been busy with a batch (``null`` between batches). A processor gives up on its own
once ``write_deadline_seconds`` pass (it exits without checkpointing so the KCL replays); one
busy much longer than that is hung (a call that never returns, a deadlock), and the task is
better replaced: ECS restarts it and another worker replays the shard from its checkpoint. An
idle processor is healthy, however long the stream is quiet.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common.settings import load
from consumer.config import ConsumerSettings, get_settings

STUCK_MARGIN_SECONDS = 60.0  # beyond the write deadline, before a busy processor is stuck


class Heartbeat:
    """One record processor's heartbeat file; written atomically (temp file + rename)."""

    def __init__(
        self, directory: str | Path, shard_id: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._dir = Path(directory)
        self._path = self._dir / f"{shard_id}.json"
        self._clock = clock

    def busy(self) -> None:
        self._write({"busy_since": self._clock()})

    def idle(self) -> None:
        self._write({"busy_since": None})

    def gone(self) -> None:
        """The processor ends (lease lost, shard ended, shutdown): nothing left to watch."""
        self._path.unlink(missing_ok=True)

    def _write(self, state: dict[str, float | None]) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        temp = self._path.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps(state))
        temp.replace(self._path)


def stuck(directory: str | Path, limit_seconds: float, now: float) -> list[str]:
    """The shards whose processor has been busy with one batch for more than the limit."""
    found = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            since = json.loads(path.read_text()).get("busy_since")
        except (OSError, ValueError):
            continue  # replaced or removed while read: the processor is alive
        if since is not None and now - since > limit_seconds:
            found.append(path.stem)
    return found


def main(argv: list[str] | None = None) -> int:
    settings = load(ConsumerSettings, "python -m consumer.health", __doc__, argv, get_settings)
    limit = settings.write_deadline_seconds + STUCK_MARGIN_SECONDS
    hung = stuck(settings.heartbeat_dir, limit, time.time())
    if hung:
        sys.stderr.write(f"record processors busy with one batch for over {limit:.0f} s: {hung}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
