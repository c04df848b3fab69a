"""The FastAPI application: wiring, lifespan (shard map, collector) and error shapes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import boto3
from botocore.config import Config
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from producer.api.routes import problems, router
from producer.collector import CollectorConfig, KinesisCollector
from producer.config import ProducerSettings, get_settings
from producer.ids import IdGenerator
from producer.metrics import ProducerMetrics
from producer.shards import ShardMap


def kinesis_client(settings: ProducerSettings) -> Any:
    return boto3.client(
        "kinesis",
        region_name=settings.region,
        endpoint_url=settings.kinesis_endpoint,
        verify=settings.kinesis_ca_bundle if settings.kinesis_ca_bundle else None,
        config=Config(
            max_pool_connections=settings.max_in_flight + 2,
            retries={"mode": "standard", "max_attempts": 3},
        ),
    )


ERROR_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}


def body_problem(headers: Headers, limit: int | None) -> JSONResponse | None:
    """413 for a body over ``limit`` bytes, 415 for one that is not JSON; None if fine."""
    length = headers.get("content-length", "")
    if limit and length.isdigit() and int(length) > limit:
        return JSONResponse(
            status_code=413,
            content={"error": "body_too_large", "detail": f"the body exceeds {limit} bytes"},
        )
    media = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        return JSONResponse(
            status_code=415,
            content={
                "error": "unsupported_media_type",
                "detail": f"send JSON with Content-Type: application/json (got {media!r})",
            },
        )
    return None


class CheckBody:
    """Pure ASGI middleware answering 413/415 for POSTs before the body is read or parsed.

    (Starlette's ``@app.middleware("http")`` runs every request through an extra task and
    memory stream; under load that cost more than the rest of the request.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            limit = getattr(scope["app"].state, "max_body_bytes", None)
            problem = body_problem(Headers(scope=scope), limit)
            if problem is not None:
                await problem(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def emit_emf(metrics: ProducerMetrics, interval: float) -> None:
    """Every ``interval`` seconds, one EMF line on stdout (CloudWatch Logs extracts it)."""
    while True:
        await asyncio.sleep(interval)
        sys.stdout.write(metrics.emf() + "\n")
        sys.stdout.flush()


def create_app(settings: ProducerSettings | None = None, client: Any = None) -> FastAPI:
    """Build the app; ``client`` (a boto3 Kinesis client) is injectable for tests."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        conf = settings or get_settings()
        kinesis = client or kinesis_client(conf)
        shard_map = await asyncio.to_thread(ShardMap.load, kinesis, conf.stream_name)
        collector = KinesisCollector(
            kinesis,
            CollectorConfig(
                stream_name=conf.stream_name,
                aggregation_max_bytes=conf.aggregation_max_bytes,
                aggregation_max_count=conf.aggregation_max_count,
                rate_limit_percent=conf.rate_limit_percent,
                shard_refresh_interval=conf.shard_refresh_seconds,
                max_buffered_time=conf.max_buffered_time_ms / 1000,
                record_ttl=conf.record_ttl_ms / 1000,
                max_in_flight=conf.max_in_flight,
                max_buffered_bytes=conf.max_buffered_bytes,
                max_buffered_records=conf.max_buffered_records,
            ),
            shard_map,
        )
        collector.start()
        emitter = None
        if conf.emf_interval_seconds > 0:
            emitter = asyncio.create_task(emit_emf(collector.metrics, conf.emf_interval_seconds))
        app.state.collector = collector
        app.state.ids = IdGenerator()
        app.state.max_body_bytes = conf.max_body_bytes
        app.state.max_batch_records = conf.max_batch_records
        app.state.api_key = conf.api_key.get_secret_value().encode() if conf.api_key else None
        app.state.draining = False
        try:
            yield
        finally:
            await collector.close()  # SIGTERM: flush what was taken before exiting
            if emitter is not None:
                emitter.cancel()
                sys.stdout.write(collector.metrics.emf() + "\n")  # the last interval too

    app = FastAPI(
        title="kinesis-ingest producer",
        summary="POST JSON records; each is answered once Kinesis has stored it.",
        lifespan=lifespan,
    )
    app.include_router(router)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            status_code=422, content={"error": "invalid_record", "detail": problems(exc.errors())}
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = ERROR_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            status_code=exc.status_code,
            content={"error": code, "detail": exc.detail},
            headers=getattr(exc, "headers", None),
        )

    app.add_middleware(CheckBody)
    return app
