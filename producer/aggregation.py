"""KPL aggregated-record encoding (the format of aws-kinesis-agg and the KCL's deaggregator).

An aggregated Kinesis record is ``F3 89 9A C2`` + protobuf ``AggregatedRecord`` + MD5 of the
protobuf bytes.  This module writes the protobuf by hand (a few varints), which is byte-identical
to the generated code and several times faster.  It knows nothing about shards: callers put only
user records that hash into one shard into one ``AggregateBuilder`` (see ``shards.py``), because
the KCL drops a whole aggregate when any sub-record hashes outside the receiving shard.
"""

from __future__ import annotations

import hashlib

MAGIC = b"\xf3\x89\x9a\xc2"
DIGEST_SIZE = 16
KINESIS_MAX_RECORD_BYTES = 1024 * 1024  # data + partition key of one Kinesis record

_PARTITION_KEY_TABLE_TAG = b"\x0a"  # AggregatedRecord.partition_key_table = 1, length-delimited
_RECORDS_TAG = b"\x1a"  # AggregatedRecord.records = 3, length-delimited
_RECORD_PK_INDEX_TAG = b"\x08"  # Record.partition_key_index = 1, varint
_RECORD_DATA_TAG = b"\x1a"  # Record.data = 3, length-delimited


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_size(value: int) -> int:
    """Number of bytes ``varint(value)`` takes."""
    return (max(value.bit_length(), 1) + 6) // 7


def _field_size(payload_len: int) -> int:
    """Bytes of a length-delimited field with ``payload_len`` bytes: tag, length, payload."""
    return 1 + varint_size(payload_len) + payload_len


class AggregateBuilder:
    """Accumulates user records for one Kinesis record in the KPL aggregated format.

    Contract: ``add`` accepts a record only while the encoded aggregate (magic, protobuf and
    digest) stays within ``max_bytes`` together with the aggregate's partition key; the first
    record is always accepted (a record too large to aggregate is the caller's business).
    ``encode`` may be called once records were added; the builder is not reused after.
    """

    __slots__ = ("_key_index", "_keys", "_max_bytes", "_records", "_size", "count")

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._key_index: dict[str, int] = {}
        self._keys: list[bytes] = []
        self._records: list[bytes] = []
        self._size = len(MAGIC) + DIGEST_SIZE
        self.count = 0

    @property
    def size(self) -> int:
        """Encoded size in bytes of what was added so far."""
        return self._size

    @property
    def partition_key(self) -> str:
        """Partition key of the aggregate: the first user record's key."""
        return self._keys[0].decode()

    def add(self, partition_key: str, data: bytes) -> bool:
        """Add one user record; False (and nothing changed) when it would not fit."""
        index = self._key_index.get(partition_key)
        key_bytes = b""
        added = 0
        if index is None:
            key_bytes = partition_key.encode()
            index = len(self._keys)
            added += _field_size(len(key_bytes))
        inner = 1 + varint_size(index) + _field_size(len(data))
        added += _field_size(inner)
        if self.count and self._size + added + len(self._keys[0]) > self._max_bytes:
            return False
        if key_bytes:
            self._key_index[partition_key] = index
            self._keys.append(key_bytes)
        self._records.append(
            b"".join(
                (
                    _RECORDS_TAG,
                    varint(inner),
                    _RECORD_PK_INDEX_TAG,
                    varint(index),
                    _RECORD_DATA_TAG,
                    varint(len(data)),
                    data,
                )
            )
        )
        self._size += added
        self.count += 1
        return True

    def encode(self) -> bytes:
        """The aggregated record: magic + protobuf + MD5(protobuf)."""
        parts = []
        for key in self._keys:
            parts.append(_PARTITION_KEY_TABLE_TAG)
            parts.append(varint(len(key)))
            parts.append(key)
        parts.extend(self._records)
        body = b"".join(parts)
        return b"".join((MAGIC, body, hashlib.md5(body).digest()))
