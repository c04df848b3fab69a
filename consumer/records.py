"""From a Kinesis user record to a DynamoDB item (pure: no AWS calls)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeSerializer

_SERIALIZER = TypeSerializer()


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
    arrival_time: int  # epoch ms, Kinesis's approximate arrival timestamp


def to_item(record: KinesisRecord, shard_id: str, now_ms: int | None = None) -> dict[str, Any]:
    """The item for ``record``: keyed by the producer's record id, ``data`` as native types.

    Raises ``PoisonRecord`` when the bytes are not the producer's envelope
    ``{"id": str, "ts": int, "data": any}`` or DynamoDB cannot represent the data.
    """
    try:
        envelope = json.loads(record.data, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PoisonRecord(f"not JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise PoisonRecord("not a JSON object")
    record_id = envelope.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise PoisonRecord("no string 'id'")
    if "data" not in envelope:
        raise PoisonRecord("no 'data'")
    ingested = envelope.get("ts")
    try:
        data = _SERIALIZER.serialize(envelope["data"])
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise PoisonRecord(f"data not storable in DynamoDB: {exc}") from exc
    item: dict[str, Any] = {
        "id": {"S": record_id},
        "data": data,
        "partition_key": {"S": record.partition_key},
        "shard_id": {"S": shard_id},
        "sequence_number": {"S": record.sequence_number},
        "sub_sequence_number": {"N": str(record.sub_sequence_number)},
        "arrival_time": {"N": str(record.arrival_time)},
        "stored_at": {"N": str(now_ms if now_ms is not None else int(time.time() * 1000))},
    }
    if isinstance(ingested, int):
        item["ingested_at"] = {"N": str(ingested)}
    return item
