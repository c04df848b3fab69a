"""Kinesis user record -> DynamoDB item."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from boto3.dynamodb.types import TypeDeserializer

from consumer.records import KinesisRecord, PoisonRecord, to_item


def _record(body: bytes) -> KinesisRecord:
    return KinesisRecord(body, "pk-1", "4960", 3, 1_700_000_000_123)


@pytest.mark.parametrize(
    "data",
    ["hello", "", 42, Decimal("1.25"), True, None, [1, "two", {"three": 3}], {"a": {"b": [None]}}],
)
def test_data_round_trips_as_native_types(data: object) -> None:
    # GIVEN the producer's envelope around some JSON value
    body = json.dumps({"id": "r-1", "ts": 1_700_000_000_000, "data": data}, default=str).encode()
    if isinstance(data, Decimal):
        body = b'{"id":"r-1","ts":1700000000000,"data":1.25}'
    # WHEN converted
    item = to_item(_record(body), "shardId-000000000002", now_ms=1_700_000_000_500)
    # THEN the item is keyed by the id and carries where and when the record was
    assert TypeDeserializer().deserialize(item["data"]) == data
    assert item["id"] == {"S": "r-1"}
    assert item["shard_id"] == {"S": "shardId-000000000002"}
    assert item["partition_key"] == {"S": "pk-1"}
    assert item["sequence_number"] == {"S": "4960"}
    assert item["sub_sequence_number"] == {"N": "3"}
    assert item["arrival_time"] == {"N": "1700000000123"}
    assert item["ingested_at"] == {"N": "1700000000000"}
    assert item["stored_at"] == {"N": "1700000000500"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"data": 1}', "no string 'id'"),
        (b'{"id": 7, "data": 1}', "no string 'id'"),
        (b'{"id": "x"}', "no 'data'"),
        (b'{"id": "x", "data": NaN}', "not storable"),
    ],
)
def test_poison_records_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(PoisonRecord) as caught:
        to_item(_record(body), "shardId-0")
    assert reason in caught.value.reason
