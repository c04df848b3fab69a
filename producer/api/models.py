"""Request and response shapes of the producer's API (they make the OpenAPI document)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RecordIn(BaseModel):
    """One record: any JSON value under ``data``; optional partition key (else random)."""

    model_config = ConfigDict(extra="forbid")

    data: Any = Field(..., description="The record's payload: any JSON value.")
    partition_key: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Kinesis partition key: records with one key keep their order. "
        "Random (the record's id) when absent.",
    )

    @field_validator("data")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        problem = not_storable(value)
        if problem:
            raise ValueError(problem)
        return value


def not_storable(value: Any) -> str | None:
    """What in ``value`` has no exact JSON form, or None: Python's JSON parser reads NaN,
    Infinity (also for numbers beyond a double's range) and lone UTF-16 surrogates."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return "NaN, Infinity and numbers beyond +-1.8e308 are not JSON numbers"
        elif isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode()
                except UnicodeEncodeError:
                    return "a string holds a lone UTF-16 surrogate: it is not valid Unicode"
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


class RecordAccepted(BaseModel):
    """Kinesis stored the record: ``id`` is its key in DynamoDB."""

    id: str
    shard_id: str
    sequence_number: str


class RecordFailed(BaseModel):
    """The record was not taken (a bad record) or not stored (retry it later)."""

    error: str = Field(description="invalid_record, record_too_large, overloaded, not_accepted")
    detail: Any
    id: str | None = None


class BatchIn(BaseModel):
    """Many records in one request; each is validated and answered on its own."""

    model_config = ConfigDict(extra="forbid")

    records: list[Any] = Field(..., min_length=1, description="Objects shaped like `POST /`.")


class BatchOut(BaseModel):
    """Like Kinesis PutRecords: one result per record, in request order."""

    failed_record_count: int
    records: list[RecordAccepted | RecordFailed]


class Problem(BaseModel):
    """Every error answer: a code and what is wrong."""

    error: str
    detail: Any
