"""The pipeline on the real local stack while things change under it: the stream resharded
5 -> 10 -> 5 shards during traffic, and the producer SIGTERMed under load. Every acknowledged
record must end up in DynamoDB, once; through the reshards each partition key's records are
stored in the order they were sent (their sequence numbers increase, across parent and child
shards).

For the order check each key sends its next record only once the previous one is
acknowledged, so the order Kinesis accepted them in is the order they were sent.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadgen.stored import stored_items
from local_stack.stack import LocalStack, StackConfig
from tests.integration.chaos import leftovers
from tests.integration.traffic import open_shards, send, wait_stored

pytestmark = pytest.mark.integration

CONFIG = dict(kinesis_tls_port=24567, kinesis_plain_port=24568, dynamodb_port=28000,
              producer_port=28080, stream_name="change-stream", shard_count=5)  # fmt: skip
KEYS = 64  # enough that every shard of ten gets some keys (P(one gets none) ~ 1%)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    state: Path = tmp_path_factory.mktemp("stack")
    # POLLING: kinesis-mock's SubscribeToShard stalls once a subscribed shard is closed by a
    # reshard (no further events, no child shards), so the KCL would wait on the parents; the
    # producer's behaviour under test does not depend on how the consumer reads.
    config = StackConfig(state_dir=state, retrieval_mode="POLLING", scaler="off", **CONFIG)  # type: ignore[arg-type]
    with LocalStack(config) as running:
        yield running
    assert leftovers(running) == {}  # a clean stop leaves no process and no port behind


async def _key_sender(client: httpx.AsyncClient, key: str, stop: asyncio.Event) -> list[str]:
    """POST records for ``key`` one at a time until ``stop``; the acknowledged ids, in order."""
    acked: list[str] = []
    n = 0
    while not stop.is_set():
        try:
            response = await client.post("/", json={"data": {"n": n}, "partition_key": key})
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code == 200:
            acked.append(response.json()["id"])
        n += 1
        await asyncio.sleep(0.4)
    return acked


def _reshard(stack: LocalStack, target: int, timeout: float = 60) -> None:
    kinesis = stack.client("kinesis")
    kinesis.update_shard_count(
        StreamName=stack.config.stream_name, TargetShardCount=target, ScalingType="UNIFORM_SCALING"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        summary = kinesis.describe_stream_summary(StreamName=stack.config.stream_name)
        active = summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
        if active and open_shards(stack) == target:
            return
        time.sleep(0.5)
    raise AssertionError(f"the stream did not reach {target} open shards in {timeout} s")


def test_reshard_5_10_5_under_traffic_keeps_every_record_and_per_key_order(
    stack: LocalStack,
) -> None:
    async def scenario() -> dict[str, list[str]]:
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=stack.config.producer_url, timeout=60) as client:
            senders = {
                f"key-{k}": asyncio.create_task(_key_sender(client, f"key-{k}", stop))
                for k in range(KEYS)
            }
            # GIVEN records flowing for 64 keys on 5 shards
            await asyncio.sleep(8)
            # WHEN the stream doubles, then halves again, with the traffic going on
            await asyncio.to_thread(_reshard, stack, 10)
            await asyncio.sleep(12)
            await asyncio.to_thread(_reshard, stack, 5)
            await asyncio.sleep(12)
            stop.set()
            return {key: await task for key, task in senders.items()}

    sent = asyncio.run(scenario())
    acked = [record_id for ids in sent.values() for record_id in ids]
    assert len(acked) > 2000, len(acked)  # ~64 keys x 2/s x 40 s

    # THEN every acknowledged record is stored
    assert wait_stored(stack, acked, timeout=300) == set()
    items = _items(stack, acked)
    # AND the records went through the 5 first shards, their 10 children and the 5 last ones
    shards = {item["shard_id"]["S"] for item in items.values()}
    assert len(shards) >= 18, sorted(shards)
    sys.stderr.write(f"fault table: reshard 5-10-5: {len(acked)} acknowledged, {len(items)} "
                     f"stored, {len(shards)} shards, {KEYS} keys\n")  # fmt: skip
    # AND per key, the stored sequence numbers increase in the order the records were sent
    for key, ids in sent.items():
        positions = [
            (int(items[i]["sequence_number"]["S"]), int(items[i]["sub_sequence_number"]["N"]))
            for i in ids
        ]
        assert positions == sorted(set(positions)), key
        assert {items[i]["partition_key"]["S"] for i in ids} == {key}


def _items(stack: LocalStack, ids: list[str]) -> dict[str, dict[str, dict[str, str]]]:
    """The stored items of ``ids``, by id."""
    ddb, table = stack.client("dynamodb"), stack.config.records_table
    return {item["id"]["S"]: item for item in stored_items(ddb, table, ids, consistent=True)}


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
