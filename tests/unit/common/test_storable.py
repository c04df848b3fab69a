"""The storability contract (``common/storable.py``) against DynamoDB Local itself: at every
limit a value just inside must be accepted by both, one just outside refused by both. The
real server's answer is the oracle; the contract's verdict must match it."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import orjson
import pytest
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from common.storable import (
    MAX_ITEM_BYTES,
    MAX_NAME_BYTES,
    METADATA_MAX_BYTES,
    NotStorable,
    attribute,
    check_record,
    dumps_exact,
    item_size,
    loads,
)
from local_stack.ephemeral import EphemeralDynamoDB

NINES = "9." + "9" * 37  # 38 significant digits


class Oracle:
    """Puts items into DynamoDB Local's ``records`` table; True when it takes them."""

    def __init__(self, server: EphemeralDynamoDB) -> None:
        # no retries: DynamoDB Local answers some refusals with a 500 (InternalFailure)
        self.client = server.client(retries={"max_attempts": 1}, parameter_validation=False)
        self.puts = 0

    def accepts(self, item: dict[str, Any]) -> bool:
        self.puts += 1
        try:
            self.client.put_item(TableName="records", Item={"id": {"S": "oracle"}, **item})
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            assert code in ("ValidationException", "InternalFailure"), exc
            return False
        return True


@pytest.fixture(scope="module")
def oracle(dynamodb_local: EphemeralDynamoDB) -> Oracle:
    return Oracle(dynamodb_local)


def _raw(value: Any) -> dict[str, Any]:
    """The AttributeValue of a JSON value with no checks at all (what a careless writer
    would send)."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if value is None:
        return {"NULL": True}
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list):
        return {"L": [_raw(v) for v in value]}
    return {"M": {k: _raw(v) for k, v in value.items()}}


def _contract(value: Any) -> dict[str, Any] | None:
    """The contract's AttributeValue for ``value``, or None when it refuses it."""
    try:
        return attribute(value)[0]
    except NotStorable:
        return None


def _nested(levels: int, kind: type = dict) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"k": value} if kind is dict else [value]
    return value


EDGES = {
    # numbers: magnitude 1E-130 .. 9.99..E+125, 38 significant digits
    "largest number": (Decimal(NINES + "E+125"), True),
    "just above it": (Decimal("1E+126"), False),
    "largest negative": (Decimal("-" + NINES + "E+125"), True),
    "just below it": (Decimal("-1E+126"), False),
    "smallest magnitude": (Decimal("1E-130"), True),
    "just under it": (Decimal(NINES + "E-131"), False),
    "smallest negative magnitude": (Decimal("-1E-130"), True),
    "just under it, negative": (Decimal("-" + NINES + "E-131"), False),
    "38 digits": (Decimal("1234567890123456789012345678901234567.8"), True),
    "39 digits": (Decimal("1234567890123456789012345678901234567.89"), False),
    "38-digit int": (10**38 - 1, True),
    "39-digit int": (10**38 + 1, False),
    "39 digits, the last a trailing zero": (10**38, True),
    "trailing zeros do not count": (Decimal("1." + "0" * 42), True),
    "leading zeros do not count": (Decimal("0." + "0" * 41 + "1234"), True),
    "126 digits": (10**125, True),
    "127 digits": (10**126, False),
    "zero with any exponent": (Decimal("0E-200"), True),
    "negative zero": (Decimal("-0.0"), True),
    # attribute names: 1 .. 50,000 bytes (DynamoDB Local's limit; AWS documents 64 KB)
    "name of 50,000 bytes": ({"k" * MAX_NAME_BYTES: 1}, True),
    "name of 50,001 bytes": ({"k" * (MAX_NAME_BYTES + 1): 1}, False),
    "name of 50,000 bytes in 2-byte characters": ({"é" * (MAX_NAME_BYTES // 2): 1}, True),
    "one byte more": ({"é" * (MAX_NAME_BYTES // 2) + "k": 1}, False),
    "70,000-character name (the issue's)": ({"k" * 70_000: 1}, False),
    "nested long name": ({"a": [{"k" * (MAX_NAME_BYTES + 1): 1}]}, False),
    "empty name": ({"": 1}, False),
    # nesting: 31 maps/lists in one another under the attribute (32 levels with the item)
    "31 maps": (_nested(31), True),
    "32 maps": (_nested(32), False),
    "31 lists": (_nested(31, list), True),
    "32 lists": (_nested(32, list), False),
    "31 mixed": ([{"a": _nested(29)}], True),
    "32 mixed": ([{"a": _nested(30, list)}], False),
    # strings and containers DynamoDB takes
    "empty string": ("", True),
    "NUL character": ("a\x00b", True),
    "empty map": ({}, True),
    "empty list": ([], True),
    "empty string in a map": ({"a": ""}, True),
}


@pytest.mark.parametrize("case", EDGES)
def test_each_limit_is_dynamodbs_just_inside_and_just_outside(oracle: Oracle, case: str) -> None:
    value, storable = EDGES[case]
    # WHEN the contract judges the value and DynamoDB Local is asked to store it
    converted = _contract(value)
    accepted = oracle.accepts({"data": converted if converted is not None else _raw(value)})
    # THEN both give the expected answer
    assert (converted is not None, accepted) == (storable, storable)


@pytest.mark.parametrize(
    "element",
    ["x", "日本", None, True, {"ab": True}, [1, "é"], {}, [], 12345678, -12, 10**37 + 1,
     Decimal("-0.00100"), Decimal("1E+2"), Decimal("0.001"), Decimal("1.25"),
     Decimal("12345678901234567890"), Decimal("-9.9E-130")],
)  # fmt: skip
def test_the_item_size_limit_is_dynamodbs_to_the_byte(oracle: Oracle, element: Any) -> None:
    # GIVEN a list of 2,000 elements of one kind, then a string topping the item up to 400 KB
    data = attribute([element] * 2000)[0]
    item = {"id": {"S": "oracle"}, "data": data, "pad": {"S": ""}}
    item["pad"] = {"S": "x" * (MAX_ITEM_BYTES - item_size(item))}
    # WHEN it weighs 409,600 bytes by the contract's formula, then one more
    assert item_size(item) == MAX_ITEM_BYTES
    over = {**item, "pad": {"S": item["pad"]["S"] + "x"}}
    # THEN DynamoDB Local takes the first and refuses the second
    assert oracle.accepts({k: v for k, v in item.items() if k != "id"})
    assert not oracle.accepts({k: v for k, v in over.items() if k != "id"})


@pytest.mark.parametrize(
    ("number", "size"),
    # base-100 digit pairs aligned on the decimal point, + 1, + 1 if negative (DynamoDB
    # Local 3.3.1; the test above checks such sizes against it 2,000 at a time)
    [("0", 1), ("1", 2), ("12", 2), ("123", 3), ("1234", 3), ("100", 2), ("1000000", 2),
     ("1700000000000", 3), ("1E+2", 2), ("0.1", 2), ("0.001", 2), ("1.5", 3), ("1.25", 3),
     ("10.5", 3), ("-1", 3), ("-12", 3), ("123456789", 6), ("12345678901234567890", 11),
     ("-0", 1), ("0007", 2), ("-00120", 4)],
)  # fmt: skip
def test_number_size(number: str, size: int) -> None:
    assert item_size({"n": {"N": number}}) == 1 + size
    assert attribute(Decimal(number))[1] == size


def test_the_producers_bound_holds_for_the_consumers_largest_item(oracle: Oracle) -> None:
    # GIVEN the largest data the producer takes for a long id and partition key
    record_id, key = "i" * 128, "p" * 256
    room = MAX_ITEM_BYTES - check_record(record_id, key, "")
    check_record(record_id, key, "x" * room)
    with pytest.raises(NotStorable) as over:
        check_record(record_id, key, "x" * (room + 1))
    assert over.value.too_large
    # WHEN the consumer builds its item with every attribute as long as it can be
    item = {
        "id": {"S": record_id}, "data": {"S": "x" * room}, "partition_key": {"S": key},
        "shard_id": {"S": "s" * 128}, "sequence_number": {"S": "9" * 129},
        "sub_sequence_number": {"N": str(2**63 - 1)}, "arrival_time": {"N": "9" * 38},
        "stored_at": {"N": "9" * 38}, "ingested_at": {"N": "9" * 38},
        "client_id": {"BOOL": True},
    }  # fmt: skip
    # THEN it is within the producer's bound, and DynamoDB Local stores it
    assert item_size(item) <= MAX_ITEM_BYTES
    assert item_size(item) - item_size({"id": item["id"], "data": item["data"],
                                        "partition_key": item["partition_key"]}) \
        <= METADATA_MAX_BYTES  # fmt: skip
    assert oracle.accepts({k: v for k, v in item.items() if k != "id"})


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    """JSON values crowding DynamoDB's limits."""
    kind = rng.randrange(8 if depth < 34 else 5)
    if kind == 0:
        return rng.choice(["", "a", "héllo", "日本", "\x00", "x" * rng.randrange(300)])
    if kind == 1:
        digits = rng.choice([1, 2, 37, 38, 39, 40])
        mantissa = "".join(rng.choice("0123456789") for _ in range(digits)).lstrip("0") or "1"
        exponent = rng.choice([-170, -131, -130, -129, -1, 0, 1, 86, 87, 88, 89, 125, 126])
        return Decimal(f"{rng.choice(['', '-'])}{mantissa}E{exponent - len(mantissa) + 1}")
    if kind == 2:
        return rng.choice([0, -1, 2**63, 10**37, 10**38, 10**38 + 1, 10**125, 10**126])
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return Decimal(f"{rng.uniform(-1e6, 1e6):.6f}")
    if kind in (5, 6):
        size = rng.choice([1, 2, 3, MAX_NAME_BYTES - 1, MAX_NAME_BYTES, MAX_NAME_BYTES + 1])
        names = ["k" * size if rng.random() < 0.02 else f"k{i}" for i in range(rng.randrange(3))]
        if rng.random() < 0.02:
            names.append("")
        return {name: _random_value(rng, depth + 1) for name in names}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(1 if depth > 25 else 4))]


@pytest.mark.parametrize("seed", range(40))
def test_random_documents_near_the_limits_get_dynamodbs_verdict(oracle: Oracle, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(5):
        value = _random_value(rng)
        converted = _contract(value)
        accepted = oracle.accepts({"data": converted if converted is not None else _raw(value)})
        assert (converted is not None) == accepted, value


def _document(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice(["", "a", "héllo", "日本", "x" * rng.randrange(300)])
    if kind == 1:
        return rng.choice([0, 1, -1, 7, 100, -2500, 10**37 + 3, -(10**37), 2**63, 10**38, 10**40])
    if kind == 2:
        return Decimal(
            rng.choice(["0.1", "-1.5e-10", "3.14159", "1e125", "1E-129", "0.0", "-0", "1e126"])
        )
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return None
    if kind == 5:
        return Decimal(f"{rng.uniform(-1e6, 1e6):.6f}")
    if kind in (6, 7):
        return {f"k{i}": _document(rng, depth + 1) for i in range(rng.randrange(5))}
    return [_document(rng, depth + 1) for _ in range(rng.randrange(5))]


@pytest.mark.parametrize("seed", range(300))
def test_attribute_writes_what_type_serializer_writes_and_sizes_it_like_item_size(
    seed: int,
) -> None:
    # boto3's serializer is no validator (its context allows 1E+126, refuses 10**38): where
    # both take a document, they write the same thing, and the size is item_size's
    document = _document(random.Random(seed))
    converted = _contract(document)
    if converted is None:
        return
    expected: object
    try:
        expected = TypeSerializer().serialize(document)
    except (TypeError, ValueError, ArithmeticError):
        expected = converted
    assert converted == expected
    assert attribute(document)[1] == item_size({"": converted})


@pytest.mark.parametrize(
    ("text", "value"),
    [("0.1", Decimal("0.1")), ("123456789.123456789", Decimal("123456789.123456789")),
     ("1e2", Decimal("1e2")), ("42", 42), ("123456789012345678", 123456789012345678),
     ("1234567890123456789", Decimal("1234567890123456789")),
     ("1" * 5000, Decimal("1" * 5000)), ("-0", 0)],
)  # fmt: skip
def test_loads_keeps_numbers_exact_and_dumps_writes_them_back(text: str, value: Any) -> None:
    # GIVEN numbers a double would round, and integers Python refuses to read past 4,300 digits
    parsed = loads(f'{{"n": {text}}}')["n"]
    # WHEN read, and written back
    assert parsed == value and type(parsed) is type(value)
    # THEN the text carries the same number
    assert Decimal(json.loads(dumps_exact({"n": parsed}), parse_float=str, parse_int=str)["n"]) \
        == Decimal(text)  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "problem"),
    [(b"[" * 100_000 + b"]" * 100_000, "nested deeper"), (b"1e9999999999999999999", "exponent"),
     (b'"\xff"', "UTF-8"), (b"{nope", "Expecting")],
)  # fmt: skip
def test_loads_refuses_what_it_cannot_read_with_a_decode_error(raw: bytes, problem: str) -> None:
    with pytest.raises(json.JSONDecodeError, match=problem):
        loads(raw)


@pytest.mark.parametrize("stack", [0, 400])
def test_loads_reads_every_nesting_orjson_reads_from_any_depth_of_call_stack(stack: int) -> None:
    # GIVEN the deepest nesting orjson reads (1,024 levels), and one level more
    deepest = b"[" * 1024 + b"1" + b"]" * 1024
    orjson.loads(deepest)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(b"[" + deepest + b"]")

    def nested_call(levels: int) -> Any:
        return loads(deepest) if levels == 0 else nested_call(levels - 1)

    # WHEN the exact parser reads it from a call stack already ``stack`` frames deep (a
    # request is read inside a server's, Python's own parser stops short of 1,000 levels)
    value = nested_call(stack)
    # THEN it reads it too: whatever the fast path reads, the FastAPI route reads
    for _ in range(1024):
        (value,) = value
    assert value == 1


def test_a_refusal_names_the_path_down_to_the_value() -> None:
    with pytest.raises(NotStorable) as caught:
        attribute({"order": {"lines": [1, {"price": Decimal("1E+200")}]}})
    assert caught.value.field == "order.lines.1.price"
    assert "1E+200" in caught.value.problem
