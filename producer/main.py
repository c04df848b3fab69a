"""The producer application: wiring, lifespan (shard map, collector) and error shapes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import boto3
from botocore.config import Config
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from producer.api.docs import add_docs
from producer.api.fastpath import CheckBody, ProducerApp
from producer.api.ingest import Ingest, problems
from producer.api.routes import router
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
            # one attempt per call, each bounded well inside the record TTL (botocore's 60 s
            # defaults and retries could outlast the TTL and the ALB's 60 s): the collector
            # retries with backoff until the TTL. botocore.config.Config: total_max_attempts
            # "includes the initial request, so a value of 1 indicates that no requests will
            # be retried".
            connect_timeout=settings.kinesis_timeout,
            read_timeout=settings.kinesis_timeout,
            retries={"mode": "standard", "total_max_attempts": 1},
        ),
    )


ERROR_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}


async def emit_emf(metrics: ProducerMetrics, interval: float) -> None:
    """Every ``interval`` seconds, one EMF line on stdout (CloudWatch Logs extracts it)."""
    while True:
        await asyncio.sleep(interval)
        sys.stdout.write(metrics.emf() + "\n")
        sys.stdout.flush()


def create_app(settings: ProducerSettings | None = None, client: Any = None) -> ProducerApp:
    """Build the app; ``client`` (a boto3 Kinesis client) is injectable for tests."""

    conf = settings or get_settings()
    api_key = conf.api_key.get_secret_value().encode() if conf.api_key else None

    @asynccontextmanager
    async def lifespan(app: ProducerApp) -> AsyncIterator[None]:
        kinesis = client or kinesis_client(conf)
        shard_map = await asyncio.to_thread(ShardMap.load, kinesis, conf.stream_name)
        collector = KinesisCollector(
            kinesis,
            CollectorConfig(
                stream_name=conf.stream_name,
                aggregation_max_bytes=conf.aggregation_max_bytes,
                aggregation_max_count=conf.aggregation_max_count,
                rate_limit_percent=conf.rate_limit_percent,
                shard_queue_seconds=conf.shard_queue_ms / 1000,
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
        ingest = Ingest(collector, IdGenerator(), conf.max_batch_records)
        app.state.collector = collector
        app.state.ingest = ingest
        app.state.api_key = app.api_key = api_key
        app.state.draining = False
        app.ingest = ingest  # the fast path serves from here on
        try:
            yield
        finally:
            app.ingest = None
            await collector.close()  # SIGTERM: flush what was taken before exiting
            if emitter is not None:
                emitter.cancel()
                sys.stdout.write(collector.metrics.emf() + "\n")  # the last interval too

    app = ProducerApp(
        title="kinesis-ingest producer",
        summary="POST JSON records; each is answered once Kinesis has stored it.",
        lifespan=lifespan,
        docs_url=None,  # add_docs: the same pages without a CDN
        redoc_url=None,
    )
    app.include_router(router)
    add_docs(app)

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

    app.max_body_bytes = conf.max_body_bytes
    app.add_middleware(CheckBody, max_body_bytes=conf.max_body_bytes)
    return app
