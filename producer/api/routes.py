"""``POST /`` (one record, the reference design's request), ``POST /batch``, health, readiness."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import ValidationError

from producer.aggregation import KINESIS_MAX_RECORD_BYTES
from producer.api.deps import get_collector, get_ids, require_api_key
from producer.api.models import (
    BatchIn,
    BatchOut,
    Problem,
    RecordAccepted,
    RecordFailed,
    RecordIn,
)
from producer.collector import Accepted, KinesisCollector, Overloaded, RecordNotAccepted
from producer.ids import IdGenerator

router = APIRouter()
Collector = Annotated[KinesisCollector, Depends(get_collector)]
Ids = Annotated[IdGenerator, Depends(get_ids)]
RETRY_AFTER = {"Retry-After": "1"}
STATUS = {"record_too_large": 413, "overloaded": 503, "not_accepted": 503}


def envelope(record_id: str, data: Any) -> bytes:
    """The bytes put to Kinesis for one user record; the consumer reads the same shape."""
    body = {"id": record_id, "ts": int(time.time() * 1000), "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _take(
    record: RecordIn, collector: KinesisCollector, ids: IdGenerator
) -> tuple[str, asyncio.Future[Accepted] | RecordFailed]:
    """Give the record an id and hand it to the collector, or say why it cannot be taken."""
    record_id = ids()
    partition_key = record.partition_key or record_id
    payload = envelope(record_id, record.data)
    if len(payload) + len(partition_key.encode()) > KINESIS_MAX_RECORD_BYTES:
        detail = "the record exceeds the 1 MiB Kinesis record limit"
        return record_id, RecordFailed(error="record_too_large", detail=detail)
    try:
        return record_id, collector.submit(partition_key, payload)
    except Overloaded as exc:
        return record_id, RecordFailed(error="overloaded", detail=str(exc))
    except RecordNotAccepted as exc:
        return record_id, RecordFailed(error="not_accepted", detail=str(exc))


def _settled(record_id: str, outcome: Accepted | BaseException) -> dict[str, Any]:
    """A record's result as the JSON object the API answers (shaped like RecordAccepted or
    RecordFailed; built as a plain dict because validating the response costs more than
    taking the record)."""
    if isinstance(outcome, Accepted):
        return {"id": record_id, "shard_id": outcome.shard_id,
                "sequence_number": outcome.sequence_number}  # fmt: skip
    if isinstance(outcome, RecordNotAccepted):
        return {"error": "not_accepted", "detail": str(outcome), "id": record_id}
    raise outcome


@router.post(
    "/",
    response_model=RecordAccepted,
    dependencies=[Depends(require_api_key)],
    responses={code: {"model": Problem} for code in (401, 413, 415, 422, 503)},
)
async def put_record(record: RecordIn, collector: Collector, ids: Ids) -> Any:
    """Store one record; answers once Kinesis has it (503 with Retry-After: send it again)."""
    record_id, taken = _take(record, collector, ids)
    if isinstance(taken, asyncio.Future):
        try:
            return JSONResponse(_settled(record_id, await taken))
        except RecordNotAccepted as exc:
            failed = _settled(record_id, exc)
    else:
        failed = taken.model_dump(exclude_none=True)
    status = STATUS[failed["error"]]
    return JSONResponse(failed, status_code=status, headers=RETRY_AFTER if status == 503 else None)


@router.post(
    "/batch",
    response_model=BatchOut,
    dependencies=[Depends(require_api_key)],
    responses={code: {"model": Problem} for code in (401, 413, 415, 422)},
)
async def put_records(batch: BatchIn, collector: Collector, ids: Ids, request: Request) -> Any:
    """Store many records; each gets its own result, a bad one never costs the good ones."""
    limit: int = request.app.state.max_batch_records
    if len(batch.records) > limit:
        return JSONResponse(
            status_code=413,
            content={"error": "batch_too_large", "detail": f"at most {limit} records a batch"},
        )
    results: list[dict[str, Any] | None] = []
    pending: list[tuple[int, str, asyncio.Future[Accepted]]] = []
    for index, raw in enumerate(batch.records):
        try:
            record = RecordIn.model_validate(raw)
        except ValidationError as exc:
            results.append({"error": "invalid_record", "detail": problems(exc.errors())})
            continue
        record_id, taken = _take(record, collector, ids)
        if isinstance(taken, asyncio.Future):
            pending.append((index, record_id, taken))
            results.append(None)
        else:
            results.append(taken.model_dump(exclude_none=True))
    if pending:
        await asyncio.wait([f for _, _, f in pending])
    for index, record_id, future in pending:
        results[index] = _settled(record_id, future.exception() or future.result())
    failed = sum("error" in r for r in results if r is not None)
    return JSONResponse({"failed_record_count": failed, "records": results})


def problems(errors: Any) -> list[dict[str, str]]:
    """Pydantic errors as ``{"field": "body.data", "problem": "Field required"}``."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "record", "problem": err["msg"]}
        for err in errors
    ]


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"model": Problem}})
async def ready(request: Request) -> Any:
    """Readiness for the load balancer: 503 once shutting down, so traffic drains away."""
    if request.app.state.draining:
        return JSONResponse(
            status_code=503, content={"error": "draining", "detail": "shutting down"}
        )
    return {"status": "ready"}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(collector: Collector) -> str:
    """KPL-style counters in the Prometheus text format."""
    return collector.metrics.prometheus()
