"""The producer application: wiring, lifespan (shard map, collector) and error shapes."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import ErrorCode, error_body
from producer.api.docs import add_docs
from producer.api.fastpath import INTERNAL_ERROR, ProducerApp
from producer.api.ingest import Ingest, problems
from producer.api.routes import router
from producer.collector import KinesisCollector
from producer.config import ProducerSettings, get_settings
from producer.ids import IdGenerator
from producer.shards import ShardMap
from producer.workers import PUBLISH_INTERVAL, WorkerMetrics


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


ERROR_CODES = {
    401: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
}
log = logging.getLogger("producer")


def _write_emf(line: str | None) -> None:
    if line is not None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


async def emit_emf(emf: Callable[[], str | None], interval: float) -> None:
    """Every ``interval`` seconds, one EMF line on stdout (CloudWatch Logs extracts it); with
    several workers, the one that writes them (``WorkerMetrics.emf``) writes the server's."""
    while True:
        await asyncio.sleep(interval)
        _write_emf(emf())


async def publish_counts(shared: WorkerMetrics) -> None:
    """This worker's counts for the other workers' ``/metrics`` and EMF lines."""
    while True:
        await asyncio.sleep(PUBLISH_INTERVAL)
        shared.publish()


async def last_emf(shared: WorkerMetrics, wait: float = 5.0) -> None:
    """At shutdown, after this worker's last counts were published: the last EMF line, by
    whichever worker takes the lead last (the others stop at the same time and release it
    one after another; a worker that keeps running reports these counts at its interval)."""
    shared.publish()
    deadline = time.monotonic() + wait
    while not shared.leads() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    _write_emf(shared.emf())
    shared.release()


# allocations between two young-generation collections (Python's default is 700): with
# thousands of requests in flight every collection walks their live objects, so at 700 the
# collector took about a quarter of the CPU of POST / (measured in-process: 105 vs 75 us a
# request at 20,000; with the collector off, 78)
GC_YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Tune the cyclic garbage collector for a server once startup is done.

    What startup built (modules, the app, botocore's models: objects that live as long as the
    process) is moved out of the collector's sight (``gc.freeze``, which the Python docs
    suggest for long-lived processes), and the young generation is collected every
    ``GC_YOUNG_THRESHOLD`` allocations instead of 700. Reference counting still frees every
    request's objects at once; only garbage in cycles waits a little longer.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def create_app(settings: ProducerSettings | None = None, client: Any = None) -> ProducerApp:
    """Build the app; ``client`` (a boto3 Kinesis client) is injectable for tests."""

    conf = settings or get_settings()
    api_key = conf.keys or None

    @asynccontextmanager
    async def lifespan(app: ProducerApp) -> AsyncIterator[None]:
        kinesis = client or kinesis_client(conf)
        shard_map = await asyncio.to_thread(ShardMap.load, kinesis, conf.stream_name)
        collector = KinesisCollector(
            kinesis,
            conf.collector_config(),
            shard_map,
        )
        collector.start()
        # several workers (python -m producer): /metrics and EMF give the server's totals
        shared = None
        if conf.metrics_dir:
            shared = WorkerMetrics(Path(conf.metrics_dir), collector.metrics)
        tasks = []
        if shared is not None:
            shared.publish()
            tasks.append(asyncio.create_task(publish_counts(shared)))
            app.state.totals = shared.totals
        else:
            app.state.totals = lambda: collector.metrics
        if conf.emf_interval_seconds > 0:
            emf = shared.emf if shared is not None else collector.metrics.emf
            tasks.append(asyncio.create_task(emit_emf(emf, conf.emf_interval_seconds)))
        ingest = Ingest(collector, IdGenerator(), conf.max_batch_records)
        app.state.collector = collector
        app.state.ingest = ingest
        app.state.draining = False
        app.ingest = ingest  # the fast path serves from here on
        settle_heap()
        try:
            yield
        finally:
            app.ingest = None
            await collector.close()  # SIGTERM: flush what was taken before exiting
            for task in tasks:
                task.cancel()
            if conf.emf_interval_seconds > 0:  # the last interval too
                if shared is not None:
                    await last_emf(shared)
                else:
                    _write_emf(collector.metrics.emf())
            elif shared is not None:
                shared.publish()

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
            status_code=422, content=error_body(ErrorCode.INVALID_RECORD, problems(exc.errors()))
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = ERROR_CODES.get(exc.status_code, ErrorCode.HTTP_ERROR)
        return JSONResponse(
            status_code=exc.status_code,
            content=error_body(code, exc.detail),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        # a bug, not the request's fault: the log has the exception, the answer never does
        log.error("request failed", exc_info=exc)
        return JSONResponse(status_code=500, content=INTERNAL_ERROR)

    # before the lifespan: the gate refuses from the first request on (the key, the limits)
    app.state.api_key = app.api_key = api_key
    app.max_body_bytes = conf.max_body_bytes
    app.body_timeout = conf.body_timeout_seconds
    return app
