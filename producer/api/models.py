"""Request and response shapes of the producer's API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


class RecordIn(BaseModel):
    """One record: any JSON value under ``data``; optional id and partition key.

    ``data`` must be storable as a DynamoDB item (``common.storable``: numbers, map keys,
    nesting, size); the operations check it (``ingest.py``) and answer 422 or 413.
    """

    model_config = ConfigDict(extra="forbid")

    data: Any = Field(..., description="The record's payload: any JSON value DynamoDB can hold.")
    id: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="Your id for the record (1-128 of A-Z a-z 0-9 . _ : -): its key in "
        "DynamoDB. Sending a record again with the same id (after a timeout, a 503, a crash) "
        "leaves one item, holding the copy Kinesis accepted last. Minted when absent.",
    )
    partition_key: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Kinesis partition key: records with one key keep their order. "
        "The record's id when absent.",
    )


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
