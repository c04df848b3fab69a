"""Replay synthetic traffic against the policy and a simulated stream; compare with an ideal.

``python -m scaler.simulation`` prints, per trace: minutes over the shard limits (and the
longest run of them), shard-hours paid against an ideal scaler that knows the future, the
resharding operations and the direction reversals within 30 minutes (flapping).

The model: one-minute steps; the scaler sees the samples up to the previous minute (CloudWatch
publishes a minute's metrics after it ends) with per-shard loads (enhanced monitoring); an
operation leaves the stream UPDATING for ``SPLIT_MERGE_MINUTES`` or ``UPDATE_MINUTES`` and
takes effect when it ends. Traffic is uniform over the hash space plus, optionally, one hot
partition key at a fixed hash point; each minute gets seeded +-5% noise.

The ideal scaler reshards instantly and for free and places shard boundaries perfectly: each
minute it has the fewest shards that keep every shard within the limits (100% of capacity,
no headroom). No real scaler can reach it; the goal is to stay within 1.3x of it.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from common.kinesis import (
    HASH_SPACE,
    SHARD_WRITE_BYTES_PER_S,
    SHARD_WRITE_RECORDS_PER_S,
    Shard,
    even_shards,
)
from scaler.model import Action, Decision, Load, Sample
from scaler.policy import Operation, Policy, PolicyConfig
from scaler.service import Scaler
from scaler.state import MemoryStateStore

DAY = 24 * 60
MIB = 1024 * 1024
SPLIT_MERGE_MINUTES = 1
UPDATE_MINUTES = 2
FLAP_MINUTES = 30
RECORD_BYTES = 40_000  # aggregated Kinesis records: bytes, not counts, are the binding limit
AWS_UPDATES_PER_DAY = 10  # UpdateShardCount calls per rolling 24 h (Kinesis limits)


@dataclass(frozen=True)
class Trace:
    name: str
    start_shards: int
    uniform_mib: Callable[[int], float]  # MiB/s spread evenly over the hash space
    hot_mib: Callable[[int], float] = lambda _minute: 0.0  # MiB/s on one partition key
    hot_point: float = 0.37  # where that key hashes, as a fraction of the hash space
    minutes: int = DAY


def traces() -> list[Trace]:
    def daily(m: int) -> float:
        return 1.0 + 11.0 * (1 - math.cos(2 * math.pi * m / DAY)) / 2

    def spike(m: int) -> float:
        return 30.0 if 600 <= m < 720 else 3.0

    def hot(m: int) -> float:
        return 0.6 if 300 <= m < 1100 else 0.0

    return [
        Trace("daily curve 1-12 MiB/s", 2, daily),
        Trace("10x spike for 2 h", 4, spike),
        Trace("one hot key (0.6 MiB/s) on 6 MiB/s", 8, lambda _m: 6.0, hot),
    ]


def restart_traces() -> list[Trace]:
    """``traces()`` and one where the load drops within the cool-off after each scale-up
    (where a scaler that forgot its cool-off scales straight back down)."""

    def bursts(m: int) -> float:
        return 6.0 if m % 360 < 20 else 2.0

    return [*traces(), Trace("20-min bursts 2 -> 6 MiB/s every 6 h", 3, bursts)]


def _load(mib: float) -> Load:
    return Load(mib * MIB, mib * MIB / RECORD_BYTES)


def ideal_shards(uniform: Load, hot: Load) -> int:
    """The fewest shards, with perfect boundaries, that keep every shard within its limits."""
    caps = ((uniform.bytes_per_s, hot.bytes_per_s, SHARD_WRITE_BYTES_PER_S),
            (uniform.records_per_s, hot.records_per_s, SHARD_WRITE_RECORDS_PER_S))  # fmt: skip
    w_other = min((cap / u if u else math.inf) for u, _, cap in caps)  # widest plain shard
    if not (hot.bytes_per_s or hot.records_per_s):
        return max(1, math.ceil(1 / w_other - 1e-9))
    w_hot = min(((cap - h) / u if u else math.inf) for u, h, cap in caps)
    return 1 + math.ceil(max(0.0, 1 - w_hot) / w_other - 1e-9)


@dataclass
class Result:
    trace: str
    over_limit_minutes: int = 0
    longest_over_limit: int = 0
    shard_minutes: int = 0
    ideal_shard_minutes: int = 0
    operations: dict[str, int] = field(default_factory=dict)
    reversals: int = 0
    max_shards: int = 0
    restarts: int = 0
    refused: int = 0  # UpdateShardCount calls AWS refused (the rolling 24 h limit)

    @property
    def ratio(self) -> float:
        return self.shard_minutes / self.ideal_shard_minutes


class SimulatedStream:
    """The stream's side as the scaler sees it (``StreamAdmin``'s calls): an operation leaves
    it UPDATING until it takes effect; UpdateShardCount beyond AWS's rolling 24 h limit is
    refused with LimitExceededException."""

    stream_name = "simulated"

    def __init__(self, count: int, clock: Callable[[], int]) -> None:
        self.shards = even_shards(count)
        self._next_id = count
        self._clock = clock
        self.pending: tuple[int, Decision] | None = None
        self.updates: list[int] = []  # minutes of the UpdateShardCount calls accepted
        self.refused = 0

    def _new(self, start: int, end: int) -> Shard:
        self._next_id += 1
        return Shard(f"shardId-{self._next_id:012d}", start, end)

    # ---- what the scaler calls -------------------------------------------------------------
    def open_shards(self) -> list[Shard]:
        return list(self.shards)

    def status(self) -> str:
        return "UPDATING" if self.pending else "ACTIVE"

    def apply(self, decision: Decision) -> None:
        now = self._clock()
        update = decision.action is Action.UPDATE_SHARD_COUNT
        if update:
            recent = [m for m in self.updates if now - m < DAY]
            if len(recent) >= AWS_UPDATES_PER_DAY:
                self.refused += 1
                raise ClientError(
                    {"Error": {"Code": "LimitExceededException", "Message": "rate exceeded"}},
                    "UpdateShardCount",
                )
            self.updates.append(now)
        self.pending = (now + (UPDATE_MINUTES if update else SPLIT_MERGE_MINUTES), decision)

    def wait_active(self, _timeout: float) -> None:
        """The simulated scaler does not block: it holds while the stream is UPDATING."""

    # ---- the simulation's side -------------------------------------------------------------
    def tick(self, minute: int) -> None:
        if self.pending and self.pending[0] <= minute:
            self._take_effect(self.pending[1])
            self.pending = None

    def _take_effect(self, decision: Decision) -> None:
        by_id = {s.shard_id: s for s in self.shards}
        if decision.action is Action.UPDATE_SHARD_COUNT:
            self.shards = [self._new(s.start, s.end) for s in even_shards(decision.target)]
        elif decision.action is Action.SPLIT:
            parent = by_id[decision.shards[0]]
            assert decision.split_at is not None
            children = [self._new(parent.start, decision.split_at - 1),
                        self._new(decision.split_at, parent.end)]  # fmt: skip
            self.shards = [s for s in self.shards if s is not parent] + children
        elif decision.action is Action.MERGE:
            lower, upper = (by_id[i] for i in decision.shards)
            merged = self._new(lower.start, upper.end)
            self.shards = [s for s in self.shards if s not in (lower, upper)] + [merged]
        self.shards.sort(key=lambda s: s.start)

    def loads(self, uniform: Load, hot: Load, hot_key: int) -> dict[str, Load]:
        return {
            s.shard_id: uniform.scaled(s.width) + (hot if s.start <= hot_key <= s.end else Load())
            for s in self.shards
        }


class SimulatedMetrics:
    """CloudWatch as the scaler sees it: every minute's sample once the minute is over."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self.published: list[Sample] = []
        self._clock = clock

    def samples(self, _shards: object, count: int) -> list[Sample]:
        published = self.published
        done = len(published) - (1 if published and published[-1].minute >= self._clock() else 0)
        return published[max(0, done - count) : done]

    def now(self) -> int:
        return self._clock()


def simulate(trace: Trace, config: PolicyConfig, seed: int = 7,
             restart_after_up: int | None = None, keep_state: bool = True) -> Result:  # fmt: skip
    """One day of ``trace`` against the real scaler loop (``Scaler.check`` once a minute).

    ``restart_after_up``: the scaler is replaced by a new one (as ECS replaces a task) that many
    minutes after each scale-up, i.e. in the middle of its cool-off; ``keep_state``: the new
    one reads what the old one stored (``scaler.state``), else it starts from nothing (as
    a scaler without ``scaler.state`` did). Its metric source is CloudWatch, which a restart
    does not lose.
    """
    rng = random.Random(seed)
    minute = 0

    def clock() -> int:
        return minute

    stream, metrics = SimulatedStream(trace.start_shards, clock), SimulatedMetrics(clock)
    store = MemoryStateStore(stream.stream_name, 60.0)

    def new_scaler() -> Scaler:
        state = store if keep_state else MemoryStateStore(stream.stream_name, 60.0)
        return Scaler(stream, metrics, Policy(config), state=state,  # type: ignore[arg-type]  # a simulated StreamAdmin
                      clock=lambda: float(minute * 60), sample_seconds=60.0)  # fmt: skip

    logging.getLogger("scaler").setLevel(logging.ERROR)  # its INFO/WARNING lines, 1,440 a day
    scaler = new_scaler()
    result = Result(trace.name)
    run, restart_at = 0, None
    last_move: Operation | None = None
    hot_key = int(trace.hot_point * HASH_SPACE)
    for minute in range(trace.minutes):
        noise = rng.uniform(0.95, 1.05)
        uniform, hot = _load(trace.uniform_mib(minute) * noise), _load(trace.hot_mib(minute))
        shard_loads = stream.loads(uniform, hot, hot_key)
        over = sum(1 for load in shard_loads.values() if load.utilisation() > 1.0)
        metrics.published.append(Sample(minute, uniform + hot, over, shard_loads))
        run = run + 1 if over else 0
        result.over_limit_minutes += bool(over)
        result.longest_over_limit = max(result.longest_over_limit, run)
        result.shard_minutes += len(stream.shards)
        result.max_shards = max(result.max_shards, len(stream.shards))
        result.ideal_shard_minutes += ideal_shards(uniform, hot)
        stream.tick(minute)
        if restart_at == minute:
            scaler, restart_at = new_scaler(), None
            result.restarts += 1
        before = stream.pending
        decision = scaler.check()
        if stream.pending is None or stream.pending is before:
            continue  # nothing started this minute (held, or refused by AWS)
        if last_move and last_move.decision.direction == -decision.direction:
            result.reversals += minute - last_move.minute < FLAP_MINUTES
        if decision.direction:
            last_move = Operation(minute, decision)
        result.operations[decision.action] = result.operations.get(decision.action, 0) + 1
        if decision.direction > 0 and restart_after_up is not None:
            restart_at = minute + restart_after_up
    result.refused = stream.refused
    return result


def table(results: list[Result]) -> str:
    head = ("trace", "min over limit", "longest run", "shard-h", "ideal shard-h", "ratio",
            "operations (update/split/merge)", "reversals <30 min", "max shards")  # fmt: skip
    rows = [head]
    for r in results:
        ops = "/".join(str(r.operations.get(a, 0)) for a in list(Action)[1:])
        rows.append((r.trace, str(r.over_limit_minutes), str(r.longest_over_limit),
                     f"{r.shard_minutes / 60:.1f}", f"{r.ideal_shard_minutes / 60:.1f}",
                     f"{r.ratio:.2f}x", ops, str(r.reversals), str(r.max_shards)))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


RESTART_AFTER_UP = 10  # minutes: mid-way through the 30-minute cool-off after a scale-up


def restart_table(lost: list[Result], kept: list[Result]) -> str:
    """Each trace with the scaler replaced ``RESTART_AFTER_UP`` minutes after every scale-up,
    its state lost (no ``scaler.state``) vs kept (``scaler.state``)."""
    head = ("trace", "restarts", "reversals <30 min", "UpdateShardCount refused",
            "min over limit", "ratio")  # fmt: skip
    rows = [head]
    for a, b in zip(lost, kept, strict=True):
        rows.append((a.trace, f"{b.restarts}", f"{a.reversals} -> {b.reversals}",
                     f"{a.refused} -> {b.refused}",
                     f"{a.over_limit_minutes} -> {b.over_limit_minutes}",
                     f"{a.ratio:.2f}x -> {b.ratio:.2f}x"))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    config = PolicyConfig()
    results = [simulate(t, config, args.seed) for t in traces()]
    print(table(results))
    lost, kept = ([simulate(t, config, args.seed, RESTART_AFTER_UP, keep_state=keep)
                   for t in restart_traces()] for keep in (False, True))  # fmt: skip
    title = f"the scaler restarted {RESTART_AFTER_UP} min after every scale-up, state lost -> kept"
    print(f"\n{title}:")
    print(restart_table(lost, kept))


if __name__ == "__main__":
    main()
