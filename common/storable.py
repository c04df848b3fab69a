"""The storability contract: can this JSON record be stored as a DynamoDB item, as sent?

One set of rules for both ends: the producer refuses at the door (413/422) every record the
consumer could not store, and the consumer builds its items with the same functions, so an
acknowledged record is always storable. DynamoDB's limits, from the DynamoDB Developer Guide
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html
for numbers and names, .../ServiceQuotas.html for item size, nesting and attribute names,
.../CapacityUnitCalculations.html for the size formula), each checked at its edge, just
inside and just outside, against DynamoDB Local in ``tests/unit/common/test_storable.py``:

- numbers: 0, or a magnitude from 1E-130 to 9.9999999999999999999999999999999999999E+125
  with at most 38 significant digits (leading and trailing zeros do not count);
- attribute names (map keys): 1 to 50,000 bytes of UTF-8. DynamoDB documents 64 KB, but
  DynamoDB Local refuses longer names than 50,000 bytes (an ``InternalFailure``: the default
  ``maxNameLength`` of jackson-core's ``StreamReadConstraints``, added in 2.16 by
  FasterXML/jackson-core#1047; DynamoDB Local 3.3.1 ships jackson-core 2.21); the
  contract takes the smaller limit so that a record is storable in AWS and locally alike;
- nesting: 32 levels, the item's own included: an attribute's value holds at most 31 maps or
  lists one inside the other;
- item size: 400 KB (409,600 bytes) counting attribute names and values by DynamoDB's formula;
- strings: valid Unicode (JSON can carry lone UTF-16 surrogates, UTF-8 cannot); empty strings
  and empty maps and lists are fine, an empty map key is not. (JSON makes no sets or binary.)

Numbers are kept exactly as sent: ``loads`` reads fractions as ``Decimal`` and integers too
long for a 64-bit integer as ``Decimal`` (Python refuses to read integers over 4,300 digits),
and the producer writes them back with their digits (``dumps_exact``).
"""

from __future__ import annotations

import json
import math
import sys
import threading
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

MAX_ITEM_BYTES = 400 * 1024
MAX_NAME_BYTES = 50_000
MAX_NESTED = 31  # maps/lists inside one attribute's value (DynamoDB: 32 levels with the item)
MAX_DIGITS = 38
MAX_EXPONENT = 125  # the largest adjusted exponent: 9.99..E+125
MIN_EXPONENT = -130  # the smallest: 1E-130
MAX_KEY_BYTES = 2048  # a partition key value (the item's ``id``)

# What the consumer adds to every item besides ``id``, ``data`` and ``partition_key``, at
# most (attribute name + largest value): where Kinesis put the record and when.
METADATA_MAX_BYTES = sum(
    len(name) + size
    for name, size in {
        "shard_id": 128,  # Kinesis ShardId: at most 128 characters
        "sequence_number": 129,  # Kinesis SequenceNumber: 0|([1-9]\d{0,128})
        "sub_sequence_number": 11,  # a 64-bit count: 19 digits -> 10 pairs + 1
        "arrival_time": 21,  # epoch milliseconds as a number: at most 38 digits
        "stored_at": 21,
        "ingested_at": 21,
        "client_id": 1,  # BOOL
    }.items()
)


class NotStorable(ValueError):
    """``problem`` with the value at ``path`` (keys and indexes from the record down);
    ``too_large`` when it is the item's size (HTTP 413 rather than 422)."""

    def __init__(self, problem: str, path: list[str | int] | None = None, too_large: bool = False):
        super().__init__(problem)
        self.problem = problem
        self.path: list[str | int] = path if path is not None else []
        self.too_large = too_large

    @property
    def field(self) -> str:
        """The path as ``data.items.3.price`` (long keys shortened)."""
        return ".".join(_shown(part) for part in self.path) or "record"

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


def _shown(part: str | int) -> str:
    """A path element for a message: long keys shortened, lone surrogates escaped."""
    text = str(part)
    if len(text) > 40:
        text = f"{text[:20]}...({len(text):,} characters)"
    return text.encode(errors="backslashreplace").decode()


# ---- JSON, exactly ----------------------------------------------------------------------


def _integer(text: str) -> int | Decimal:
    """A JSON integer: an ``int`` when it fits 64 bits, else a ``Decimal`` (exact, any
    length, and written back by ``dumps_exact`` with its digits)."""
    return int(text) if len(text) < 19 else Decimal(text)


# orjson reads JSON nested up to 1,024 levels; Python's parser counts each level against the
# recursion limit (1,000 by default on 3.11, shared with the caller's frames), so it stopped
# short of that (at ~990 levels on an empty stack, fewer inside a server). ``loads`` must read
# at least what orjson reads: a body the producer's fast path reads and the exact parser could
# not was refused whole by the FastAPI route where the fast path answered it record by record.
ORJSON_MAX_DEPTH = 1024
_DEEPER = threading.Lock()


def _exact(raw: bytes | str) -> Any:
    return json.loads(raw, parse_float=Decimal, parse_int=_integer)


def _exact_deep(raw: bytes | str) -> Any:
    """``_exact`` with room for ``ORJSON_MAX_DEPTH`` levels more than the caller's stack has
    used (one body at a time: the recursion limit is the interpreter's)."""
    with _DEEPER:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(limit + ORJSON_MAX_DEPTH + 64)
        try:
            return _exact(raw)
        finally:
            sys.setrecursionlimit(limit)


def loads(raw: bytes | str) -> Any:
    """The JSON value of ``raw`` with every number exact: fractions and long integers as
    ``Decimal``. Reads whatever orjson reads (and more: NaN, Infinity, any exponent or length).
    Raises ``json.JSONDecodeError`` for anything that is not JSON it can read, including
    nesting deeper than the parser goes (beyond 1,024 levels at the least) and exponents
    beyond any range."""
    try:
        try:
            return _exact(raw)
        except RecursionError:
            return _exact_deep(raw)  # rare: a second read with room for orjson's depth
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nested deeper than the parser reads", "", 0) from None
    except InvalidOperation:
        raise json.JSONDecodeError("a number's exponent is beyond any range", "", 0) from None
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(f"not UTF-8: {exc.reason}", "", exc.start) from None


def _fragment(value: Any) -> orjson.Fragment:
    if type(value) is Decimal:
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def dumps_exact(value: Any) -> bytes:
    """Compact UTF-8 JSON of a value made by ``loads`` (or orjson), numbers digit for digit."""
    return orjson.dumps(value, default=_fragment)


# ---- the rules --------------------------------------------------------------------------


def attribute(value: Any, nested: int = 0) -> tuple[dict[str, Any], int]:
    """The low-level AttributeValue of a JSON value and its size by DynamoDB's formula, or
    ``NotStorable`` naming the first thing DynamoDB would refuse (its path from ``value``).

    What boto3's ``TypeSerializer`` writes for these types (a test compares them), in one
    pass; ``nested`` is how many maps/lists already enclose ``value``.
    """
    kind = type(value)
    if kind is str:
        return {"S": value}, (len(value) if value.isascii() else _utf8_size(value))
    if kind is int:
        if -_SAFE_INT < value < _SAFE_INT:
            return {"N": str(value)}, _int_size(value)
        return _number(Decimal(value))
    if kind is bool:
        return {"BOOL": value}, 1
    if value is None:
        return {"NULL": True}, 1
    if kind is Decimal:
        return _number(value)
    if kind is float:  # the producer's fast path (orjson); exact by its guard, see fastpath.py
        if not math.isfinite(value):
            raise NotStorable("NaN and Infinity are not JSON numbers")
        return _number(Decimal(repr(value)))
    if kind is dict or kind is list:
        if nested >= MAX_NESTED:
            raise NotStorable(
                f"nested deeper than DynamoDB's 32 levels ({MAX_NESTED} maps or lists in "
                "one another under a record's data)"
            )
        return _map(value, nested + 1) if kind is dict else _list(value, nested + 1)
    raise NotStorable(f"{kind.__name__} is not a JSON value")


def _list(value: list[Any], nested: int) -> tuple[dict[str, Any], int]:
    elements = []
    size = 3
    index = 0
    try:
        for index, element in enumerate(value):  # noqa: B007 (the index names a failure)
            converted, element_size = attribute(element, nested)
            elements.append(converted)
            size += 1 + element_size
    except NotStorable as exc:
        exc.path.insert(0, index)
        raise
    return {"L": elements}, size


def _map(value: dict[str, Any], nested: int) -> tuple[dict[str, Any], int]:
    members = {}
    size = 3
    key = ""
    try:
        for key, member in value.items():
            converted, member_size = attribute(member, nested)
            members[key] = converted
            size += 1 + name_size(key) + member_size
    except NotStorable as exc:
        exc.path.insert(0, key)
        raise
    return {"M": members}, size


def name_size(name: str) -> int:
    """Bytes of an attribute name (a map key), or ``NotStorable``."""
    size = len(name) if name.isascii() else _utf8_size(name)
    if not size:
        raise NotStorable("an empty map key: DynamoDB needs attribute names of 1 byte or more")
    if size > MAX_NAME_BYTES:
        raise NotStorable(
            f"a map key of {size:,} bytes: attribute names may have {MAX_NAME_BYTES:,} at most"
        )
    return size


def _utf8_size(text: str) -> int:
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        raise NotStorable("a lone UTF-16 surrogate: not valid Unicode") from None


_SAFE_INT = 10**MAX_DIGITS  # below: 38 digits at most, within range, stored as written


def _int_size(value: int) -> int:
    """``number_size`` of an int of at most 38 digits, without a Decimal."""
    return _digits_size(str(abs(value)), value < 0)


def _digits_size(digits: str, negative: bool) -> int:
    """The size of an integer written as ``digits`` (at most 38 significant)."""
    digits = digits.lstrip("0")
    if not digits:
        return 1
    stripped = digits.rstrip("0")
    if (len(digits) - len(stripped)) % 2:
        stripped += "0"
    return (len(stripped) + 1) // 2 + 1 + negative


def _number(value: Decimal) -> tuple[dict[str, str], int]:
    """A number as its text (kept as sent) and size, if DynamoDB can hold it."""
    if not value.is_finite():
        raise NotStorable("NaN and Infinity are not JSON numbers")
    sign, digit_tuple, exponent = value.as_tuple()
    if not any(digit_tuple):
        return {"N": str(value)}, 1  # zero, whatever its exponent
    zeros = 0
    for digit in reversed(digit_tuple):
        if digit:
            break
        zeros += 1
    significant = len(digit_tuple) - zeros
    if significant > MAX_DIGITS:
        raise NotStorable(
            f"a number with {significant} significant digits: DynamoDB keeps {MAX_DIGITS}"
        )
    adjusted = value.adjusted()
    if adjusted > MAX_EXPONENT:
        raise NotStorable(
            f"a number of magnitude 1E+{adjusted}: DynamoDB's largest is 9.99...E+{MAX_EXPONENT}"
        )
    if adjusted < MIN_EXPONENT:
        raise NotStorable(
            f"a number of magnitude 1E{adjusted}: DynamoDB's smallest is 1E{MIN_EXPONENT}"
        )
    # base-100 digit pairs aligned on the decimal point, + 1, + 1 if negative (measured)
    low = int(exponent) + zeros  # the exponent of the last significant digit
    pairs = (significant + (low % 2) + 1) // 2
    return {"N": str(value)}, pairs + 1 + sign


def number_size(text: str) -> int:
    """Bytes of a number's text (an N value), by DynamoDB's formula."""
    digits = text[1:] if text[:1] == "-" else text
    if len(digits) <= MAX_DIGITS and digits.isascii() and digits.isdigit():
        return _digits_size(digits, digits is not text)  # an integer: no Decimal needed
    return _number(Decimal(text))[1]


class SizedItem(dict[str, Any]):
    """A low-level item that knows its size by DynamoDB's formula (``size``, measured when it
    was built), so a writer packing items by size need not walk it again."""

    __slots__ = ("size",)

    def __init__(self, item: dict[str, Any], size: int) -> None:
        super().__init__(item)
        self.size = size


def size_of(item: dict[str, Any]) -> int:
    """The size of a ``SizedItem`` as measured, of any other item by ``item_size``."""
    return item.size if type(item) is SizedItem else item_size(item)


def item_size(item: dict[str, Any], sized: dict[str, int] | None = None) -> int:
    """DynamoDB's size of a low-level ``item`` in bytes; ``sized`` gives the sizes of
    attributes already measured (by ``attribute``)."""
    sized = sized or {}
    return sum(
        len(name.encode()) + (sized[name] if name in sized else value_size(value))
        for name, value in item.items()
    )


def value_size(value: dict[str, Any]) -> int:
    """Bytes of one low-level AttributeValue: containers cost 3 + 1 per element."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + value_size(element) for element in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in inner.items())
    raise NotStorable(f"unexpected DynamoDB type {kind}")  # sets: JSON never makes them


def check_record(record_id: str, partition_key: str, data: Any) -> int:
    """The most the consumer's item for this record can weigh, or ``NotStorable`` (with
    ``too_large`` over 400 KB) naming the field. The producer's check at the door."""
    try:
        data_size = attribute(data)[1]
    except NotStorable as exc:
        exc.path.insert(0, "data")
        raise
    try:
        key_size = _utf8_size(partition_key)
    except NotStorable as exc:
        exc.path.insert(0, "partition_key")
        raise
    rest = len("id") + len(record_id) + len("partition_key") + key_size + METADATA_MAX_BYTES
    size = len("data") + data_size + rest
    if size > MAX_ITEM_BYTES:
        raise NotStorable(
            f"its item would take up to {size:,} bytes, over DynamoDB's {MAX_ITEM_BYTES:,} "
            f"(400 KB, attribute names included; the id, the partition key and where and when "
            f"the record was stored take up to {rest:,} of them)",
            ["data"],
            too_large=True,
        )
    return size
