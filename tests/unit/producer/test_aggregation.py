"""The KPL encoder: byte layout, size accounting, and what the library's deaggregator reads."""

from __future__ import annotations

import base64
import random

import aws_kinesis_agg.aggregator
import pytest
from aws_kinesis_agg.deaggregator import deaggregate_records

from producer.aggregation import MAGIC, AggregateBuilder, varint, varint_size
from tests.kpl import sub_records


def _library_deaggregate(payload: bytes, partition_key: str) -> list[tuple[str, bytes]]:
    kinesis = {
        "kinesisSchemaVersion": "1.0",
        "data": base64.b64encode(payload).decode(),
        "partitionKey": partition_key,
        "sequenceNumber": "1",
        "approximateArrivalTimestamp": 0.0,
    }
    event = [{"kinesis": kinesis}]
    return [
        (r["kinesis"]["partitionKey"], base64.b64decode(r["kinesis"]["data"]))
        for r in deaggregate_records(event)
    ]


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2**32, 2**63 - 1])
def test_varint_matches_protobuf(value: int) -> None:
    from google.protobuf.internal.encoder import _VarintBytes

    assert varint(value) == _VarintBytes(value)
    assert varint_size(value) == len(varint(value))


def test_round_trip_through_library_deaggregator() -> None:
    # GIVEN records with repeated and distinct keys, empty and binary data
    rng = random.Random(7)
    records = [
        (f"key-{rng.randrange(20)}", rng.randbytes(rng.randrange(0, 300))) for _ in range(200)
    ]
    builder = AggregateBuilder(1024 * 1024)
    for pk, data in records:
        assert builder.add(pk, data)
    # WHEN encoded
    payload = builder.encode()
    # THEN the library reads back every record, in order, with its own key
    assert payload.startswith(MAGIC)
    assert _library_deaggregate(payload, builder.partition_key) == records
    assert builder.size == len(payload)


def test_same_bytes_as_library_aggregator() -> None:
    # GIVEN the same records fed to aws-kinesis-agg's RecordAggregator and to ours
    rng = random.Random(3)
    records = [(f"pk{rng.randrange(5)}", rng.randbytes(50)) for _ in range(40)]
    library = aws_kinesis_agg.aggregator.RecordAggregator()
    ours = AggregateBuilder(51_200)
    for pk, data in records:
        library.add_user_record(pk, data)
        ours.add(pk, data)
    # THEN the encodings are byte-identical
    _, _, library_bytes = library.clear_and_get().get_contents()
    assert ours.encode() == library_bytes


def test_size_limit_is_respected_and_counts_the_partition_key() -> None:
    # GIVEN a 2 KiB limit and 100-byte records with distinct keys
    builder = AggregateBuilder(2048)
    added = 0
    while builder.add(f"partition-key-{added}", b"x" * 100):
        added += 1
    # THEN the aggregate plus its partition key fits and one more record would not
    assert len(builder.encode()) + len(builder.partition_key) <= 2048
    assert builder.count == added
    assert added > 10


def test_first_record_is_always_accepted() -> None:
    builder = AggregateBuilder(1024)
    assert builder.add("k", b"y" * 5000)
    assert not builder.add("k", b"z")
    assert [(pk, data) for pk, _, data in sub_records(builder.encode(), "k")] == [
        ("k", b"y" * 5000)
    ]


def test_large_records_and_many_keys_take_the_long_varint_path() -> None:
    # GIVEN records past the two-byte varint range (lengths >= 16384, key index >= 16384)
    big = [("big-1", b"a" * 20_000), ("big-2", b"b" * 100_000)]
    many = [(f"k{i}", b"") for i in range(16_500)]
    for records in (big, many):
        builder = AggregateBuilder(1024 * 1024)
        for pk, data in records:
            assert builder.add(pk, data)
        # WHEN encoded THEN the library reads back the same records and the size is exact
        payload = builder.encode()
        assert _library_deaggregate(payload, builder.partition_key) == records
        assert builder.size == len(payload)
