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


_SMALL = 1 << 14  # values with one or two byte varints: nearly every length and index here
_SMALL_VARINTS = tuple(varint(i) for i in range(_SMALL))
# Precomputed field prefixes: "records" tag + length, "partition_key_index" tag + index + "data"
# tag, "partition_key_table" tag + length. Four appends a record instead of seven.
_RECORD_PREFIX = tuple(_RECORDS_TAG + v for v in _SMALL_VARINTS)
_INDEX_PREFIX = tuple(_RECORD_PK_INDEX_TAG + v + _RECORD_DATA_TAG for v in _SMALL_VARINTS)
_KEY_PREFIX = tuple(_PARTITION_KEY_TABLE_TAG + v for v in _SMALL_VARINTS)
_DIGEST_ROOM = bytes(DIGEST_SIZE)  # joined at the end, overwritten with the digest


class AggregateBuilder:
    """Accumulates user records for one Kinesis record in the KPL aggregated format.

    Contract: ``add`` accepts a record only while the encoded aggregate (magic, protobuf and
    digest) stays within ``max_bytes`` together with the aggregate's partition key, and while
    it holds fewer than ``max_count`` records (the KPL's AggregationMaxCount); the first
    record is always accepted (a record too large to aggregate is the caller's business).
    ``encode`` may be called once records were added; the builder is not reused after.
    This is the producer's hot path: sizes are computed inline and the protobuf is written as
    a flat list of byte strings joined once.
    """

    __slots__ = (
        "_first_key_len", "_key_index", "_keys", "_max_bytes", "_max_count", "_parts", "_size",
        "count",
    )  # fmt: skip

    def __init__(self, max_bytes: int, max_count: int = 4_294_967_295) -> None:
        self._max_bytes = max_bytes
        self._max_count = max_count
        self._key_index: dict[str, int] = {}
        self._keys: list[bytes] = []
        self._parts: list[bytes] = []
        self._size = len(MAGIC) + DIGEST_SIZE
        self._first_key_len = 0
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
        count = self.count
        if count >= self._max_count:
            return False
        index = self._key_index.get(partition_key)
        data_len = len(data)
        if index is None:
            key_bytes = partition_key.encode()
            key_len = len(key_bytes)
            index = len(self._keys)
            added = 2 + key_len if key_len < 128 else 1 + varint_size(key_len) + key_len
        else:
            key_bytes = None
            added = 0
        # the Record: index tag + index, data tag + length + data; then its own tag + length
        inner = (3 if index < 128 else 2 + varint_size(index)) + data_len
        inner += 1 if data_len < 128 else 2 if data_len < _SMALL else varint_size(data_len)
        added += inner + (2 if inner < 128 else 3 if inner < _SMALL else 1 + varint_size(inner))
        if count and self._size + added + self._first_key_len > self._max_bytes:
            return False
        if key_bytes is not None:
            self._key_index[partition_key] = index
            self._keys.append(key_bytes)
            if not count:
                self._first_key_len = key_len
        if inner < _SMALL and index < _SMALL:  # then data_len < _SMALL too
            self._parts += (
                _RECORD_PREFIX[inner], _INDEX_PREFIX[index], _SMALL_VARINTS[data_len], data
            )  # fmt: skip
        else:
            self._parts += (
                _RECORDS_TAG, varint(inner), _RECORD_PK_INDEX_TAG, varint(index),
                _RECORD_DATA_TAG, varint(data_len), data,
            )  # fmt: skip
        self._size += added
        self.count = count + 1
        return True

    def encode(self) -> bytearray:
        """The aggregated record: magic + protobuf + MD5(protobuf), in one buffer.

        The data is copied once, into that buffer (joined with room for the digest, which is
        then written in place); the MD5 reads the protobuf through a view of it. botocore
        takes a bytearray wherever it takes bytes (``botocore/validate.py``
        ``_validate_blob``: bytes, bytearray or str; ``serialize.py`` ``_get_base64``)."""
        parts: list[bytes] = [MAGIC]
        for key in self._keys:
            if len(key) < _SMALL:
                parts += (_KEY_PREFIX[len(key)], key)
            else:
                parts += (_PARTITION_KEY_TABLE_TAG, varint(len(key)), key)
        parts += self._parts
        parts.append(_DIGEST_ROOM)
        record = bytearray().join(parts)
        with memoryview(record) as view:
            view[-DIGEST_SIZE:] = hashlib.md5(view[len(MAGIC) : -DIGEST_SIZE]).digest()
        return record
