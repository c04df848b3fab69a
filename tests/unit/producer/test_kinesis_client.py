"""The producer's Kinesis client: a hung call is given up within the record TTL (a local
endpoint on 127.0.0.1 whose first PutRecords never answers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from benchmarks.null_kinesis import handle
from producer.collector import Accepted, CollectorConfig, KinesisCollector
from producer.config import ProducerSettings
from producer.main import kinesis_client
from producer.shards import ShardMap


def test_the_client_gives_up_a_call_well_inside_the_ttl_and_does_not_retry_it_itself() -> None:
    settings = ProducerSettings(stream_name="s", record_ttl_ms=4_000, kinesis_timeout_ms=6_000)
    config = kinesis_client(settings).meta.config
    assert config.connect_timeout == config.read_timeout == 2.0  # half the TTL at most
    assert config.retries["total_max_attempts"] == 1
    default = kinesis_client(ProducerSettings(stream_name="s")).meta.config
    assert default.read_timeout == 6.0 < 30  # the KPL's RequestTimeout, inside the 30 s TTL


def _first_put_hangs(calls: list[str], release: asyncio.Event) -> Callable[[str], Awaitable[None]]:
    async def before(target: str) -> None:
        calls.append(target)
        if target.endswith("PutRecords") and calls.count(target) == 1:
            await release.wait()  # the first PutRecords does not answer until the test ends

    return before


def test_a_hung_kinesis_call_is_abandoned_and_the_record_sent_again_within_its_ttl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    calls: list[str] = []

    async def scenario() -> tuple[object, float]:
        # GIVEN a Kinesis endpoint whose first PutRecords never answers, and a 4 s TTL
        release = asyncio.Event()
        before = _first_put_hangs(calls, release)
        handlers: list[asyncio.Task[None]] = []

        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            handlers.append(asyncio.ensure_future(handle(reader, writer, 0, before)))

        server = await asyncio.start_server(connected, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        settings = ProducerSettings(
            stream_name="s", kinesis_endpoint=f"http://127.0.0.1:{port}",
            record_ttl_ms=4_000, kinesis_timeout_ms=500,
        )  # fmt: skip
        client = kinesis_client(settings)
        shard_map = await asyncio.to_thread(ShardMap.load, client, "s")
        config = CollectorConfig(stream_name="s", record_ttl=4.0, max_buffered_time=0.01,
                                 backoff_base=0.01, shard_refresh_interval=0)  # fmt: skip
        collector = KinesisCollector(client, config, shard_map)
        collector.start()
        start = time.monotonic()
        # WHEN a record is put
        try:
            result: object = await asyncio.wait_for(collector.put("k", b"x"), 10)
        except Exception as exc:
            result = exc
        elapsed = time.monotonic() - start
        await collector.close()
        client.close()
        release.set()
        server.close()
        await server.wait_closed()
        for handler in handlers:
            handler.cancel()  # each closes its connection
        await asyncio.gather(*handlers, return_exceptions=True)
        await asyncio.sleep(0)
        return result, elapsed

    result, elapsed = asyncio.run(scenario())
    # THEN the hung call was given up after its timeout and the record accepted by the next,
    # inside the TTL (botocore's defaults waited 60 s a call, three times)
    assert isinstance(result, Accepted), result
    assert elapsed < 4.0, elapsed
    assert sum(t.endswith("PutRecords") for t in calls) == 2, calls
