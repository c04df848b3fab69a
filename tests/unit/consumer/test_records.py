"""Kinesis user record -> DynamoDB item, and what DynamoDB would refuse (poison records)."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from common.storable import MAX_ITEM_BYTES, item_size
from consumer.records import (
    QUARANTINE_PART_BYTES,
    KinesisRecord,
    PoisonRecord,
    quarantine_items,
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
    # AND it carries its size by DynamoDB's formula, measured once (the sink packs by it)
    assert item.size == item_size(dict(item))


def test_an_item_expires_a_fixed_time_after_its_arrival_when_a_ttl_is_set() -> None:
    # GIVEN no TTL: no expiry attribute (the default)
    assert "expires_at" not in to_item(_record(_body(1)), SHARD, now_ms=0)
    # WHEN a TTL of 30 days is set
    ttl = 30 * 86400
    first = to_item(_record(_body(1)), SHARD, now_ms=1, ttl_seconds=ttl)
    again = to_item(_record(_body(1)), SHARD, now_ms=9_000_000, ttl_seconds=ttl)
    # THEN the item expires 30 days after the record reached Kinesis (epoch seconds, as
    # DynamoDB's TTL reads them), however late it is written again (a replay)
    assert first["expires_at"] == again["expires_at"] == {"N": str(1_700_000_000 + ttl)}


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
        (b'{"id": "x", "data": NaN}', "data: NaN"),
        (b'{"id": "x", "data": 1e400}', "data: a number of magnitude 1E+400"),
        # the issue's poison cases: DynamoDB's range is narrower than boto3's context
        (b'{"id": "x", "data": 1e126}', "data: a number of magnitude 1E+126"),
        (b'{"id": "x", "data": {"a": [1e-131]}}', "data.a.0: a number of magnitude 1E-131"),
        (b'{"id": "x", "data": 123456789012345678901234567890123456789}', "39 significant"),
        (b'{"id": "x", "data": %s}' % (b"7" * 5000), "5000 significant digits"),
        (b'{"id": "x", "data": {"%s": 1}}' % (b"k" * 70_000), "map key of 70,000 bytes"),
        (b'{"id": "x", "data": "\\ud800"}', "lone UTF-16 surrogate"),
        (b'{"id": "\\ud800", "data": 1}', "'id' is not valid Unicode"),
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


def test_a_client_id_is_marked_on_the_item() -> None:
    # GIVEN envelopes with a client's id and with a minted one
    chosen = to_item(_record(_body(1, id="order-1", client_id=True)), SHARD, now_ms=0)
    minted = to_item(_record(_body(1)), SHARD, now_ms=0)
    # THEN only the client's is marked, for the sink's latest-copy-wins write
    assert chosen["client_id"] == {"BOOL": True}
    assert "client_id" not in minted


@pytest.mark.parametrize("size", [0, 10, QUARANTINE_PART_BYTES, QUARANTINE_PART_BYTES + 1,
                                  1024 * 1024])  # fmt: skip
def test_quarantine_keeps_every_byte_where_and_why(size: int) -> None:
    # GIVEN a poison record of up to 1 MiB (the most Kinesis carries; the 500 KB
    # record was cut to 350 KB)
    raw = random.Random(size).randbytes(size)
    record = KinesisRecord(raw, "pk", "4960", 2, 1_700_000_000_000)
    # WHEN quarantined
    head, *parts = quarantine_items(record, "shardId-000000000003", "not JSON", now_ms=5)
    # THEN the head is keyed by its position (a replay overwrites it) and says why and how long
    assert head["id"] == {"S": "shardId-000000000003/4960/2"}
    assert head["reason"] == {"S": "not JSON"}
    assert head["data_bytes"] == {"N": str(size)}
    assert "data_truncated" not in head
    # AND the bytes are all there, over as many items as it takes, each fitting DynamoDB
    assert head["parts"] == {"N": str(1 + len(parts))}
    assert [p["id"]["S"] for p in parts] == [f"{head['id']['S']}#{n}" for n in
                                             range(1, 1 + len(parts))]  # fmt: skip
    assert b"".join(item["data"]["B"] for item in [head, *parts]) == raw
    assert all(item_size(item) <= MAX_ITEM_BYTES for item in [head, *parts])
