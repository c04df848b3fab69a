"""The shard scaler on the local stack, with the consumer running: traffic makes it scale the
stream up, the scaler is killed and restarted in the middle of the cool-off that follows, it
holds until that cool-off is over (its state is in DynamoDB Local), then quiet makes it scale
back down; every operation reached the SNS topic, the consumer's maximum task count followed
the shards, and every record sent is stored exactly once.

The thresholds are lowered (12% of a shard's 1 MiB/s triggers a scale-up) so that a load the
emulators sustain on two cores is "heavy"; the policy, the producer-fed metric source, the
state store, the notifier and the AWS calls are the production ones. POLLING, because
kinesis-mock's enhanced fan-out stalls once a reshard closes a subscribed shard (README).
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from local_stack.stack import LocalStack, StackConfig
from tests.integration.chaos import leftovers
from tests.integration.traffic import open_shards, send, wait_stored
from tests.polling import eventually, eventually_async
from tests.ports import SCALER

pytestmark = pytest.mark.integration

SCALER_ENV = {
    "SCALER_SCALE_UP_PCT": "12",
    "SCALER_TARGET_PCT": "10",
    "SCALER_SCALE_DOWN_PCT": "4",
    "SCALER_MERGE_BELOW_PCT": "8",
    "SCALER_SCALE_UP_AFTER": "2",
    "SCALER_SCALE_DOWN_AFTER": "3",
    "SCALER_COOL_OFF_AFTER_UP": "15",  # 30 s at one sample per 2 s check
    "SCALER_MIN_SHARDS": "2",
    "SCALER_MAX_SHARDS": "4",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("stack"), **SCALER,
        stream_name="scaled-stream", shard_count=2, retrieval_mode="POLLING", scaler="on",
        scaler_interval_seconds=2.0, extra_env=SCALER_ENV,
    )  # fmt: skip
    with LocalStack(config) as running:
        yield running
    assert leftovers(running) == {}  # a clean stop leaves no process and no port behind


INTERVAL = 2.0  # the stack's scaler_interval_seconds
COOL_OFF_SECONDS = int(SCALER_ENV["SCALER_COOL_OFF_AFTER_UP"]) * INTERVAL
LOADED = "scaler state loaded"  # the first line of every scaler process


def _lines(stack: LocalStack) -> list[dict[str, Any]]:
    log = Path(stack.config.state_dir) / "logs" / "scaler.log"
    return [json.loads(x) for x in log.read_text().splitlines() if x.startswith('{"timestamp')]


def _decisions(
    stack: LocalStack, lines: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    lines = _lines(stack) if lines is None else lines
    return [x for x in lines if str(x.get("message", "")).startswith("decision")]


def _at(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["timestamp"]).timestamp()


def _watch_topic(stack: LocalStack) -> str:
    """An SQS queue subscribed to the scaler's topic (raw messages): what a subscriber gets."""
    sqs = stack.client("sqs")
    queue = sqs.create_queue(QueueName="scaling-watch")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]  # fmt: skip
    stack.client("sns").subscribe(TopicArn=stack.observed.topic_arn(), Protocol="sqs",
                                  Endpoint=queue_arn,
                                  Attributes={"RawMessageDelivery": "true"})  # fmt: skip
    return str(queue)


def _notifications(stack: LocalStack, queue: str) -> list[dict[str, Any]]:
    sqs = stack.client("sqs")
    found: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        if not got.get("Messages"):
            return found
        found += [json.loads(m["Body"]) for m in got["Messages"]]
        sqs.delete_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(got["Messages"])])  # fmt: skip


def _last_decisions(stack: LocalStack) -> str:
    return f"the scaler's last decisions: {_decisions(stack)[-5:]}"


def test_scales_up_holds_through_a_restart_mid_cool_off_and_scales_down_losing_nothing(
    stack: LocalStack,
) -> None:
    padding = "x" * 8000
    queue = _watch_topic(stack)
    restarted_at = 0.0

    async def traffic() -> tuple[list[str], list[str]]:
        nonlocal restarted_at
        # GIVEN ~350 KB/s on 2 shards (~17% of each: over the lowered threshold)
        acked: list[str] = []
        heavy = asyncio.create_task(
            send(stack.config.producer_url, 2400, 50, 8, acked, lambda i: {"i": i, "p": padding})
        )
        try:
            # THEN the scaler goes to 4 shards under load
            shards = await eventually_async(
                lambda: open_shards(stack),
                until=lambda shards: shards >= 4,
                timeout=45,
                interval=1,
                what=lambda: f"4 open shards under load; {_last_decisions(stack)}",
            )
            assert shards == 4, _last_decisions(stack)
            await asyncio.sleep(5)  # keep posting across the reshard: new shard map, closed parents
        finally:
            heavy.cancel()  # the requests in flight may or may not be answered: only acked count
            await asyncio.gather(heavy, return_exceptions=True)
        # WHEN the scaler process is SIGKILLed in the cool-off after the scale-up, and started
        # again (as ECS replaces a task), while the traffic drops to a trickle
        stack.process("scaler").kill()
        stack.restart("scaler")
        restarted_at = time.time()
        light = await send(stack.config.producer_url, 60, 2, 8)
        return acked, light

    try:
        acked, light = asyncio.run(traffic())
    finally:
        # The cancelled sender leaves its in-flight connections to be closed by the garbage
        # collector: collect them here, where their ResourceWarnings are known, not in whichever
        # test runs next (the IAM call contract, which runs last).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    # THEN, the load over, the scaler takes the stream back to 2 shards
    eventually(
        lambda: open_shards(stack),
        until=lambda shards: shards == 2,
        timeout=90,
        interval=1,
        what=lambda: f"2 open shards after the load; {_last_decisions(stack)}",
    )
    lines = _lines(stack)
    decisions = _decisions(stack, lines)
    applied = [(d["current"], d["target"]) for d in decisions if d["applied"]]
    # up to 4 (UpdateShardCount 2 -> 4, or hot-shard splits when one shard carried more), then
    # only down (UpdateShardCount or merges): one change of direction, no flapping
    ups = [step for step in applied if step[1] > step[0]]
    assert applied[: len(ups)] == ups and ups[0][0] == 2 and ups[-1][1] == 4, applied
    assert all(target < current for current, target in applied[len(ups) :]), applied
    # AND the restarted scaler read its state and held until the cool-off it had started was
    # over: the first scale-down comes COOL_OFF_SECONDS after the last scale-up (one check of
    # slack), though the new process had samples enough to scale down long before
    starts = [i for i, x in enumerate(lines) if x.get("message") == LOADED]
    assert len(starts) == 2, "expected the first scaler and the restarted one"
    after = _decisions(stack, lines[starts[1] :])
    last_up = [d for d in decisions if d["applied"] and d["target"] > d["current"]][-1]
    first_down = next(d for d in after if d["applied"])
    held = [d for d in after if str(d["message"]).startswith("decision: hold (cooling off after")]
    waited = _at(first_down) - _at(last_up)
    sys.stderr.write(
        f"scaler restart table: last scale-up {last_up['message']!r}; restarted "
        f"{restarted_at - _at(last_up):.1f} s into the {COOL_OFF_SECONDS:.0f} s cool-off; "
        f"{len(held)} holds cooling off after the restart; first scale-down {waited:.1f} s "
        f"after the scale-up: {first_down['message']!r}\n"
    )
    assert _at(last_up) < restarted_at < _at(last_up) + COOL_OFF_SECONDS - 10
    assert held, after[:10]
    assert waited >= COOL_OFF_SECONDS - INTERVAL, (waited, after[:12])
    # AND every operation reached the SNS topic, as the scaler took it
    told = [(n["current"], n["target"]) for n in _notifications(stack, queue)
            if n["outcome"] == "applied"]  # fmt: skip
    assert told == applied
    # AND the consumer's maximum task count followed the open shards: 2, up to 4, down to 2
    maxima = [x["consumer_max"] for x in lines if "consumer_max" in x]
    assert maxima[0] == 2 and max(maxima) == 4 and maxima[-1] == 2, maxima
    (target,) = stack.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="ecs")["ScalableTargets"]  # fmt: skip
    assert target["MaxCapacity"] == 2
    # AND the state item holds every operation (the last 24 h) and the last decision
    key = {"stream": {"S": stack.config.stream_name}}
    item = stack.client("dynamodb").get_item(TableName="scaler-state", Key=key,
                                             ConsistentRead=True)  # fmt: skip
    stored = json.loads(item["Item"]["operations"]["S"])
    assert [(op["current"], op["target"]) for op in stored] == applied
    assert "last_decision" in item["Item"]
    # AND every acknowledged record is in DynamoDB (once: the table is keyed by record id)
    assert len(acked) > 150 and len(light) == 60
    assert wait_stored(stack, acked + light, timeout=240) == set()
