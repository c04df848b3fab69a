"""The scaler container's health check: ``python -m scaler.health`` exits 1 when the check
loop is stuck.

The loop touches ``heartbeat_path`` when it starts and before every check. A check may wait
up to ``wait_active_seconds`` for a reshard to finish; a heartbeat older than that plus the
interval and a margin means a call that never returns: ECS replaces the task (a restart loses
nothing: the scaler's cool-offs, UpdateShardCount budget and last decision are in its state
item, ``scaler.state``; its reshards are in the stream).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from common.settings import load
from scaler.config import ScalerSettings, get_settings

MARGIN_SECONDS = 120.0


def limit(settings: ScalerSettings) -> float:
    return settings.check_interval_seconds + settings.wait_active_seconds + MARGIN_SECONDS


def problem(settings: ScalerSettings, now: float) -> str | None:
    """Why the scaler is unhealthy, or None."""
    path = Path(settings.heartbeat_path)
    try:
        age = now - path.stat().st_mtime
    except FileNotFoundError:
        return f"no heartbeat at {path}: the scaler has not started its loop"
    if age > limit(settings):
        return f"no check for {age:.0f} s (limit {limit(settings):.0f} s)"
    return None


def main(argv: list[str] | None = None) -> int:
    settings = load(ScalerSettings, "python -m scaler.health", __doc__, argv, get_settings)
    found = problem(settings, time.time())
    if found:
        sys.stderr.write(found + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
