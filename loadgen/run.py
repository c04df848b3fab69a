"""Send records at a target rate and count what happened to each.

Open loop: request *i* is due at ``start + i / requests_per_second`` whatever happened to the
earlier ones, and its latency is measured from when it was due, not from when a free
connection let it go (so a slow producer shows up as latency, instead of silently lowering
the rate: no coordinated omission). At most ``concurrency`` requests are in flight (one
connection each); a request due while all are busy waits its turn, and that wait is part of
its latency.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from common.stats import percentile
from loadgen.shapes import SHAPES


@dataclass
class Tally:
    """What happened so far; ``latencies_ms`` of the acknowledged records, and when each was
    due (``due_ms``, epoch milliseconds: end-to-end latency is its stored time minus this),
    in the order of ``ids``."""

    planned: int
    sent: int = 0  # records sent (in requests that got an answer or failed)
    acked: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # by status or error code
    failed: int = 0  # no answer (connection refused, reset, timeout)
    failed_by: Counter[str] = field(default_factory=Counter)  # by exception
    latencies_ms: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    due_ms: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def percentile(self, p: float) -> float | None:
        return percentile(self.latencies_ms, p)


@dataclass(frozen=True)
class Plan:
    url: str
    rate: float  # records per second
    count: int
    shape: str = "mixed"
    batch: int = 1  # records per request: 1 posts to /, more to /batch
    concurrency: int = 256
    api_key: str | None = None
    seed: int = 1
    timeout: float = 60.0


def _body(plan: Plan, rng: random.Random, first: int, size: int) -> tuple[str, Any]:
    shape = SHAPES[plan.shape]
    records = []
    for n in range(first, first + size):
        key, data = shape(rng, n)
        records.append({"data": data, "partition_key": key})
    if plan.batch == 1:
        return "/", records[0]
    return "/batch", {"records": records}


def _acked(tally: Tally, record_id: str, latency_ms: float, due_ms: float) -> None:
    tally.acked += 1
    tally.ids.append(record_id)
    tally.latencies_ms.append(latency_ms)
    tally.due_ms.append(due_ms)


def _count(
    tally: Tally,
    response: httpx.Response,
    size: int,
    batch: bool,
    latency_ms: float,
    due_ms: float,
) -> None:
    if response.status_code == 200 and batch:
        for result in response.json()["records"]:
            if "error" in result:
                tally.rejected[result["error"]] += 1
            else:
                _acked(tally, result["id"], latency_ms, due_ms)
    elif response.status_code == 200:
        _acked(tally, response.json()["id"], latency_ms, due_ms)
    else:
        tally.rejected[str(response.status_code)] += size


async def send(
    plan: Plan,
    progress: Callable[[Tally], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Tally:
    """Run ``plan``; ``progress`` is called about five times a second with the tally.
    ``transport`` replaces the network (tests)."""
    tally = Tally(plan.count)
    rng = random.Random(plan.seed)
    headers = {"x-api-key": plan.api_key} if plan.api_key else {}
    interval = plan.batch / plan.rate
    due_requests: asyncio.Queue[tuple[str, Any, int, float] | None] = asyncio.Queue()
    tls = ssl.create_default_context()  # once: loading the CA store per client cost 40 ms each

    async def worker() -> None:
        # One client with one connection per worker: httpx's shared pool walks every waiting
        # request and connection on each event, which capped one pool of 256 at ~50 req/s.
        # idle connections are dropped after 2 s, before the server's keep-alive timeout
        # (uvicorn's 5 s): a request sent as the server closes would get no answer
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=2.0)
        async with httpx.AsyncClient(
            base_url=plan.url,
            timeout=plan.timeout,
            limits=limits,
            headers=headers,
            transport=transport,
            verify=tls,
        ) as client:
            while (job := await due_requests.get()) is not None:
                path, body, size, due = job
                try:
                    response = await client.post(path, json=body)
                    latency = (time.monotonic() - due) * 1000
                    due_ms = (epoch + due - start) * 1000
                    _count(tally, response, size, path == "/batch", latency, due_ms)
                except (httpx.TransportError, ValueError, KeyError) as exc:
                    tally.failed += size
                    tally.failed_by[type(exc).__name__] += size
                finally:
                    tally.sent += size

    async def report() -> None:
        while True:
            if progress is not None:
                progress(tally)
            await asyncio.sleep(0.2)

    reporter = asyncio.create_task(report())
    workers = [asyncio.create_task(worker()) for _ in range(plan.concurrency)]
    start, epoch = time.monotonic(), time.time()
    tally.started = start
    try:
        for i, first in enumerate(range(0, plan.count, plan.batch)):
            due = start + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            size = min(plan.batch, plan.count - first)
            path, body = _body(plan, rng, first, size)
            due_requests.put_nowait((path, body, size, due))
        for _ in workers:
            due_requests.put_nowait(None)
        await asyncio.gather(*workers)
    finally:
        tally.ended = time.monotonic()
        reporter.cancel()
        for task in workers:
            task.cancel()
        if progress is not None:
            progress(tally)
    return tally
