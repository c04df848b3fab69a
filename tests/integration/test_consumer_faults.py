"""The consumer under faults, on the real local stack (KCL daemon, kinesis-mock, DynamoDB Local):
a worker killed mid-stream and restarted, a second worker that joins, takes some leases and
stops gracefully, handing them back, and DynamoDB throttling the writes. Each ends with every
acknowledged record stored, once (the table is keyed by the record id, so a replay overwrites
it rather than adding an item). The consumer reaches DynamoDB Local through a proxy
(tests/integration/throttle.py) that passes everything through until a test turns throttling on.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from local_stack.stack import LocalStack, StackConfig
from tests.integration.chaos import leftovers
from tests.integration.throttle import ThrottlingProxy
from tests.integration.traffic import send, wait_stored
from tests.polling import eventually, eventually_async
from tests.ports import CONSUMER_FAULTS, FAULT_PROXY_PORT

pytestmark = pytest.mark.integration

CONFIG = dict(**CONSUMER_FAULTS, stream_name="fault-stream", shard_count=4)
PROXY_PORT = FAULT_PROXY_PORT


@pytest.fixture(scope="module")
def proxy() -> Iterator[ThrottlingProxy]:
    with ThrottlingProxy(PROXY_PORT, CONFIG["dynamodb_port"], "records") as running:
        yield running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, proxy: ThrottlingProxy) -> Iterator[LocalStack]:
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("stack"), scaler="off",
        extra_env={"CONSUMER_DYNAMODB_ENDPOINT": proxy.url}, **CONFIG,
    )  # fmt: skip
    with LocalStack(config) as running:
        yield running
    assert leftovers(running) == {}  # a clean stop leaves no process and no port behind


def _owners(stack: LocalStack) -> dict[str, str]:
    """Lease key -> owner, for the leases that have one."""
    items = stack.client("dynamodb").scan(TableName=stack.config.application_name)["Items"]
    return {i["leaseKey"]["S"]: i["leaseOwner"]["S"] for i in items if "leaseOwner" in i}


def _traffic_with(stack: LocalStack, fault: object, count: int = 900) -> list[str]:
    """POST ``count`` records (half with 8 caller keys) at 60/s; ``fault()`` runs after 4 s."""

    async def scenario() -> list[str]:
        acked: list[str] = []
        sender = asyncio.create_task(send(stack.config.producer_url, count, 60, 8, acked))
        await asyncio.sleep(4)
        await asyncio.to_thread(fault)
        await sender
        return acked

    return asyncio.run(scenario())


def _owners_until(
    stack: LocalStack, until: Callable[[dict[str, str]], bool], timeout: float, what: str
) -> dict[str, str]:
    """The leases' owners once ``until(owners)`` holds (checked every second); fails after
    ``timeout`` with the owners last seen."""
    return eventually(lambda: _owners(stack), until=until, timeout=timeout, interval=1, what=what)


def _traffic_until(
    stack: LocalStack, until: Callable[[dict[str, str]], bool], timeout: float, what: str
) -> list[str]:
    """POST records at 30/s until ``until(owners)`` holds (checked every second); fails after
    ``timeout``; the acknowledged ids."""

    async def scenario() -> list[str]:
        acked: list[str] = []
        sender = asyncio.create_task(send(stack.config.producer_url, 100_000, 30, 8, acked))
        try:
            await eventually_async(
                lambda: _owners(stack),
                until=until,
                timeout=timeout,
                interval=1,
                what=what,
                in_thread=True,
            )
        finally:
            sender.cancel()  # requests in flight may or may not be answered: only acked count
            await asyncio.gather(sender, return_exceptions=True)
        return acked

    return asyncio.run(scenario())


def test_a_worker_killed_mid_stream_and_restarted_loses_nothing(stack: LocalStack) -> None:
    before = _owners(stack)
    assert len(before) == CONFIG["shard_count"]

    def kill_and_restart() -> None:
        # WHEN the worker (the JVM and every record processor: its process group) is SIGKILLed
        stack.process("consumer").signal(signal.SIGKILL)
        time.sleep(3)
        # AND a new worker starts, as ECS would start a new task: with a new worker id (the
        # local stack's own restarts keep the id, and resume at once: test_local_pipeline)
        stack.restart("consumer", {"CONSUMER_WORKER_ID": "local-consumer-replacement"})

    acked = _traffic_with(stack, kill_and_restart)
    # THEN the new worker took over every lease once the dead one's expired
    _owners_until(
        stack,
        lambda owners: set(owners.values()).isdisjoint(before.values()),
        300,
        "the new worker to hold every lease (lease: owner)",
    )
    # AND every acknowledged record is stored, each key's records in order
    assert len(acked) == 900
    assert wait_stored(stack, acked, timeout=240) == set()


def test_leases_move_back_when_a_second_worker_stops_gracefully(stack: LocalStack) -> None:
    # GIVEN a second worker that took some of the leases from the first (the leader now: the
    # leader's own departure is the slow case of the test above)
    # (KCL 3's leader balances leases by throughput: it moves none to a new worker while
    # the stream is idle, so a trickle of records flows until it does)
    (first_id,) = set(_owners(stack).values())
    second = stack.add_consumer("consumer-2")
    trickle = _traffic_until(
        stack,
        lambda owners: len(set(owners.values())) == 2,
        180,
        "the two workers to share the leases (lease: owner)",
    )

    def stop_second() -> None:
        # WHEN the second gets SIGTERM (ECS scale-in) under traffic
        second.signal(signal.SIGTERM)
        assert second.proc is not None
        second.proc.wait(timeout=60)

    acked = _traffic_with(stack, stop_second)
    # THEN the first worker owns every lease again, and nothing acknowledged is missing
    _owners_until(
        stack,
        lambda owners: set(owners.values()) == {first_id},
        120,
        f"{first_id} to hold every lease again (lease: owner)",
    )
    assert second.proc is not None and second.proc.returncode is not None
    assert len(acked) == 900 and trickle
    assert wait_stored(stack, acked + trickle, timeout=240) == set()
    sys.stderr.write(f"fault table: lease handoff: {len(acked) + len(trickle)} acknowledged, "
                     "all stored\n")  # fmt: skip


def test_dynamodb_throttling_delays_writes_but_loses_nothing(
    stack: LocalStack, proxy: ThrottlingProxy
) -> None:
    # GIVEN DynamoDB refusing a third of the BatchWriteItem calls (ProvisionedThroughputExceeded)
    # and sending back half the items of the others as UnprocessedItems
    proxy.set(throttle_calls=0.33, unprocessed_items=0.5)
    try:
        # WHEN records flow
        acked = _traffic_with(stack, lambda: None)
        assert len(acked) == 900
        # THEN every acknowledged record is stored once the retries got through
        assert wait_stored(stack, acked, timeout=240) == set()
    finally:
        proxy.set(0.0, 0.0)
    # AND the throttling really happened, and the sink retried it (its log says so)
    assert proxy.calls_throttled > 5 and proxy.items_unprocessed > 50, vars(proxy)
    sys.stderr.write(f"fault table: throttling: {len(acked)} acknowledged, all stored; "
                     f"{proxy.calls_throttled} calls throttled, {proxy.items_unprocessed} items "
                     "sent back unprocessed\n")  # fmt: skip
    log = stack.process("consumer").log_path.read_text()
    assert log.count("retrying BatchWriteItem") >= 5
    # AND the worker kept its leases (throttling is not a reason to give a shard up)
    assert len(_owners(stack)) == CONFIG["shard_count"]
