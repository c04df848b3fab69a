"""Replaying the quarantine: each record back into the stream, its item deleted only after."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from consumer.records import KinesisRecord, quarantine_item
from consumer.replay import replay


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

    def delete_item(self, TableName: str, Key: dict[str, Any]) -> None:
        self.deleted.append(Key["id"]["S"])


class FakeKinesis:
    def __init__(self, refuse: bytes = b"") -> None:
        self.put: list[tuple[bytes, str]] = []
        self.refuse = refuse

    def put_record(self, StreamName: str, Data: bytes, PartitionKey: str) -> dict[str, str]:
        if Data == self.refuse:
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}
            raise ClientError(error, "PutRecord")
        self.put.append((Data, PartitionKey))
        return {"ShardId": "shardId-000000000001", "SequenceNumber": str(len(self.put))}


def _item(data: bytes, key: str, sequence: str, reason: str, cut: bool = False) -> dict[str, Any]:
    record = KinesisRecord(data, key, sequence, 0, 0)
    item = quarantine_item(record, "shardId-000000000000", reason, now_ms=1)
    item["data_truncated"] = {"BOOL": cut}
    return item


def test_every_matching_record_goes_back_with_its_key_and_leaves_the_quarantine() -> None:
    items = [
        _item(b"\x00not json", "p1", "1", "not JSON: ..."),
        _item(b'{"id": "a"}', "p2", "2", "no 'data'"),
        _item(b"{cut", "p3", "3", "not JSON: ...", cut=True),
        _item(b"refused", "p4", "4", "not JSON: ..."),
        _item(b"\x01also", "p5", "5", "not JSON: ..."),
    ]
    ddb, kinesis, said = FakeDynamoDB(items), FakeKinesis(refuse=b"refused"), []
    outcome = replay(kinesis, ddb, "s", "q", reason="not JSON", say=said.append)
    # THEN the not-JSON ones went back under their partition keys (across scan pages), the
    # truncated one stayed (its bytes are not all there), the refused one stayed too
    assert sorted(kinesis.put) == [(b"\x00not json", "p1"), (b"\x01also", "p5")]
    assert sorted(ddb.deleted) == sorted(i["id"]["S"] for i in (items[0], items[4]))
    assert (outcome.replayed, outcome.skipped, outcome.failed) == (2, 1, 1)
    assert any("truncated" in line for line in said)


def test_dry_run_lists_and_changes_nothing() -> None:
    ddb, kinesis = FakeDynamoDB([_item(b"x", "p", "1", "not JSON")]), FakeKinesis()
    outcome = replay(kinesis, ddb, "s", "q", dry_run=True, say=lambda _: None)
    assert outcome.listed == 1 and kinesis.put == [] and ddb.deleted == []
