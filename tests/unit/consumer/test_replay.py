"""Replaying the quarantine: each record back into the stream whole (joined from its parts),
its items deleted only after Kinesis accepted it."""

from __future__ import annotations

import random
from typing import Any

from consumer.records import QUARANTINE_PART_BYTES, KinesisRecord, quarantine_items
from consumer.replay import replay
from tests.fakes import FakeKinesis, even_shards


class FakeDynamoDB:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = {i["id"]["S"]: i for i in items}
        self.deleted: list[str] = []

    def scan(self, **kwargs: Any) -> dict[str, Any]:
        keys = sorted(self.items)
        start = (
            keys.index(kwargs["ExclusiveStartKey"]["id"]["S"]) + 1
            if "ExclusiveStartKey" in kwargs
            else 0
        )
        page = [self.items[k] for k in keys[start : start + 2]]  # pages of two
        answer: dict[str, Any] = {"Items": page}
        if start + 2 < len(keys):
            answer["LastEvaluatedKey"] = {"id": page[-1]["id"]}
        return answer

    def get_item(self, TableName: str, Key: dict[str, Any], **_: Any) -> dict[str, Any]:
        item = self.items.get(Key["id"]["S"])
        return {"Item": item} if item else {}

    def delete_item(self, TableName: str, Key: dict[str, Any]) -> None:
        self.deleted.append(Key["id"]["S"])


def refusing(data: bytes) -> FakeKinesis:
    """A stream that throttles every put of ``data``."""
    throttle = "ProvisionedThroughputExceededException"
    return FakeKinesis(
        even_shards(2), fail=lambda entry: throttle if entry["Data"] == data else None
    )


def put(kinesis: FakeKinesis) -> list[tuple[bytes, str]]:
    return [(r.data, r.partition_key) for r in kinesis.stored]


def _items(data: bytes, key: str, sequence: str, reason: str) -> list[dict[str, Any]]:
    record = KinesisRecord(data, key, sequence, 0, 0)
    return quarantine_items(record, "shardId-000000000000", reason, now_ms=1)


def test_every_matching_record_goes_back_whole_with_its_key_and_leaves_the_quarantine() -> None:
    # GIVEN quarantined records, one of 1 MiB with its key (four items), one refused by
    # Kinesis, one an older version cut short, and one whose second part is missing
    big = random.Random(1).randbytes(1024 * 1024 - len("p5"))
    cut = _items(b"{cut", "p3", "3", "not JSON: ...")
    cut[0]["data_truncated"] = {"BOOL": True}
    broken = _items(b"x" * (QUARANTINE_PART_BYTES + 5), "p6", "6", "not JSON: ...")[:1]
    items = [
        *_items(b"\x00not json", "p1", "1", "not JSON: ..."),
        *_items(b'{"id": "a"}', "p2", "2", "no 'data'"),
        *cut,
        *_items(b"refused", "p4", "4", "not JSON: ..."),
        *_items(big, "p5", "5", "not JSON: item too large"),
        *broken,
    ]
    ddb, kinesis = FakeDynamoDB(items), refusing(b"refused")
    said: list[str] = []
    # WHEN the not-JSON ones are replayed
    outcome = replay(kinesis, ddb, "s", "q", reason="not JSON", say=said.append)
    # THEN they went back whole under their partition keys (across scan pages), and their
    # items, every part of them, are gone; the cut, the broken and the refused ones stayed
    assert sorted(put(kinesis)) == [(b"\x00not json", "p1"), (big, "p5")]
    big_keys = [f"shardId-000000000000/5/0{suffix}" for suffix in ("", "#1", "#2", "#3")]
    assert sorted(ddb.deleted) == sorted(["shardId-000000000000/1/0", *big_keys])
    assert ddb.deleted.index(big_keys[0]) < ddb.deleted.index(big_keys[1])  # the head first
    assert (outcome.replayed, outcome.skipped, outcome.failed) == (2, 2, 1)
    assert any("truncated" in line for line in said)
    assert any("shardId-000000000000/6/0#1 is missing" in line for line in said)


def test_dry_run_lists_and_changes_nothing() -> None:
    ddb, kinesis = FakeDynamoDB(_items(b"x", "p", "1", "not JSON")), FakeKinesis(even_shards(1))
    outcome = replay(kinesis, ddb, "s", "q", dry_run=True, say=lambda _: None)
    assert outcome.listed == 1 and put(kinesis) == [] and ddb.deleted == []
