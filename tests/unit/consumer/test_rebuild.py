"""The rebuild's names and settings, and when it has caught up (against a fake stream)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumer.config import ConsumerSettings
from consumer.rebuild import (
    caught_up,
    parse_moment,
    progress,
    rebuild_application,
    rebuild_environment,
)

T0 = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class FakeStream:
    """ListShards, GetShardIterator (AT_TIMESTAMP, AFTER_SEQUENCE_NUMBER) and GetRecords over
    in-memory shards; the first read of each iterator comes back empty, as Kinesis may do."""

    def __init__(self, shards: dict[str, list[tuple[str, datetime]]], closed: set[str]) -> None:
        self.shards, self.closed = shards, closed

    def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        return {
            "Shards": [
                {
                    "ShardId": s,
                    "SequenceNumberRange": {
                        "StartingSequenceNumber": "0",
                        **({"EndingSequenceNumber": "9"} if s in self.closed else {}),
                    },
                }
                for s in self.shards
            ]
        }

    def get_shard_iterator(
        self, StreamName: str, ShardId: str, ShardIteratorType: str, **kw: Any
    ) -> dict[str, Any]:
        records = self.shards[ShardId]
        if ShardIteratorType == "AT_TIMESTAMP":
            index = next(
                (i for i, r in enumerate(records) if r[1] >= kw["Timestamp"]), len(records)
            )
        else:
            seq = int(kw["StartingSequenceNumber"])
            index = next((i for i, r in enumerate(records) if int(r[0]) > seq), len(records))
        return {"ShardIterator": f"{ShardId}|{index}|empty"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        shard, index_text, first = ShardIterator.split("|")
        index, records = int(index_text), self.shards[shard]
        behind = 0 if index >= len(records) else 1000
        if first == "empty":
            return {
                "Records": [],
                "NextShardIterator": f"{shard}|{index}|",
                "MillisBehindLatest": behind,
            }
        out = [
            {"SequenceNumber": s, "ApproximateArrivalTimestamp": a}
            for s, a in records[index : index + Limit]
        ]
        end = shard in self.closed and index + len(out) >= len(records)
        following = None if end else f"{shard}|{index + len(out)}|"
        return {"Records": out, "NextShardIterator": following, "MillisBehindLatest": behind}


class FakeLeases:
    def __init__(self, checkpoints: dict[str, str]) -> None:
        self.checkpoints = checkpoints

    def scan(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["TableName"] == "app-rebuild-20261130T100000Z"
        return {
            "Items": [
                {"leaseKey": {"S": k}, "checkpoint": {"S": v}} for k, v in self.checkpoints.items()
            ]
        }


STREAM = {
    "shard-a": [("1", at(-60)), ("2", at(5)), ("3", at(30)), ("4", at(200))],
    "shard-b": [("1", at(-60))],  # nothing after the moment
    "shard-c": [("1", at(10)), ("2", at(20))],  # closed
}


def run(checkpoints: dict[str, str], until: float = 100) -> dict[str, bool]:
    fake = FakeStream(STREAM, closed={"shard-c"})
    found = progress(
        fake, FakeLeases(checkpoints), "s", "app-rebuild-20261130T100000Z", T0, at(until)
    )
    return {p.shard_id: p.done for p in found}


def test_a_shard_is_caught_up_when_nothing_before_until_is_left_after_its_checkpoint() -> None:
    # GIVEN nothing read yet: shard-a and shard-c hold records from after the moment
    assert run({}) == {"shard-a": False, "shard-b": True, "shard-c": False}
    # WHEN shard-a is checkpointed at its record of +5 s: +30 s is still unread
    assert run({"shard-a": "2", "shard-b": "AT_TIMESTAMP", "shard-c": "SHARD_END"})["shard-a"] is (
        False
    )
    # THEN at +30 s it is caught up: the next record (+200 s) came after until (+100 s)
    done = run({"shard-a": "3", "shard-b": "AT_TIMESTAMP", "shard-c": "SHARD_END"})
    assert done == {"shard-a": True, "shard-b": True, "shard-c": True}
    # AND with until later than +200 s it is not
    assert not run({"shard-a": "3", "shard-c": "SHARD_END"}, until=300)["shard-a"]


def test_caught_up_needs_every_shard_and_at_least_one() -> None:
    fake = FakeStream(STREAM, closed={"shard-c"})
    leases = FakeLeases({"shard-a": "4", "shard-c": "SHARD_END"})
    found = progress(fake, leases, "s", "app-rebuild-20261130T100000Z", T0, at(300))
    assert caught_up(found) and not caught_up([])
    assert [p.detail for p in found if p.shard_id == "shard-b"] == [
        "nothing left before until; not leased yet"
    ]


def test_names_and_the_environment_the_rebuild_runs_with() -> None:
    since = parse_moment("2026-11-30T11:00:00+01:00")
    assert since == T0 and parse_moment("1796032800") == T0
    with pytest.raises(ValueError, match="no time zone"):
        parse_moment("2026-11-30T10:00:00")
    assert rebuild_application("app", since) == "app-rebuild-20261130T100000Z"
    env = rebuild_environment("app", since)
    settings = ConsumerSettings(
        stream_name="s", **{k.removeprefix("CONSUMER_").lower(): v for k, v in env.items()}
    )
    assert settings.application_name == "app-rebuild-20261130T100000Z"
    assert settings.initial_epoch_seconds == int(T0.timestamp())
