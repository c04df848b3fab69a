"""From a Kinesis user record to a DynamoDB item (pure: no AWS calls, nothing of amazon_kclpy).

The bytes are the producer's record envelope (``common.envelope``: ``id``, ``ts``, ``data``,
``client_id`` when the client chose the id). Every item this module returns passes the
storability contract (``common.storable``), the same rules the producer applied before it
acknowledged the record; what fails them is a ``PoisonRecord``, quarantined whole. (Whatever
DynamoDB still refuses, the sink isolates item by item: no record can stall a shard.)
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from common import envelope
from common.storable import MAX_ITEM_BYTES, NotStorable, SizedItem, attribute, item_size

TTL_ATTRIBUTE = "expires_at"  # epoch seconds; the records table's TTL attribute when enabled


class PoisonRecord(Exception):
    """A record that can never be stored as it is; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class KinesisRecord:
    """One deaggregated user record as the KCL hands it over."""

    data: bytes
    partition_key: str
    sequence_number: str
    sub_sequence_number: int
    approximate_arrival_timestamp: int  # epoch ms, Kinesis's approximate arrival time


def to_item(
    record: KinesisRecord, shard_id: str, now_ms: int | None = None, ttl_seconds: int = 0
) -> SizedItem:
    """The low-level item for ``record``: keyed by its id, ``data`` as native types, with its
    size by DynamoDB's formula (``SizedItem.size``).

    ``stored_at`` is ``now_ms`` (default: the wall clock). ``ingested_at`` is the envelope's
    ``ts``, left out when that is not an integer DynamoDB can store. ``client_id`` (true) marks
    an id the client chose: the sink then keeps the copy with the latest stream position.
    ``ttl_seconds``: the item gets ``expires_at``, the record's Kinesis arrival plus that many
    seconds (the same however often the record is written again, replays included).
    Raises ``PoisonRecord`` when the bytes are not the producer's envelope or DynamoDB could
    not store the item (the storability contract, ``common.storable``).
    """
    try:
        body = envelope.load(record.data)
    except envelope.NotAnEnvelope as exc:
        raise PoisonRecord(str(exc)) from exc
    try:
        data, data_size = attribute(body.data)
    except NotStorable as exc:
        exc.path.insert(0, "data")
        raise PoisonRecord(f"not storable in DynamoDB: {exc}") from exc
    item: dict[str, Any] = {
        "id": {"S": body.id},
        "data": data,
        "partition_key": {"S": record.partition_key},
        "shard_id": {"S": shard_id},
        "sequence_number": {"S": record.sequence_number},
        "sub_sequence_number": {"N": str(record.sub_sequence_number)},
        "arrival_time": {"N": str(record.approximate_arrival_timestamp)},
        "stored_at": {"N": str(now_ms if now_ms is not None else time.time_ns() // 1_000_000)},
    }
    if body.ts is not None and abs(body.ts) < 10**38:  # DynamoDB's 38 significant digits
        item["ingested_at"] = {"N": str(body.ts)}
    if body.client_id:
        item["client_id"] = {"BOOL": True}
    if ttl_seconds:
        expires = record.approximate_arrival_timestamp // 1000 + ttl_seconds
        item[TTL_ATTRIBUTE] = {"N": str(expires)}
    try:
        size = item_size(item, sized={"data": data_size})
    except (NotStorable, UnicodeEncodeError) as exc:  # a partition key from another writer
        raise PoisonRecord(f"not storable in DynamoDB: {exc}") from exc
    if size > MAX_ITEM_BYTES:
        raise PoisonRecord(f"item of {size} bytes exceeds DynamoDB's {MAX_ITEM_BYTES}")
    return SizedItem(item, size)


QUARANTINE_PART_BYTES = 300 * 1024  # raw bytes per quarantine item (a head item's other
# attributes take at most ~5 KB: a 1,000-character reason, a 256-character partition key)


def quarantine_items(
    record: KinesisRecord, shard_id: str, reason: str, now_ms: int | None = None
) -> list[dict[str, Any]]:
    """The quarantine items for a poison record: every byte of it, where it was and why.

    The head item is keyed by ``<shard>/<sequence>/<sub-sequence>`` (a replay of the stream
    overwrites it, never duplicates it) and holds the first ``QUARANTINE_PART_BYTES`` of the
    raw bytes, their length and SHA-256, the number of parts, the reason and where the record
    was. A longer record (Kinesis carries up to 1 MiB, DynamoDB items hold 400 KB) continues
    in items ``<head id>#1``, ``#2``, ... whose ``part_of`` names the head;
    ``python -m consumer.replay`` joins them and checks length and digest.
    """
    key = f"{shard_id}/{record.sequence_number}/{record.sub_sequence_number}"
    raw, step = record.data, QUARANTINE_PART_BYTES
    parts = [raw[i : i + step] for i in range(0, len(raw), step)] or [b""]
    head = {
        "id": {"S": key},
        "data": {"B": parts[0]},
        "data_bytes": {"N": str(len(raw))},
        "data_sha256": {"S": hashlib.sha256(raw).hexdigest()},
        "parts": {"N": str(len(parts))},
        "reason": {"S": reason[:1000]},
        "partition_key": {"S": record.partition_key},
        "shard_id": {"S": shard_id},
        "sequence_number": {"S": record.sequence_number},
        "sub_sequence_number": {"N": str(record.sub_sequence_number)},
        "arrival_time": {"N": str(record.approximate_arrival_timestamp)},
        "quarantined_at": {"N": str(now_ms if now_ms is not None else time.time_ns() // 1_000_000)},
    }
    rest = [
        {
            "id": {"S": f"{key}#{n}"},
            "part_of": {"S": key},
            "part": {"N": str(n)},
            "data": {"B": part},
        }
        for n, part in enumerate(parts[1:], start=1)
    ]
    return [head, *rest]
