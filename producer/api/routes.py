"""``POST /`` (one record, the reference design's request) and ``GET /health``."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from producer.aggregation import KINESIS_MAX_RECORD_BYTES
from producer.collector import KinesisCollector, RecordNotAccepted
from producer.ids import IdGenerator

router = APIRouter()


class RecordIn(BaseModel):
    """One record: any JSON value under ``data``; optional partition key (else random)."""

    model_config = ConfigDict(extra="forbid")

    data: Any = Field(..., description="The record's payload: any JSON value.")
    partition_key: str | None = Field(
        None, min_length=1, max_length=256, description="Kinesis partition key; random if absent."
    )


class RecordAccepted(BaseModel):
    id: str
    shard_id: str
    sequence_number: str


def get_collector(request: Request) -> KinesisCollector:
    collector: KinesisCollector = request.app.state.collector
    return collector


def get_ids(request: Request) -> IdGenerator:
    ids: IdGenerator = request.app.state.ids
    return ids


def envelope(record_id: str, data: Any) -> bytes:
    """The bytes put to Kinesis for one user record; the consumer reads the same shape."""
    body = {"id": record_id, "ts": int(time.time() * 1000), "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


@router.post(
    "/",
    response_model=RecordAccepted,
    responses={413: {"description": "record too large"}, 503: {"description": "not accepted"}},
)
async def put_record(
    record: RecordIn,
    collector: Annotated[KinesisCollector, Depends(get_collector)],
    ids: Annotated[IdGenerator, Depends(get_ids)],
) -> Any:
    """Store one record in Kinesis; answers after Kinesis accepted it."""
    record_id = ids()
    partition_key = record.partition_key or record_id
    payload = envelope(record_id, record.data)
    if len(payload) + len(partition_key.encode()) > KINESIS_MAX_RECORD_BYTES:
        return JSONResponse(
            status_code=413,
            content={"error": "record_too_large", "detail": "record exceeds 1 MiB Kinesis limit"},
        )
    try:
        accepted = await collector.put(partition_key, payload)
    except RecordNotAccepted as exc:
        return JSONResponse(
            status_code=503,
            headers={"Retry-After": "1"},
            content={"error": "not_accepted", "detail": str(exc), "id": record_id},
        )
    return RecordAccepted(
        id=record_id, shard_id=accepted.shard_id, sequence_number=accepted.sequence_number
    )


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness for the load balancer."""
    return {"status": "ok"}
