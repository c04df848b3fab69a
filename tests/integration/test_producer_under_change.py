"""The producer against the real local stack while the stream changes under it: a reshard
during traffic, and SIGTERM under load. Every acknowledged record must end up in DynamoDB."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack.stack import LocalStack, StackConfig
from tests.integration.traffic import open_shards, send, wait_stored

pytestmark = pytest.mark.integration

CONFIG = dict(kinesis_tls_port=24567, kinesis_plain_port=24568, dynamodb_port=28000,
              producer_port=28080, stream_name="change-stream", shard_count=2)  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    state: Path = tmp_path_factory.mktemp("stack")
    # POLLING: kinesis-mock's SubscribeToShard stalls once a subscribed shard is closed by a
    # reshard (no further events, no child shards), so the KCL would wait on the parents; the
    # producer's behaviour under test does not depend on how the consumer reads.
    config = StackConfig(state_dir=state, retrieval_mode="POLLING", scaler="off", **CONFIG)  # type: ignore[arg-type]
    with LocalStack(config) as running:
        yield running


def test_reshard_during_traffic_loses_nothing(stack: LocalStack) -> None:
    # GIVEN traffic with random and caller-given keys
    async def scenario() -> list[str]:
        sender = asyncio.create_task(send(stack.config.producer_url, 600, 60, keys=5))
        await asyncio.sleep(3)
        # WHEN the stream is resharded from 2 to 4 shards in the middle of it
        stack.client("kinesis").update_shard_count(
            StreamName=CONFIG["stream_name"], TargetShardCount=4, ScalingType="UNIFORM_SCALING"
        )
        return await sender

    acked = asyncio.run(scenario())
    # THEN every acknowledged record is stored (the producer re-routed what landed elsewhere
    # and the KCL moved from the parent shards to the children)
    assert len(acked) == 600
    assert open_shards(stack) == 4
    assert wait_stored(stack, acked, timeout=240) == set()


def test_sigterm_under_load_loses_no_acknowledged_record(stack: LocalStack) -> None:
    # GIVEN the producer under steady load
    producer = stack.process("producer")

    async def scenario() -> list[str]:
        acked: list[str] = []
        sender = asyncio.create_task(send(stack.config.producer_url, 400, 100, 0, acked))
        deadline = time.monotonic() + 30
        while len(acked) < 50 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # WHEN it gets SIGTERM mid-stream, once 50 records were acknowledged
        producer.signal(signal.SIGTERM)
        return await sender

    acked = asyncio.run(scenario())
    # THEN it shuts down cleanly (uvicorn re-raises the SIGTERM it caught once its shutdown is
    # complete) and every record it acknowledged is in DynamoDB
    assert producer.proc is not None and producer.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in producer.log_tail(5)
    assert 50 <= len(acked) < 400
    assert wait_stored(stack, acked, timeout=180) == set()
