"""The scaling policy, table-driven: given shards, recent load and history, one decision."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from common.kinesis import HASH_SPACE, Shard, even_shards
from scaler.model import Action, Decision, Load, Sample
from scaler.policy import Operation, Policy, PolicyConfig, Step

MIB = 1024 * 1024
CONFIG = PolicyConfig(min_shards=1, max_shards=16)


def load(shard_units: float) -> Load:
    """A load using ``shard_units`` shards' worth of the byte limit."""
    return Load(shard_units * MIB, shard_units * 10)


def uniform(units: list[float]) -> list[Sample]:
    """Stream-level samples (no per-shard loads), one per minute ending at minute 99."""
    return [Sample(100 - len(units) + i, load(u)) for i, u in enumerate(units)]


def per_shard(shards: list[Shard], rows: list[list[float]]) -> list[Sample]:
    """Samples with per-shard loads: one row of shard utilisations per minute."""
    samples = []
    for i, row in enumerate(rows):
        loads = {s.shard_id: load(u) for s, u in zip(shards, row, strict=True)}
        samples.append(Sample(100 - len(rows) + i, sum(loads.values(), Load()), 0, loads))
    return samples


def past(minutes_ago: int, action: Action, current: int, target: int) -> Operation:
    return Operation(100 - minutes_ago, Decision(action, "earlier", current, target))


FOUR = even_shards(4)


@dataclass
class Case:
    name: str
    shards: list[Shard]
    samples: list[Sample]
    action: Action
    target: int
    history: list[Operation] = field(default_factory=list)
    config: PolicyConfig = CONFIG
    reason: str = ""


CASES = [
    Case("steady at 70%: hold", FOUR, uniform([2.8] * 10), Action.HOLD, 4),
    Case(
        "above 90% for 2 min: update to 75%",
        FOUR,
        uniform([2.0] * 8 + [3.7, 3.8]),
        Action.UPDATE_SHARD_COUNT,
        6,
        reason="stream at 92%+ of 4 shards for 2 min: 4 -> 6",
    ),
    Case("above 90% for only 1 min: hold", FOUR, uniform([2.0] * 9 + [3.8]), Action.HOLD, 4),
    Case(
        "over the limit now: act at once",
        FOUR,
        uniform([2.0] * 9 + [4.4]),
        Action.UPDATE_SHARD_COUNT,
        6,
    ),
    Case("10x: at most double per call", FOUR, uniform([30.0] * 3), Action.UPDATE_SHARD_COUNT, 8),
    Case(
        "at max shards: hold and say so",
        even_shards(16),
        uniform([16.0] * 3),
        Action.HOLD,
        16,
        reason="at max_shards (16) under load",
    ),
    Case(
        "budget spent: split the busiest shard",
        FOUR,
        uniform([3.7] * 3),
        Action.SPLIT,
        5,
        history=[past(60 + i, Action.UPDATE_SHARD_COUNT, 3, 4) for i in range(10)],
    ),
    Case(
        "budget of yesterday does not count",
        FOUR,
        uniform([3.7] * 3),
        Action.UPDATE_SHARD_COUNT,
        5,
        history=[past(1500 + i, Action.UPDATE_SHARD_COUNT, 3, 4) for i in range(10)],
    ),
    Case(
        "one hot shard: split it, not the stream",
        FOUR,
        per_shard(FOUR, [[0.3, 0.95, 0.3, 0.3]] * 3),
        Action.SPLIT,
        5,
    ),
    Case(
        "below 65% for 5 min: update down to 75%",
        even_shards(8),
        uniform([3.0] * 6),
        Action.UPDATE_SHARD_COUNT,
        4,
    ),
    Case(
        "at most half per call down",
        even_shards(8),
        uniform([0.5] * 6),
        Action.UPDATE_SHARD_COUNT,
        4,
    ),
    Case("below for only 4 min: hold", even_shards(8), uniform([6.0, 3, 3, 3, 3]), Action.HOLD, 8),
    Case(
        "scale-down waits 30 min after a scale-up",
        even_shards(8),
        uniform([3.0] * 6),
        Action.HOLD,
        8,
        history=[past(20, Action.UPDATE_SHARD_COUNT, 4, 8)],
        reason="cooling off after a scale-up (20 min ago)",
    ),
    Case(
        "down budget keeps 2 calls for scale-ups: merge instead",
        even_shards(8),
        uniform([2.0] * 6),
        Action.MERGE,
        7,
        history=[past(60 + i, Action.UPDATE_SHARD_COUNT, 8, 8) for i in range(8)],
    ),
    Case(
        "a one-shard step down spends no call and merges no pair past 75%",
        FOUR,
        uniform([2.2] * 6),
        Action.HOLD,
        4,
    ),
    Case("no pair cold enough to merge: hold", FOUR, uniform([2.4] * 6), Action.HOLD, 4),
    Case(
        "at min shards: no scale-down",
        even_shards(2),
        uniform([0.1] * 6),
        Action.HOLD,
        2,
        config=PolicyConfig(min_shards=2),
    ),
    Case(
        "step by count (Scaling Utils' scaleCount)",
        FOUR,
        uniform([3.7] * 3),
        Action.UPDATE_SHARD_COUNT,
        5,
        config=PolicyConfig(up_step=Step.parse("1")),
    ),
    Case(
        "step by percent (Scaling Utils' scalePct)",
        FOUR,
        uniform([3.7] * 3),
        Action.UPDATE_SHARD_COUNT,
        6,
        config=PolicyConfig(up_step=Step.parse("50%")),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decision(case: Case) -> None:
    decision = Policy(case.config).decide(100, case.shards, case.samples, case.history)
    assert (decision.action, decision.target) == (case.action, case.target), decision.reason
    assert decision.current == len(case.shards)
    if case.reason:
        assert decision.reason == case.reason


def test_hot_shard_split_is_at_its_hash_midpoint() -> None:
    samples = per_shard(FOUR, [[0.3, 0.95, 0.3, 0.3]] * 3)
    decision = Policy(CONFIG).decide(100, FOUR, samples)
    assert decision.shards == (FOUR[1].shard_id,)
    assert decision.split_at == (FOUR[1].start + FOUR[1].end + 1) // 2 == 3 * HASH_SPACE // 8


def test_merge_picks_the_coldest_adjacent_pair() -> None:
    samples = per_shard(FOUR, [[0.5, 0.4, 0.2, 0.3]] * 6)
    decision = Policy(PolicyConfig(scale_down_pct=0.10)).decide(100, FOUR, samples)
    assert decision.action is Action.MERGE
    assert decision.shards == (FOUR[2].shard_id, FOUR[3].shard_id)


def test_new_shards_are_not_judged_before_their_first_metrics() -> None:
    # GIVEN throttling, and per-shard loads that do not yet include the open shard 3
    shards = FOUR
    samples = per_shard(FOUR[:3], [[0.5, 0.5, 0.5]] * 3)
    samples = [Sample(s.minute, s.stream, 1, s.shards) for s in samples]
    decision = Policy(CONFIG).decide(100, shards, samples)
    # THEN the scaler waits instead of resizing the whole stream for one unseen shard
    assert decision.action is Action.HOLD
    assert "first metrics" in decision.reason


def test_refused_updates_fall_back_to_split() -> None:
    policy = Policy(CONFIG)
    policy.update_allowed = False
    assert policy.decide(100, FOUR, uniform([3.7] * 3)).action is Action.SPLIT


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_shards": 5, "max_shards": 4}, "min_shards <= max_shards"),
        ({"scale_down_pct": 0.8, "target_pct": 0.75}, "scale_down_pct < target_pct"),
        ({"merge_below_pct": 0.95}, "merge_below_pct < scale_up_pct"),
        ({"reserved_updates": 10}, "reserved_updates < max_updates_per_day"),
    ],
)
def test_inconsistent_config_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PolicyConfig(**kwargs)


@pytest.mark.parametrize("text", ["0", "-2", "x", "nan%"])
def test_bad_steps_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Step.parse(text)
