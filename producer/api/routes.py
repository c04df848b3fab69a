"""The FastAPI routes: health, readiness, metrics, and ``POST /`` and ``POST /batch`` as the
OpenAPI document describes them.

A well-formed record request is served by the ASGI fast path (``fastpath.py``) before it gets
here; these routes take the rest, so that FastAPI's validation names what is wrong with a bad
request. Both ways run the same operations (``ingest.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute

from common.errors import ErrorCode, error_body
from common.storable import loads
from producer.api.deps import get_collector, get_ingest, require_api_key
from producer.api.ingest import Ingest
from producer.api.models import BatchIn, BatchOut, Problem, RecordAccepted, RecordIn
from producer.collector import KinesisCollector


class ExactJSONRequest(Request):
    """A request whose JSON body keeps every number exact (``common.storable.loads``):
    fractions and long integers as ``Decimal``, never rounded through a double. Anything it
    cannot read (deeper nesting than the parser goes included) is a ``JSONDecodeError``,
    which FastAPI answers 422."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class ExactJSONRoute(APIRoute):
    """Routes that read their JSON bodies with ``ExactJSONRequest``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact(request: Request) -> Response:
            return await handler(ExactJSONRequest(request.scope, request.receive))

        return exact


router = APIRouter(route_class=ExactJSONRoute)
Collector = Annotated[KinesisCollector, Depends(get_collector)]
Ingester = Annotated[Ingest, Depends(get_ingest)]


@router.post(
    "/",
    response_model=RecordAccepted,
    dependencies=[Depends(require_api_key)],
    responses={code: {"model": Problem} for code in (401, 413, 415, 422, 503)},
)
async def put_record(record: RecordIn, ingest: Ingester) -> Any:
    """Store one record; answers once Kinesis has it (503 with Retry-After: send it again)."""
    status, answer, headers = await ingest.one((record.id, record.partition_key, record.data))
    return JSONResponse(answer, status_code=status, headers=headers)


@router.post(
    "/batch",
    response_model=BatchOut,
    dependencies=[Depends(require_api_key)],
    responses={code: {"model": Problem} for code in (401, 413, 415, 422)},
)
async def put_records(batch: BatchIn, ingest: Ingester) -> Any:
    """Store many records; each gets its own result, a bad one never costs the good ones."""
    status, answer = await ingest.many(batch.records, exact=False)
    return JSONResponse(answer, status_code=status)


@router.get("/health", responses={503: {"model": Problem}})
async def health(request: Request) -> Any:
    """Liveness: the process answers and its collector runs (else 503: replace the task)."""
    broken = _broken(request)
    if broken is not None:
        return JSONResponse(status_code=503, content=broken)
    return {"status": "ok"}


@router.get("/ready", responses={503: {"model": Problem}})
async def ready(request: Request) -> Any:
    """Readiness for the load balancer: 503 once shutting down (or broken), so traffic drains
    away."""
    if request.app.state.draining:
        return JSONResponse(
            status_code=503, content=error_body(ErrorCode.DRAINING, "shutting down")
        )
    broken = _broken(request)
    if broken is not None:
        return JSONResponse(status_code=503, content=broken)
    return {"status": "ready"}


def _broken(request: Request) -> dict[str, str] | None:
    collector: KinesisCollector | None = getattr(request.app.state, "collector", None)
    if collector is None or collector.broken is None:
        return None
    # what broke is in the log (collector.py); an answer never carries internal text
    return error_body(ErrorCode.COLLECTOR_STOPPED, "the producer cannot send to Kinesis")


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request, collector: Collector) -> str:
    """KPL-style counters in the Prometheus text format: the whole server's (every worker's)."""
    text: str = request.app.state.totals().prometheus()
    return text
