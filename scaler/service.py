"""The scaler's loop: every check, read the stream and its load, decide, act (unless dry run).

Every decision is logged with its reason (JSON lines on stderr) and published as metrics: an
EMF line on stdout (the awslogs driver ships it; CloudWatch extracts OpenShards, TargetShards,
Utilisation, ScalingOperations, ThrottledWrites under ``KinesisIngest/Scaler``). Operations,
refusals and dry-run decisions also go to the notifier (SNS).

What a restart must not forget (the operations of the last 24 h: cool-offs and the
UpdateShardCount budget; a refusal by AWS; the last decision; the consumer's maximum) is in the
state store (``scaler.state``), read at the first check and written at every check. An
operation is written *before* its call, so a scaler killed during the call still counts it;
a call AWS refuses is taken out again. A dry run reads the state and writes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO

from botocore.exceptions import BotoCoreError, ClientError

from common.emf import emf_line
from common.metric_catalog import SCALER
from scaler.model import Action, Decision
from scaler.notify import ConsumerCapacity, Notifier, message
from scaler.policy import Operation, Policy
from scaler.sources import MetricSource
from scaler.state import MemoryStateStore, ScalerState, StateConflict, StateStore
from scaler.stream import StreamAdmin

log = logging.getLogger("scaler")

REFUSALS = ("ResourceInUseException", "LimitExceededException")


class Scaler:
    def __init__(self, admin: StreamAdmin, source: MetricSource, policy: Policy, *,
                 dry_run: bool = False, wait_active_seconds: float = 900.0,
                 metrics_out: IO[str] | None = None,
                 clock: Callable[[], float] = time.time,
                 state: StateStore | None = None, notifier: Notifier | None = None,
                 consumers: ConsumerCapacity | None = None,
                 sample_seconds: float = 60.0) -> None:  # fmt: skip
        self.admin, self.source, self.policy = admin, source, policy
        self.dry_run = dry_run
        self.wait_active_seconds = wait_active_seconds
        self.store: StateStore = state or MemoryStateStore(admin.stream_name, sample_seconds)
        self.notifier, self.consumers = notifier, consumers
        self.state: ScalerState | None = None  # read from the store at the first check
        self._metrics_out = metrics_out
        self._clock = clock
        self._last_notified: tuple[str, int, str] | None = None

    @property
    def history(self) -> list[Operation]:
        return list(self.state.operations) if self.state else []

    def check(self) -> Decision:
        """One round: returns the decision taken (HOLD when the stream is busy)."""
        config = self.policy.config
        if self.state is None:
            self.state = self.store.load()
            log.info("scaler state loaded", extra={"operations": len(self.state.operations),
                                                   "version": self.state.version})  # fmt: skip
        window = max(config.scale_up_after, config.scale_down_after)
        shards = self.admin.open_shards()
        samples = self.source.samples(shards, window)
        now = self.source.now()
        refused_at = self.state.updates_refused_at
        if refused_at is not None and now - refused_at >= config.update_window:
            self.state = replace(self.state, updates_refused_at=None)
        self.policy.update_allowed = self.state.updates_refused_at is None
        self._follow(len(shards))
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
        outcome, error = None, ""
        if applied:
            outcome, error = self._apply(now, decision)
            applied = outcome == "applied"
        elif decision.action is not Action.HOLD:
            outcome = "dry_run"
        elif decision.refused:
            outcome = "held"
        self._remember(decision, now)
        if outcome is not None:
            self._notify(decision, outcome, now, error)
        last = samples[-1] if samples else None
        self._publish(decision, last.stream.utilisation(len(shards)) if last else 0.0,
                      last.throttled if last else 0, applied)  # fmt: skip
        return decision

    # ---- acting ---------------------------------------------------------------------------
    def _apply(self, now: int, decision: Decision) -> tuple[str, str]:
        """Record the operation, then call; ``("applied", "")`` or ``("refused", why)``."""
        assert self.state is not None
        before = self.state
        self._save(replace(before, operations=(*before.operations, Operation(now, decision))))
        try:
            self.admin.apply(decision)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            undone = replace(self.state, operations=before.operations)
            if decision.action is Action.UPDATE_SHARD_COUNT and code == "LimitExceededException":
                log.warning("UpdateShardCount refused (%s): split and merge until the budget"
                            " returns", exc)  # fmt: skip
                self._save(replace(undone, updates_refused_at=now))
                self.policy.update_allowed = False
                return "refused", str(exc)
            self._save(undone)
            if code in REFUSALS:
                log.warning("resharding refused for now: %s", exc)
                return "refused", str(exc)
            raise
        self.admin.wait_active(self.wait_active_seconds)
        self._follow(decision.target)
        return "applied", ""

    def _follow(self, open_shards: int) -> None:
        """The consumer's maximum task count to the open shard count (not in a dry run)."""
        assert self.state is not None
        if self.consumers is None or self.dry_run:
            return
        wanted = self.consumers.wanted(open_shards)
        if wanted == self.state.consumer_max:
            return
        try:
            self.consumers.set_max(wanted)
        except (BotoCoreError, ClientError) as exc:  # tried again at the next check
            log.error("cannot set the consumer's maximum task count",
                      extra={"wanted": wanted, "error": str(exc)})  # fmt: skip
            return
        log.info("consumer maximum tasks: %s -> %s", self.state.consumer_max, wanted,
                 extra={"open_shards": open_shards, "consumer_max": wanted})  # fmt: skip
        self.state = replace(self.state, consumer_max=wanted)

    # ---- remembering and telling ----------------------------------------------------------
    def _save(self, state: ScalerState) -> None:
        try:
            self.state = self.store.save(state)
        except StateConflict:
            self.state = None  # read again at the next check; act on nothing unseen
            raise

    def _remember(self, decision: Decision, now: int) -> None:
        assert self.state is not None
        c = self.policy.config
        keep = max(c.update_window, c.cool_off_after_up, c.cool_off_after_down) + 1
        state = replace(self.state.pruned(now, keep), last_decision=decision,
                        checked_at=self._clock())  # fmt: skip
        if self.dry_run:
            self.state = state  # a dry run writes nothing
        else:
            self._save(state)

    def _notify(self, decision: Decision, outcome: str, now: int, error: str) -> None:
        if self.notifier is None:
            return
        key = (str(decision.action), decision.target, outcome)
        if outcome in ("dry_run", "held") and key == self._last_notified:
            return  # the same standing decision: told once
        self._last_notified = key
        assert self.state is not None
        window = self.policy.config.update_window
        updates = sum(1 for op in self.state.operations
                      if op.decision.action is Action.UPDATE_SHARD_COUNT
                      and now - op.minute < window)  # fmt: skip
        details: dict[str, object] = {
            "dry_run": self.dry_run,
            "consumer_max_tasks": self.state.consumer_max,
            "update_shard_count_calls_24h": updates,
        }
        if error:
            details["error"] = error
        subject, body = message(self.admin.stream_name, decision, outcome, self._clock(), **details)
        self.notifier.publish(subject, body)

    def _publish(self, decision: Decision, utilisation: float, throttled: int,
                 applied: bool) -> None:  # fmt: skip
        if self._metrics_out is None:
            return
        values = {"OpenShards": decision.current, "TargetShards": decision.target,
                  "Utilisation": round(utilisation * 100, 2),
                  "ScalingOperations": int(applied), "ThrottledWrites": throttled}  # fmt: skip
        metrics = {SCALER[name]: value for name, value in values.items()}
        dimensions = {"StreamName": self.admin.stream_name}
        line = emf_line(metrics, dimensions, self._clock(), {"Action": str(decision.action)})
        self._metrics_out.write(line + "\n")
        self._metrics_out.flush()

    def run(self, interval: float, stop: threading.Event, heartbeat: Path | None = None) -> None:
        """Check every ``interval`` seconds until ``stop`` is set; a failed check is logged
        and retried at the next interval (the scaler must outlive a throttled API).
        ``heartbeat`` is touched before every check (``scaler.health``)."""
        while not stop.is_set():
            if heartbeat is not None:
                heartbeat.touch()
            started = time.monotonic()
            try:
                self.check()
            except Exception:
                log.exception("check failed")
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
