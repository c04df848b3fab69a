"""The scaler's loop: every check, read the stream and its load, decide, act (unless dry run).

Every decision is logged with its reason (JSON lines on stderr) and published as metrics: an
EMF line on stdout (the awslogs driver ships it; CloudWatch extracts OpenShards, TargetShards,
Utilisation, ScalingOperations, ThrottledWrites under ``KinesisIngest/Scaler``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from botocore.exceptions import ClientError

from common.emf import emf_line
from scaler.model import Action, Decision
from scaler.policy import Operation, Policy
from scaler.sources import MetricSource
from scaler.stream import StreamAdmin

log = logging.getLogger("scaler")

NAMESPACE = "KinesisIngest/Scaler"
METRICS = {"OpenShards": "Count", "TargetShards": "Count", "Utilisation": "Percent",
           "ScalingOperations": "Count", "ThrottledWrites": "Count"}  # fmt: skip


class Scaler:
    def __init__(self, admin: StreamAdmin, source: MetricSource, policy: Policy, *,
                 dry_run: bool = False, wait_active_seconds: float = 900.0,
                 metrics_out: IO[str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.admin, self.source, self.policy = admin, source, policy
        self.dry_run = dry_run
        self.wait_active_seconds = wait_active_seconds
        self.history: list[Operation] = []
        self._metrics_out = metrics_out
        self._clock = clock
        self._updates_refused_at: int | None = None

    def check(self) -> Decision:
        """One round: returns the decision taken (HOLD when the stream is busy)."""
        config = self.policy.config
        window = max(config.scale_up_after, config.scale_down_after)
        shards = self.admin.open_shards()
        samples = self.source.samples(shards, window)
        now = self.source.now()
        if self._updates_refused_at is not None and now - self._updates_refused_at >= (
            config.update_window
        ):
            self.policy.update_allowed, self._updates_refused_at = True, None
        status = self.admin.status()
        if status != "ACTIVE":
            decision = Decision(Action.HOLD, f"stream is {status}", len(shards), len(shards))
        elif not samples:
            decision = Decision(Action.HOLD, "no load samples yet", len(shards), len(shards))
        else:
            decision = self.policy.decide(now, shards, samples, self.history)
        applied = decision.action is not Action.HOLD and not self.dry_run
        log.info("decision: %s (%s)", decision.action, decision.reason,
                 extra={"action": decision.action, "current": decision.current,
                        "target": decision.target, "shards": list(decision.shards),
                        "dry_run": self.dry_run, "applied": applied})  # fmt: skip
        if applied:
            self._apply(now, decision)
        last = samples[-1] if samples else None
        self._publish(decision, last.stream.utilisation(len(shards)) if last else 0.0,
                      last.throttled if last else 0, applied)  # fmt: skip
        return decision

    def _apply(self, now: int, decision: Decision) -> None:
        try:
            self.admin.apply(decision)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if decision.action is Action.UPDATE_SHARD_COUNT and code == "LimitExceededException":
                log.warning("UpdateShardCount refused (%s): split and merge until the budget"
                            " returns", exc)  # fmt: skip
                self.policy.update_allowed, self._updates_refused_at = False, now
                return
            if code in ("ResourceInUseException", "LimitExceededException"):
                log.warning("resharding refused for now: %s", exc)
                return
            raise
        self.history.append(Operation(now, decision))
        self.admin.wait_active(self.wait_active_seconds)

    def _publish(self, decision: Decision, utilisation: float, throttled: int,
                 applied: bool) -> None:  # fmt: skip
        if self._metrics_out is None:
            return
        values = {"OpenShards": decision.current, "TargetShards": decision.target,
                  "Utilisation": round(utilisation * 100, 2),
                  "ScalingOperations": int(applied), "ThrottledWrites": throttled}  # fmt: skip
        metrics = {name: (value, METRICS[name]) for name, value in values.items()}
        line = emf_line(NAMESPACE, {"StreamName": self.admin.stream_name}, metrics,
                        self._clock(), {"Action": str(decision.action)})  # fmt: skip
        self._metrics_out.write(line + "\n")
        self._metrics_out.flush()

    def run(self, interval: float, stop: threading.Event, heartbeat: Path | None = None) -> None:
        """Check every ``interval`` seconds until ``stop`` is set; a failed check is logged
        and retried at the next interval (the scaler must outlive a throttled API).
        ``heartbeat`` is touched at the start and after every check (``scaler.health``)."""
        while not stop.is_set():
            if heartbeat is not None:
                heartbeat.touch()
            started = time.monotonic()
            try:
                self.check()
            except Exception:
                log.exception("check failed")
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
