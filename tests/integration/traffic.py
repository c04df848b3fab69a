"""Traffic for the integration tests: POST records at a rate, wait until they are stored."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import httpx

from loadgen.stored import missing_after
from local_stack.stack import LocalStack
from scaler.stream import StreamAdmin


async def send(
    base: str,
    count: int,
    rate: float,
    keys: int,
    acked: list[str] | None = None,
    data: Callable[[int], Any] = lambda i: {"i": i},
    api_key: str | None = None,
) -> list[str]:
    """POST ``count`` records at about ``rate``/s; the ids Kinesis acknowledged are appended
    to ``acked`` as they come, and returned."""
    acked = [] if acked is None else acked
    rng = random.Random(count)

    headers = {"X-Api-Key": api_key} if api_key else {}
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as client:

        async def one(i: int) -> None:
            body: dict[str, Any] = {"data": data(i)}
            if keys and rng.random() < 0.5:
                body["partition_key"] = f"customer-{rng.randrange(keys)}"
            try:
                response = await client.post("/", json=body)
            except httpx.TransportError:
                return  # never answered: not acknowledged, may or may not be stored
            if response.status_code == 200:
                acked.append(response.json()["id"])

        tasks = []
        for i in range(count):
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)
    return acked


def wait_stored(stack: LocalStack, ids: list[str], timeout: float) -> set[str]:
    """The ids of ``ids`` not in the records table after ``timeout`` (empty when all are)."""
    return missing_after(stack.client("dynamodb"), stack.config.records_table, ids, timeout)


def open_shards(stack: LocalStack) -> int:
    return len(StreamAdmin(stack.client("kinesis"), stack.config.stream_name).open_shards())
