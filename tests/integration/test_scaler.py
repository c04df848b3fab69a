"""The shard scaler on the local stack, with the consumer running: traffic makes it scale the
stream up, quiet makes it scale back down, and every record sent is stored exactly once.

The thresholds are lowered (12% of a shard's 1 MiB/s triggers a scale-up) so that a load the
emulators sustain on two cores is "heavy"; the policy, the producer-fed metric source and the
Kinesis calls are the production ones. POLLING, because kinesis-mock's enhanced fan-out stalls
once a reshard closes a subscribed shard (README).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack.stack import LocalStack, StackConfig
from tests.integration.chaos import leftovers
from tests.integration.traffic import open_shards, send, wait_stored

pytestmark = pytest.mark.integration

SCALER_ENV = {
    "SCALER_SCALE_UP_PCT": "12",
    "SCALER_TARGET_PCT": "10",
    "SCALER_SCALE_DOWN_PCT": "4",
    "SCALER_MERGE_BELOW_PCT": "8",
    "SCALER_SCALE_UP_AFTER": "2",
    "SCALER_SCALE_DOWN_AFTER": "3",
    "SCALER_COOL_OFF_AFTER_UP": "3",
    "SCALER_MIN_SHARDS": "2",
    "SCALER_MAX_SHARDS": "4",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("stack"), kinesis_tls_port=34567,
        kinesis_plain_port=34568, dynamodb_port=38000, producer_port=38080,
        stream_name="scaled-stream", shard_count=2, retrieval_mode="POLLING", scaler="on",
        scaler_interval_seconds=2.0, extra_env=SCALER_ENV,
    )  # fmt: skip
    with LocalStack(config) as running:
        yield running
    assert leftovers(running) == {}  # a clean stop leaves no process and no port behind


def _decisions(stack: LocalStack) -> list[dict[str, object]]:
    log = Path(stack.config.state_dir) / "logs" / "scaler.log"
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith('{"timestamp')]
    return [x for x in lines if str(x.get("message", "")).startswith("decision")]


def _wait_for_shards(stack: LocalStack, count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if open_shards(stack) == count:
            return True
        time.sleep(1)
    return False


def test_scales_up_under_traffic_and_down_after_it_losing_nothing(stack: LocalStack) -> None:
    padding = "x" * 8000

    async def traffic() -> tuple[list[str], bool, list[str]]:
        # GIVEN ~350 KB/s on 2 shards (~17% of each: over the lowered threshold)
        acked: list[str] = []
        heavy = asyncio.create_task(
            send(stack.config.producer_url, 2400, 50, 8, acked, lambda i: {"i": i, "p": padding})
        )
        deadline = time.monotonic() + 45
        while open_shards(stack) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(1)
        scaled_up = open_shards(stack) == 4
        await asyncio.sleep(5)  # keep posting across the reshard: new shard map, closed parents
        heavy.cancel()  # the requests in flight may or may not be answered: only acked count
        await asyncio.gather(heavy, return_exceptions=True)
        # WHEN the traffic drops to a trickle
        light = await send(stack.config.producer_url, 60, 2, 8)
        return acked, scaled_up, light

    acked, scaled_up, light = asyncio.run(traffic())
    # The cancelled sender leaves its in-flight connections to be closed by the garbage
    # collector: collect them here, where their ResourceWarnings are known, not in whichever
    # test runs next (the IAM call contract, which runs last).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    # THEN the scaler went to 4 shards under load, and back to 2 after it
    assert scaled_up, _decisions(stack)[-5:]
    assert _wait_for_shards(stack, 2, timeout=60), _decisions(stack)[-5:]
    applied = [(d["current"], d["target"]) for d in _decisions(stack) if d["applied"]]
    # up to 4 (UpdateShardCount 2 -> 4, or hot-shard splits when one shard carried more), then
    # only down (UpdateShardCount or merges): one change of direction, no flapping
    ups = [step for step in applied if step[1] > step[0]]
    assert applied[: len(ups)] == ups and ups[0][0] == 2 and ups[-1][1] == 4, applied
    assert all(target < current for current, target in applied[len(ups) :]), applied
    # AND every acknowledged record is in DynamoDB (once: the table is keyed by record id)
    assert len(acked) > 150 and len(light) == 60
    assert wait_stored(stack, acked + light, timeout=240) == set()
