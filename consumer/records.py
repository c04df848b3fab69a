"""From a Kinesis user record to a DynamoDB item (pure: no AWS calls, nothing of amazon_kclpy).

The producer's wire format is compact UTF-8 JSON ``{"id": str, "ts": int, "data": any}``.
Every item this module returns is one DynamoDB will accept: whatever it would reject (and so
make every retry of the batch fail, stalling the shard) is a ``PoisonRecord`` instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT

MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's item size limit, attribute names included
MAX_KEY_BYTES = 2048  # DynamoDB's limit for a partition key value
MAX_DATA_NESTING = 31  # maps/lists inside a top-level attribute; DynamoDB rejects a 32nd


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


def to_item(record: KinesisRecord, shard_id: str, now_ms: int | None = None) -> dict[str, Any]:
    """The low-level item for ``record``: keyed by the producer's id, ``data`` as native types.

    ``stored_at`` is ``now_ms`` (default: the wall clock). ``ingested_at`` is the envelope's
    ``ts``, left out when that is not an integer DynamoDB can store. Raises ``PoisonRecord``
    when the bytes are not the producer's envelope or DynamoDB could not store the item.
    """
    envelope = _envelope(record.data)
    ingested = envelope.get("ts")
    try:
        data, data_size = attribute(envelope["data"], 1)
    except UnicodeEncodeError as exc:  # a lone surrogate (JSON "\ud800") has no UTF-8
        raise PoisonRecord(f"not encodable as UTF-8: {exc!r}") from exc
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise PoisonRecord(f"data not storable in DynamoDB: {exc!r}") from exc
    item: dict[str, Any] = {
        "id": {"S": envelope["id"]},
        "data": data,
        "partition_key": {"S": record.partition_key},
        "shard_id": {"S": shard_id},
        "sequence_number": {"S": record.sequence_number},
        "sub_sequence_number": {"N": str(record.sub_sequence_number)},
        "arrival_time": {"N": str(record.approximate_arrival_timestamp)},
        "stored_at": {"N": str(now_ms if now_ms is not None else time.time_ns() // 1_000_000)},
    }
    if _is_storable_int(ingested):
        item["ingested_at"] = {"N": str(ingested)}
    try:
        size = item_size(item, sized={"data": data_size})
    except UnicodeEncodeError as exc:  # a lone surrogate (JSON "\ud800") has no UTF-8
        raise PoisonRecord(f"not encodable as UTF-8: {exc!r}") from exc
    if size > MAX_ITEM_BYTES:
        raise PoisonRecord(f"item of {size} bytes exceeds DynamoDB's {MAX_ITEM_BYTES}")
    return item


def _envelope(raw: bytes) -> dict[str, Any]:
    """The parsed envelope, with a usable string ``id`` and a ``data`` key."""
    try:
        envelope = json.loads(raw, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PoisonRecord(f"not JSON: {exc!r}") from exc
    if not isinstance(envelope, dict):
        raise PoisonRecord("not a JSON object")
    record_id = envelope.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise PoisonRecord("no string 'id'")
    if len(record_id.encode(errors="surrogatepass")) > MAX_KEY_BYTES:
        raise PoisonRecord(f"'id' longer than {MAX_KEY_BYTES} bytes")
    if "data" not in envelope:
        raise PoisonRecord("no 'data'")
    return envelope


def _is_storable_int(value: Any) -> bool:
    """An int (not a bool) within DynamoDB's 38 significant digits."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**38


def attribute(value: Any, depth: int) -> tuple[dict[str, Any], int]:
    """The low-level AttributeValue of a JSON value and its DynamoDB size, in one pass.

    What ``TypeSerializer`` writes, for the types ``json.loads(parse_float=Decimal)`` makes,
    several times faster (its chain of isinstance checks ran per value), while refusing what
    DynamoDB rejects in a document: nesting deeper than ``MAX_DATA_NESTING``, empty map keys
    (``PoisonRecord``), numbers beyond 38 digits or its range (``decimal`` errors, as
    ``TypeSerializer`` raises them). A test checks both against ``TypeSerializer`` and
    ``item_size`` on random documents.
    """
    kind = type(value)
    if kind is str:
        return {"S": value}, len(value.encode())
    if kind is int:
        if -_SAFE_INT < value < _SAFE_INT:
            return {"N": str(value)}, _int_size(value)
        text = str(DYNAMODB_CONTEXT.create_decimal(value))
        return {"N": text}, _number_size(text)
    if kind is bool:
        return {"BOOL": value}, 1
    if value is None:
        return {"NULL": True}, 1
    if kind is Decimal:
        text = str(DYNAMODB_CONTEXT.create_decimal(value))
        return {"N": text}, _number_size(text)
    if kind is dict or kind is list:
        if depth > MAX_DATA_NESTING:
            raise PoisonRecord(f"'data' nested deeper than {MAX_DATA_NESTING} levels")
        size = 3
        if kind is list:
            elements = []
            for element in value:
                converted, element_size = attribute(element, depth + 1)
                elements.append(converted)
                size += 1 + element_size
            return {"L": elements}, size
        if "" in value:
            raise PoisonRecord("'data' has an empty map key")
        members = {}
        for key, member in value.items():
            converted, member_size = attribute(member, depth + 1)
            members[key] = converted
            size += 1 + len(key.encode()) + member_size
        return {"M": members}, size
    raise TypeError(f"unsupported type {kind.__name__}")  # not made by json.loads


_SAFE_INT = 10**38  # fewer digits than DynamoDB's 38-digit precision: stored as written


def _int_size(value: int) -> int:
    """``_number_size`` of an int, without parsing a Decimal."""
    if not value:
        return 1
    digits = str(abs(value))
    stripped = digits.rstrip("0")
    if (len(digits) - len(stripped)) % 2:
        stripped += "0"
    return (len(stripped) + 1) // 2 + 1 + (value < 0)


def item_size(item: dict[str, Any], sized: dict[str, int] | None = None) -> int:
    """DynamoDB's size of ``item`` in bytes (its documented formula; an upper bound);
    ``sized`` gives the sizes of attributes already measured."""
    sized = sized or {}
    return sum(
        len(name.encode()) + (sized[name] if name in sized else _value_size(value))
        for name, value in item.items()
    )


def _value_size(value: dict[str, Any]) -> int:
    """Bytes of one low-level AttributeValue: containers cost 3 + 1 per element."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return _number_size(inner)
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(element) for element in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in inner.items())
    raise PoisonRecord(f"unexpected DynamoDB type {kind}")  # sets: JSON never makes them


def _number_size(text: str) -> int:
    """Bytes of a number: its significant digits in base-100 pairs aligned on the decimal
    point, plus 1, plus 1 more if negative (measured against DynamoDB Local)."""
    sign, digit_tuple, exponent = Decimal(text).as_tuple()
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    if not digits:
        return 1  # zero
    stripped = digits.rstrip("0")
    exponent = int(exponent) + len(digits) - len(stripped)
    if exponent % 2:
        stripped += "0"
    pairs = (len(stripped) + 1) // 2
    return pairs + 1 + sign


QUARANTINE_MAX_DATA = 350 * 1024  # the raw bytes kept; the rest of the item stays under 400 KB


def quarantine_item(
    record: KinesisRecord, shard_id: str, reason: str, now_ms: int | None = None
) -> dict[str, Any]:
    """The quarantine item for a poison record: its raw bytes, where it was and why.

    Keyed by ``<shard>/<sequence>/<sub-sequence>``, so a replay overwrites, never duplicates.
    Bytes beyond ``QUARANTINE_MAX_DATA`` are cut and ``data_truncated`` says so.
    """
    kept = record.data[:QUARANTINE_MAX_DATA]
    return {
        "id": {"S": f"{shard_id}/{record.sequence_number}/{record.sub_sequence_number}"},
        "data": {"B": kept},
        "data_bytes": {"N": str(len(record.data))},
        "data_truncated": {"BOOL": len(kept) < len(record.data)},
        "reason": {"S": reason[:1000]},
        "partition_key": {"S": record.partition_key},
        "shard_id": {"S": shard_id},
        "sequence_number": {"S": record.sequence_number},
        "sub_sequence_number": {"N": str(record.sub_sequence_number)},
        "arrival_time": {"N": str(record.approximate_arrival_timestamp)},
        "quarantined_at": {"N": str(now_ms if now_ms is not None else time.time_ns() // 1_000_000)},
    }
