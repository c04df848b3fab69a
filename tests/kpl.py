"""Reading KPL aggregates the way the KCL does, for assertions."""

from __future__ import annotations

import hashlib

import aws_kinesis_agg.aggregator  # noqa: F401  (fixes the path its messages_pb2 imports need)
from aws_kinesis_agg import messages_pb2

from common.kinesis import hash_key
from producer.aggregation import MAGIC


def sub_records(payload: bytes, outer_partition_key: str) -> list[tuple[str, int, bytes]]:
    """(partition key, hash key, data) of each user record in a Kinesis record.

    A sub-record's hash key is its explicit hash key when that field is set, else the MD5 of its
    partition key (the KCL's rule); a plain record is its own single user record.
    """
    if not payload.startswith(MAGIC):
        return [(outer_partition_key, hash_key(outer_partition_key), payload)]
    body, digest = payload[len(MAGIC) : -16], payload[-16:]
    assert hashlib.md5(body).digest() == digest, "bad MD5 trailer"
    agg = messages_pb2.AggregatedRecord()
    agg.ParseFromString(body)
    out = []
    for rec in agg.records:
        pk = agg.partition_key_table[rec.partition_key_index]
        if rec.HasField("explicit_hash_key_index"):
            key = int(agg.explicit_hash_key_table[rec.explicit_hash_key_index])
        else:
            key = hash_key(pk)
        out.append((pk, key, rec.data))
    return out
