"""The scaling policy: from the open shards, recent load and past operations to one decision.

Pure (no I/O, no clock): the service, the simulation and the tests all drive the same code.

Rules, in order (one operation per check; the stream is UPDATING while one runs):

1. **Scale up** when the stream has been above ``scale_up_pct`` of its capacity (or throttled)
   for ``scale_up_after`` minutes: to enough shards for the window's peak at ``target_pct``.
   A change of at least ``update_min_step`` shards uses UpdateShardCount while today's budget
   lasts (AWS allows a limited number of calls per rolling 24 h, and at most double / half the
   open count per call); smaller changes, and any change once the budget is spent, split the
   hottest shard instead.
2. **Split a hot shard**: a shard above ``scale_up_pct`` of one shard's limit for
   ``scale_up_after`` minutes is split at its hash midpoint, whatever the stream's total (one
   hot key). Needs per-shard loads; without them loads are estimated from hash-range widths.
3. **Scale down**, not sooner than ``cool_off_after_up`` minutes after an increase: when the
   whole stream has stayed below ``scale_down_pct`` for ``scale_down_after`` minutes and its
   shards are uniform, UpdateShardCount to the target (keeping ``reserved_updates`` calls of
   the budget for scale-ups); otherwise **merge** the adjacent pair whose combined peak over
   that window is lowest, if it is below ``merge_below_pct`` — so a merged shard starts well
   under the scale-up threshold and cannot flap back.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from common.kinesis import Shard, adjacent
from scaler.model import Action, Decision, Load, Sample


@dataclass(frozen=True)
class Step:
    """How far one scale-up or scale-down goes: ``auto`` (to the load's target), a count of
    shards, or a percentage of the open shards (Kinesis Scaling Utils' scaleCount/scalePct)."""

    kind: str = "auto"  # auto | count | percent
    value: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Step:
        text = text.strip()
        if text == "auto":
            return cls()
        kind = "percent" if text.endswith("%") else "count"
        try:
            value = float(text.removesuffix("%"))
        except ValueError:
            value = math.nan
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"step must be 'auto', a positive count or a percentage: {text!r}")
        return cls(kind, value)

    def apply(self, current: int, target: int, direction: int) -> int:
        if self.kind == "auto":
            return target
        size = self.value if self.kind == "count" else current * self.value / 100
        return current + direction * max(1, math.ceil(size))


@dataclass(frozen=True)
class PolicyConfig:
    min_shards: int = 1
    max_shards: int = 64
    scale_up_pct: float = 0.90
    scale_up_after: int = 2  # minutes
    target_pct: float = 0.75
    scale_down_pct: float = 0.65
    scale_down_after: int = 5  # minutes
    merge_below_pct: float = 0.75
    cool_off_after_up: int = 30  # minutes before any scale-down
    cool_off_after_down: int = 2  # minutes between scale-downs
    max_updates_per_day: int = 10
    reserved_updates: int = 2  # of the daily UpdateShardCount budget, kept for scale-ups
    update_min_step: int = 2
    update_window: int = 24 * 60  # samples in AWS's rolling 24 h for the UpdateShardCount budget
    unit: str = "min"  # what one sample is, in the decisions' reasons
    up_step: Step = Step()
    down_step: Step = Step()

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.min_shards <= self.max_shards:
            problems.append("need 1 <= min_shards <= max_shards")
        if not 0 < self.scale_down_pct < self.target_pct < self.scale_up_pct <= 1:
            problems.append("need 0 < scale_down_pct < target_pct < scale_up_pct <= 1")
        if not 0 < self.merge_below_pct < self.scale_up_pct:
            problems.append("need 0 < merge_below_pct < scale_up_pct")
        if self.scale_up_after < 1 or self.scale_down_after < 1:
            problems.append("scale_up_after and scale_down_after are at least 1 minute")
        if not 0 <= self.reserved_updates < self.max_updates_per_day:
            problems.append("need 0 <= reserved_updates < max_updates_per_day")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True, slots=True)
class Operation:
    """A resharding operation the scaler started (for budgets and cool-offs)."""

    minute: int
    decision: Decision


class Policy:
    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        # False after AWS refused UpdateShardCount (LimitExceeded): split and merge instead
        self.update_allowed = True

    def decide(
        self,
        now: int,
        shards: Sequence[Shard],
        samples: Sequence[Sample],
        history: Sequence[Operation] = (),
    ) -> Decision:
        """The next operation for a stream that is ACTIVE with ``shards`` open, given the
        samples up to ``now`` (oldest first) and the operations done so far."""
        shards = sorted(shards, key=lambda s: s.start)
        return (
            self._scale_up(now, shards, samples, history)
            or self._scale_down(now, shards, samples, history)
            or self._hold(shards, "load within thresholds")
        )

    # -- scale up ---------------------------------------------------------------------------

    def _scale_up(
        self, now: int, shards: list[Shard], samples: Sequence[Sample], history: Sequence[Operation]
    ) -> Decision | None:
        c, n = self.config, len(shards)
        window = samples[-c.scale_up_after :]
        if len(window) < c.scale_up_after:
            return None
        # Over the limit in the last minute means throttling now: act without waiting.
        if samples[-1].stream.utilisation(n) > 1 or samples[-1].throttled:
            window = samples[-1:]
        busy = all(s.stream.utilisation(n) > c.scale_up_pct for s in window)
        throttled = all(s.throttled > 0 for s in window)
        loads = {s.shard_id: _loads(s, window) for s in shards}
        hot = [s for s in shards if _all_above(loads[s.shard_id], len(window), c.scale_up_pct)]
        if not (busy or throttled or hot):
            return None
        unseen = samples[-1].shards and any(s.shard_id not in samples[-1].shards for s in shards)
        if throttled and not (busy or hot) and unseen:
            return self._hold(shards, "throttled; waiting for the new shards' first metrics")
        if n >= c.max_shards:
            return self._hold(shards, f"at max_shards ({c.max_shards}) under load", refused=True)
        peak = max(s.stream.utilisation() for s in window)
        if busy or (throttled and not hot):  # throttling on known hot shards: split those
            wanted = max(n + 1, math.ceil(peak / c.target_pct))
            target = min(c.max_shards, c.up_step.apply(n, wanted, +1), 2 * n)
            why = (
                f"stream at {_pct(min(s.stream.utilisation(n) for s in window))}+ of {n} shards"
                f" for {c.scale_up_after} {c.unit}" + (" with throttling" if throttled else "")
            )
            if self._updates_left(now, history) > 0:
                return Decision(Action.UPDATE_SHARD_COUNT, f"{why}: {n} -> {target}", n, target)
        candidates = hot if hot and not busy else shards
        hottest = max(candidates, key=lambda s: _peak(loads[s.shard_id], s, window))
        why = (
            f"shard {hottest.shard_id} above {_pct(c.scale_up_pct)} for {c.scale_up_after} {c.unit}"
            if hottest in hot
            else f"stream above {_pct(c.scale_up_pct)}, splitting its busiest shard"
        )
        if busy and self._updates_left(now, history) <= 0:
            why += " (no UpdateShardCount left in the last 24 h)"
        return _split(hottest, n, why)

    # -- scale down -------------------------------------------------------------------------

    def _scale_down(
        self, now: int, shards: list[Shard], samples: Sequence[Sample], history: Sequence[Operation]
    ) -> Decision | None:
        c, n = self.config, len(shards)
        window = samples[-c.scale_down_after :]
        if n <= c.min_shards or len(window) < c.scale_down_after:
            return None
        since_up = _minutes_since(now, history, +1)
        if since_up < c.cool_off_after_up:
            return self._hold(shards, f"cooling off after a scale-up ({since_up} {c.unit} ago)")
        if _minutes_since(now, history, -1) < c.cool_off_after_down:
            return self._hold(shards, "cooling off after a scale-down")
        peak = max(s.stream.utilisation() for s in window)
        if peak / n < c.scale_down_pct and _uniform(shards):
            wanted = max(c.min_shards, math.ceil(peak / c.target_pct))
            target = max(c.min_shards, c.down_step.apply(n, wanted, -1), math.ceil(n / 2))
            spare = self._updates_left(now, history) - c.reserved_updates
            if n - target >= c.update_min_step and spare > 0:
                why = f"stream below {_pct(c.scale_down_pct)} for {c.scale_down_after} {c.unit}"
                return Decision(Action.UPDATE_SHARD_COUNT, f"{why}: {n} -> {target}", n, target)
        best: tuple[float, Shard, Shard] | None = None
        for lower, upper in itertools.pairwise(shards):
            if not adjacent(lower, upper):
                continue
            low, up = _loads(lower, window), _loads(upper, window)
            if len(low) < c.scale_down_after or len(up) < c.scale_down_after:
                continue
            combined = max(a.utilisation() + b.utilisation() for a, b in zip(low, up, strict=True))
            if combined < c.merge_below_pct and (best is None or combined < best[0]):
                best = (combined, lower, upper)
        if best is None:
            return None
        combined, lower, upper = best
        why = (
            f"{lower.shard_id} + {upper.shard_id} peaked at {_pct(combined)} together over"
            f" {c.scale_down_after} {c.unit} (merge below {_pct(c.merge_below_pct)})"
        )
        return Decision(Action.MERGE, why, n, n - 1, (lower.shard_id, upper.shard_id))

    # -- helpers ----------------------------------------------------------------------------

    def _updates_left(self, now: int, history: Sequence[Operation]) -> int:
        recent = [
            op
            for op in history
            if op.decision.action is Action.UPDATE_SHARD_COUNT
            and now - op.minute < self.config.update_window
        ]
        return self.config.max_updates_per_day - len(recent) if self.update_allowed else 0

    @staticmethod
    def _hold(shards: list[Shard], reason: str, refused: bool = False) -> Decision:
        return Decision(Action.HOLD, reason, len(shards), len(shards), refused=refused)


def _split(shard: Shard, n: int, why: str) -> Decision:
    return Decision(Action.SPLIT, why, n, n + 1, (shard.shard_id,), shard.midpoint)


def _loads(shard: Shard, window: Sequence[Sample]) -> list[Load]:
    """The shard's load in each sample: measured when the sample has per-shard loads (samples
    from before the shard existed are skipped), else the stream's load times its hash width."""
    loads = []
    for sample in window:
        if not sample.shards:
            loads.append(sample.stream.scaled(shard.width))
        elif shard.shard_id in sample.shards:
            loads.append(sample.shards[shard.shard_id])
    return loads


def _all_above(loads: list[Load], minutes: int, threshold: float) -> bool:
    return len(loads) >= minutes and all(load.utilisation() > threshold for load in loads)


def _peak(loads: list[Load], shard: Shard, window: Sequence[Sample]) -> float:
    if loads:
        return max(load.utilisation() for load in loads)
    return max(s.stream.utilisation() for s in window) * shard.width


def _uniform(shards: list[Shard]) -> bool:
    widths = [s.width for s in shards]
    return max(widths) <= min(widths) * 1.01


def _minutes_since(now: int, history: Sequence[Operation], direction: int) -> int:
    minutes = [now - op.minute for op in history if op.decision.direction == direction]
    return min(minutes, default=10**9)


def _pct(value: float) -> str:
    return f"{value:.0%}"
