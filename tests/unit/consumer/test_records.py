"""Kinesis user record -> DynamoDB item, and what DynamoDB would refuse (poison records)."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer
from fastapi.testclient import TestClient

from common import envelope
from common.storable import MAX_ITEM_BYTES, MAX_NAME_BYTES, check_record, item_size, loads
from consumer.records import (
    QUARANTINE_PART_BYTES,
    KinesisRecord,
    PoisonRecord,
    quarantine_items,
    to_item,
)
from producer.config import ProducerSettings
from producer.main import create_app
from tests.fakes import FakeKinesis, even_shards
from tests.kpl import sub_records

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


@pytest.mark.parametrize(
    "size", [0, 10, QUARANTINE_PART_BYTES, QUARANTINE_PART_BYTES + 1, 1024 * 1024]
)
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
    assert [p["id"]["S"] for p in parts] == [
        f"{head['id']['S']}#{n}" for n in range(1, 1 + len(parts))
    ]
    assert b"".join(item["data"]["B"] for item in [head, *parts]) == raw
    assert all(item_size(item) <= MAX_ITEM_BYTES for item in [head, *parts])


def test_the_envelope_is_the_bytes_the_producer_has_always_written() -> None:
    # GIVEN a record with a minted id and one with the client's id
    # WHEN written THEN the bytes are compact JSON, keys in order, client_id only when true
    assert envelope.dump("r-1", {"a": [1, 0.5]}, False, now_ms=5) == (
        b'{"id":"r-1","ts":5,"data":{"a":[1,0.5]}}'
    )
    assert envelope.dump("order-1", Decimal("0.10"), True, now_ms=5) == (
        b'{"id":"order-1","ts":5,"data":0.10,"client_id":true}'
    )


def _largest_string(record_id: str, key: str) -> int:
    """The longest ASCII string ``data`` the producer accepts under this id and key."""
    room = MAX_ITEM_BYTES - check_record(record_id, key, "")
    check_record(record_id, key, "x" * room)
    with pytest.raises(Exception, match="over DynamoDB"):
        check_record(record_id, key, "x" * (room + 1))
    return room


NUMBER_EDGES = (  # DynamoDB's range and precision, both signs, ints past 64 bits, zeros
    "[0, -0, 1E-130, -1E-130, 9.9999999999999999999999999999999999999E+125, 0.1, 1e2, -7,"
    " 12345678901234567890123456789012345678, -0.00000000000000000000000000000000000001,"
    " 9223372036854775808, 123456789012345678901234567890.5]"
)
ROUND_TRIP = {  # name -> one record of a /batch body, as JSON text (numbers as sent)
    "ordinary": '{"data": "hello"}',
    "client id and key": '{"id": "order-7", "partition_key": "customer-1", "data": {"n": 1}}',
    "client id, no key": '{"id": "a.b:c_d-e", "data": [1, "two", {"three": 3}]}',
    "nested": '{"data": {"a": [1, {"b": [true, false, null, "x"]}], "c": {}, "d": [], "e": ""}}',
    "31 levels": '{"data": ' + json.dumps(_nested(31)) + "}",
    "unicode": r'{"data": {"\u00e9t\u00e9": "\ud83d\ude42 \u00fc", "\u65e5": "\u0000"}}',
    "number edges": '{"data": ' + NUMBER_EDGES + "}",
    "longest map key": '{"data": {"' + "k" * MAX_NAME_BYTES + '": 1}}',
    "largest item": '{"id": "big-1", "partition_key": "p", "data": "'
    + "x" * _largest_string("big-1", "p")
    + '"}',
}


def test_what_the_producer_puts_the_consumer_stores_as_sent() -> None:
    # GIVEN the producer (fast path, FastAPI app) against a fake Kinesis, and records of
    # every kind the storability contract allows, up to its edges
    kinesis = FakeKinesis(even_shards(3))
    conf = ProducerSettings(stream_name="s", max_buffered_time_ms=5)
    body = '{"records": [' + ", ".join(ROUND_TRIP.values()) + "]}"
    with TestClient(create_app(conf, client=kinesis)) as client:
        # WHEN they are posted in one batch, and one of them alone
        batch = client.post("/batch", content=body, headers={"content-type": "application/json"})
        single = client.post(
            "/", content=ROUND_TRIP["ordinary"], headers={"content-type": "application/json"}
        )
    assert batch.status_code == single.status_code == 200, (batch.text, single.text)
    assert batch.json()["failed_record_count"] == 0
    answers = [*batch.json()["records"], single.json()]
    sent = [loads(text) for text in [*ROUND_TRIP.values(), ROUND_TRIP["ordinary"]]]
    # AND the consumer turns each Kinesis user record (deaggregated as the KCL does) into the
    # item the sink writes
    items = {}
    for stored in kinesis.stored:
        for sub, (key, _, data) in enumerate(sub_records(stored.data, stored.partition_key)):
            record = KinesisRecord(data, key, stored.sequence_number, sub, 1_700_000_000_000)
            item = to_item(record, stored.shard_id, now_ms=1)
            items[item["id"]["S"]] = (item, stored.shard_id)
    # THEN every acknowledged record is one item under its id, on the shard the answer named,
    # its data exactly as sent, its key, and the client's id marked as the client's
    assert sorted(items) == sorted(a["id"] for a in answers)
    for record, answer in zip(sent, answers, strict=True):
        item, shard_id = items[answer["id"]]
        assert shard_id == answer["shard_id"]
        assert TypeDeserializer().deserialize(item["data"]) == record["data"]
        assert item["partition_key"] == {"S": record.get("partition_key", answer["id"])}
        assert ("client_id" in item) == ("id" in record)
        if "id" in record:
            assert answer["id"] == record["id"] and item["client_id"] == {"BOOL": True}
        assert int(item["ingested_at"]["N"]) > 1_700_000_000_000
        assert item.size <= MAX_ITEM_BYTES
