"""Kinesis user record -> DynamoDB item, and what DynamoDB would refuse (poison records)."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from consumer.records import (
    MAX_ITEM_BYTES,
    KinesisRecord,
    PoisonRecord,
    attribute,
    item_size,
    to_item,
)

SHARD = "shardId-000000000002"


def _record(body: bytes) -> KinesisRecord:
    return KinesisRecord(body, "pk-1", "4960", 3, 1_700_000_000_123)


def _body(data: Any, **envelope: Any) -> bytes:
    return json.dumps({"id": "r-1", "ts": 1_700_000_000_000, "data": data, **envelope}).encode()


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    "data",
    ["hello", "", 42, -7, True, False, None, [1, "two", {"three": 3}], {"a": {"b": [None]}}, []],
)
def test_data_round_trips_as_native_types(data: object) -> None:
    # GIVEN the producer's envelope around some JSON value
    body = _body(data)
    # WHEN converted
    item = to_item(_record(body), SHARD, now_ms=1_700_000_000_500)
    # THEN data is stored as native DynamoDB types and reads back equal
    assert TypeDeserializer().deserialize(item["data"]) == data
    # AND the item is keyed by the id and says where and when the record was
    assert item["id"] == {"S": "r-1"}
    assert item["shard_id"] == {"S": SHARD}
    assert item["partition_key"] == {"S": "pk-1"}
    assert item["sequence_number"] == {"S": "4960"}
    assert item["sub_sequence_number"] == {"N": "3"}
    assert item["arrival_time"] == {"N": "1700000000123"}
    assert item["ingested_at"] == {"N": "1700000000000"}
    assert item["stored_at"] == {"N": "1700000000500"}


def test_floats_become_exact_decimals() -> None:
    # GIVEN JSON numbers a binary float would not hold exactly
    body = b'{"id":"r-1","ts":1,"data":{"price":0.1,"big":12345678901234567890.5,"e":1e2}}'
    # WHEN converted
    item = to_item(_record(body), SHARD, now_ms=0)
    # THEN they are DynamoDB numbers with the exact digits sent
    assert item["data"]["M"]["price"] == {"N": "0.1"}
    assert item["data"]["M"]["big"] == {"N": "12345678901234567890.5"}
    assert TypeDeserializer().deserialize(item["data"]["M"]["e"]) == Decimal(100)


def test_stored_at_defaults_to_the_wall_clock() -> None:
    item = to_item(_record(_body(1)), SHARD)
    assert int(item["stored_at"]["N"]) > 1_700_000_000_000


@pytest.mark.parametrize("ts", [None, "1700000000000", 1.5, True, 10**40])
def test_unusable_ts_leaves_ingested_at_out(ts: object) -> None:
    # GIVEN an envelope whose ts is missing, not an integer, or too big for DynamoDB
    body = _body(1, ts=ts)
    # WHEN converted
    item = to_item(_record(body), SHARD, now_ms=0)
    # THEN the record is stored, without an ingested_at DynamoDB would refuse
    assert "ingested_at" not in item


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"just a string"', "not a JSON object"),
        (b'{"data": 1}', "no string 'id'"),
        (b'{"id": 7, "data": 1}', "no string 'id'"),
        (b'{"id": "", "data": 1}', "no string 'id'"),
        (b'{"id": "x"}', "no 'data'"),
        (b'{"id": "x", "data": NaN}', "not storable"),
        (b'{"id": "x", "data": 1e400}', "not storable"),
        (b'{"id": "x", "data": 123456789012345678901234567890123456789}', "not storable"),
        (b'{"id": "x", "data": "\\ud800"}', "UTF-8"),
        (b'{"id": "x", "data": {"": 1}}', "empty map key"),
    ],
)
def test_poison_records_say_why(body: bytes, reason: str) -> None:
    # GIVEN bytes that are not the envelope, or data DynamoDB cannot store
    # WHEN converted THEN PoisonRecord says why
    with pytest.raises(PoisonRecord) as caught:
        to_item(_record(body), "shardId-0")
    assert reason in caught.value.reason


def test_id_longer_than_a_dynamodb_key_is_poison() -> None:
    to_item(_record(_body(1, id="x" * 2048)), SHARD, now_ms=0)
    with pytest.raises(PoisonRecord, match="2048"):
        to_item(_record(_body(1, id="x" * 2049)), SHARD, now_ms=0)


def test_nesting_deeper_than_dynamodb_allows_is_poison() -> None:
    # GIVEN data nested 31 maps deep (DynamoDB's limit) and one deeper
    # WHEN converted THEN the first is stored and the second refused
    to_item(_record(_body(_nested(31))), SHARD, now_ms=0)
    with pytest.raises(PoisonRecord, match="nested deeper"):
        to_item(_record(_body(_nested(32))), SHARD, now_ms=0)


def test_item_over_400_kb_is_poison() -> None:
    # GIVEN data that makes the item 1 byte too big
    fits = to_item(_record(_body("")), SHARD, now_ms=0)
    room = MAX_ITEM_BYTES - item_size(fits)
    to_item(_record(_body("x" * room)), SHARD, now_ms=0)
    # WHEN converted THEN it is refused before DynamoDB could fail the whole batch on it
    with pytest.raises(PoisonRecord, match="exceeds"):
        to_item(_record(_body("x" * (room + 1))), SHARD, now_ms=0)


@pytest.mark.parametrize(
    ("item", "size"),
    [
        # the largest items DynamoDB Local 3.3.1 accepted for id "a" (one more element: refused)
        ({"id": {"S": "a"}, "data": {"S": "x" * 409_593}}, 409_600),
        ({"id": {"S": "a"}, "data": {"L": [{"S": "x"}] * 204_795}}, 409_600),
        ({"id": {"S": "a"}, "data": {"L": [{"NULL": True}] * 204_795}}, 409_600),
        ({"id": {"S": "a"}, "data": {"L": [{"N": "12345678"}] * 68_265}}, 409_600),
        ({"id": {"S": "é"}, "m": {"M": {"ab": {"BOOL": True}, "n": {"N": "-0.00100"}}}}, 17),
    ],
)
def test_item_size_follows_dynamodb(item: dict[str, Any], size: int) -> None:
    assert item_size(item) == size


@pytest.mark.parametrize(
    ("number", "size"),
    # sizes measured with DynamoDB Local 3.3.1: base-100 digit pairs aligned on the decimal
    # point, + 1, + 1 if negative
    [("0", 1), ("1", 2), ("12", 2), ("123", 3), ("1234", 3), ("100", 2), ("1000000", 2),
     ("1700000000000", 3), ("1E+2", 2), ("0.1", 2), ("0.001", 2), ("1.5", 3), ("1.25", 3),
     ("10.5", 3), ("-1", 3), ("-12", 3), ("123456789", 6), ("12345678901234567890", 11)],
)  # fmt: skip
def test_number_size_follows_dynamodb(number: str, size: int) -> None:
    assert item_size({"n": {"N": number}}) == 1 + size


def test_quarantine_item_keeps_raw_bytes_where_and_why() -> None:
    from consumer.records import QUARANTINE_MAX_DATA, KinesisRecord, item_size, quarantine_item

    # GIVEN a poison record too large to keep whole
    raw = b"\xff" * (QUARANTINE_MAX_DATA + 10)
    record = KinesisRecord(raw, "pk", "4960", 2, 1_700_000_000_000)
    # WHEN quarantined
    item = quarantine_item(record, "shardId-000000000003", "not JSON", now_ms=5)
    # THEN it is keyed by its position (a replay overwrites it), says why, and fits DynamoDB
    assert item["id"] == {"S": "shardId-000000000003/4960/2"}
    assert item["data"]["B"] == raw[:QUARANTINE_MAX_DATA]
    assert item["data_truncated"] == {"BOOL": True}
    assert item["data_bytes"] == {"N": str(len(raw))}
    assert item["reason"] == {"S": "not JSON"}
    assert item_size(item) <= 400 * 1024


def _random_document(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice(["", "a", "héllo", "日本", "x" * rng.randrange(300)])
    if kind == 1:
        return rng.choice([0, 1, -1, 7, 100, -2500, 10**37 + 3, -(10**37), 2**63, 10**38, 10**40])
    if kind == 2:
        return Decimal(
            rng.choice(["0.1", "-1.5e-10", "3.14159", "1e125", "1E-129", "0.0", "-0", "1e126"])
        )
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return None
    if kind == 5:
        return Decimal(f"{rng.uniform(-1e6, 1e6):.6f}")
    if kind in (6, 7):
        return {f"k{i}": _random_document(rng, depth + 1) for i in range(rng.randrange(5))}
    return [_random_document(rng, depth + 1) for _ in range(rng.randrange(5))]


@pytest.mark.parametrize("seed", range(300))
def test_attribute_writes_what_type_serializer_writes_and_sizes_it_like_item_size(
    seed: int,
) -> None:
    document = _random_document(random.Random(seed))
    try:
        expected = TypeSerializer().serialize(document)
    except (TypeError, ValueError, ArithmeticError) as exc:
        with pytest.raises(type(exc)):
            attribute(document, 1)
        return
    converted, size = attribute(document, 1)
    assert converted == expected
    assert size == item_size({"": converted})
