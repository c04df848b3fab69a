"""What the scaler keeps across restarts (cool-offs, the UpdateShardCount budget, a refusal by
AWS, the last decision, the consumer's maximum), what it tells SNS, and how the consumer's
maximum follows the shards. Fakes for Kinesis and the metrics; the store's DynamoDB requests
checked with botocore's Stubber."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import ANY, Stubber

from common.kinesis import even_shards
from scaler.model import Action, Decision, Load, Sample
from scaler.notify import ConsumerCapacity, SnsNotifier, message
from scaler.policy import Operation, Policy, PolicyConfig
from scaler.service import Scaler
from scaler.state import (
    DynamoDBStateStore,
    MemoryStateStore,
    ScalerState,
    StateConflict,
    from_item,
    to_item,
)
from scaler.stream import StreamAdmin
from tests.unit.scaler.test_service import MIB, FakeKinesisAdmin


class Minutes:
    """Samples of a constant load (shard units of 1 MiB/s) up to ``now`` (exclusive)."""

    def __init__(self, now: int, units: float) -> None:
        self.minute, self.units = now, units

    def samples(self, shards: Any, count: int) -> list[Sample]:
        return [
            Sample(m, Load(self.units * MIB, 0)) for m in range(self.minute - count, self.minute)
        ]

    def now(self) -> int:
        return self.minute


class Published:
    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def publish(self, subject: str, message: dict[str, Any]) -> None:
        self.messages.append((subject, message))


class FakeAutoscaling:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail

    def register_scalable_target(self, **kwargs: Any) -> None:
        if self.fail:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "no"}}, "x")
        self.calls.append(kwargs)


def service(
    kinesis: FakeKinesisAdmin, source: Minutes, store: MemoryStateStore, **kwargs: Any
) -> Scaler:
    admin = StreamAdmin(kinesis, "s", sleep=lambda _s: None)
    return Scaler(admin, source, Policy(PolicyConfig()), state=store, clock=lambda: 1.0e9, **kwargs)


# ---- the codec and the DynamoDB store ---------------------------------------------------------
def test_the_item_keeps_epoch_seconds_so_another_check_interval_reads_the_same_history() -> None:
    # GIVEN a state written by a scaler whose samples are minutes
    up = Decision(Action.UPDATE_SHARD_COUNT, "busy: 4 -> 6", 4, 6)
    split = Decision(Action.SPLIT, "hot", 6, 7, ("shardId-1",), 2**127)
    state = ScalerState(
        (Operation(29_000_000, up), Operation(29_000_010, split)),
        29_000_005,
        split,
        1.74e9,
        7,
        version=3,
    )
    item = to_item("s", state, 60.0)
    assert item["stream"] == {"S": "s"} and item["version"] == {"N": "3"}
    # WHEN it is read back in minutes, and by a scaler whose samples are 2 s
    assert from_item(item, 60.0) == state
    two = from_item(json.loads(json.dumps(item)), 2.0)
    # THEN the same moments, in its unit
    assert [op.minute for op in two.operations] == [29_000_000 * 30, 29_000_010 * 30]
    assert two.updates_refused_at == 29_000_005 * 30
    assert two.operations[1].decision == split and two.consumer_max == 7


def test_the_dynamodb_store_reads_consistently_and_writes_only_over_what_it_read() -> None:
    client = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    store = DynamoDBStateStore(client, "scaler-state", "s", 60.0)
    key = {"stream": {"S": "s"}}
    with Stubber(client) as stub:
        # GIVEN no item yet: an empty state, then a first write that must create the item
        stub.add_response(
            "get_item", {}, {"TableName": "scaler-state", "Key": key, "ConsistentRead": True}
        )
        stub.add_response(
            "put_item",
            {},
            {
                "TableName": "scaler-state",
                "Item": ANY,
                "ExpressionAttributeNames": {"#v": "version"},
                "ConditionExpression": "attribute_not_exists(#v)",
            },
        )
        # AND a second write conditional on the version of the first
        stub.add_response(
            "put_item",
            {},
            {
                "TableName": "scaler-state",
                "Item": ANY,
                "ExpressionAttributeNames": {"#v": "version"},
                "ConditionExpression": "#v = :v",
                "ExpressionAttributeValues": {":v": {"N": "1"}},
            },
        )
        stub.add_client_error("put_item", "ConditionalCheckFailedException")
        state = store.load()
        assert state == ScalerState()
        first = store.save(state)
        second = store.save(first)
        assert (first.version, second.version) == (1, 2)
        # WHEN another scaler wrote in between
        with pytest.raises(StateConflict):
            store.save(second)
        stub.assert_no_pending_responses()


# ---- a restart mid-cool-off -------------------------------------------------------------------
def scaled_up(store: MemoryStateStore) -> FakeKinesisAdmin:
    """A scaler that took 4 shards to 6 at minute 100 (stream at 95%), then went away."""
    kinesis = FakeKinesisAdmin(even_shards(4))
    first = service(kinesis, Minutes(100, 3.8), store)
    assert first.check().action is Action.UPDATE_SHARD_COUNT
    kinesis.shards = even_shards(6)
    return kinesis


def test_a_restarted_scaler_holds_through_the_cool_off_it_had_started() -> None:
    # GIVEN the stream went 4 -> 6 at minute 100, and the load fell back to 2.4 shards' worth
    store = MemoryStateStore("s")
    kinesis = scaled_up(store)
    # WHEN a new scaler process starts 6 minutes later, reading the same store
    restarted = service(kinesis, Minutes(106, 2.4), store)
    decision = restarted.check()
    # THEN it holds: the cool-off after the scale-up has 24 minutes to go
    assert (decision.action, decision.reason) == (
        Action.HOLD,
        "cooling off after a scale-up (6 min ago)",
    )
    assert kinesis.calls[1:] == []
    # AND it scales down once the cool-off is over (30 min), not before
    assert service(kinesis, Minutes(129, 2.4), store).check().action is Action.HOLD
    assert service(kinesis, Minutes(130, 2.4), store).check().action is Action.UPDATE_SHARD_COUNT


def test_without_its_state_the_same_samples_make_it_flap_back_down() -> None:
    # GIVEN the same scale-up, but the restarted scaler has an empty store (the old behaviour)
    kinesis = scaled_up(MemoryStateStore("s"))
    decision = service(kinesis, Minutes(106, 2.4), MemoryStateStore("s")).check()
    # THEN it scales straight back down: what the stored state prevents
    assert (decision.action, decision.current, decision.target) == (Action.UPDATE_SHARD_COUNT, 6, 4)


def test_the_rolling_update_budget_survives_a_restart() -> None:
    # GIVEN ten UpdateShardCount calls in the last 24 h, stored
    store = MemoryStateStore("s")
    ups = tuple(
        Operation(2000 + 60 * i, Decision(Action.UPDATE_SHARD_COUNT, "x", 4, 4)) for i in range(10)
    )
    store.save(ScalerState(ups))
    # WHEN a new scaler sees the stream busy
    kinesis = FakeKinesisAdmin(even_shards(4))
    decision = service(kinesis, Minutes(2700, 3.8), store).check()
    # THEN it splits instead of spending a call AWS would refuse
    assert decision.action is Action.SPLIT, decision
    assert "no UpdateShardCount left in the last 24 h" in decision.reason
    assert [c[0] for c in kinesis.calls] == ["split_shard"]


def test_a_refusal_by_aws_is_remembered_and_the_refused_call_not_counted() -> None:
    # GIVEN AWS refuses UpdateShardCount (its limit counts calls we do not know of)
    store = MemoryStateStore("s")
    kinesis = FakeKinesisAdmin(even_shards(4), refuse="LimitExceededException")
    service(kinesis, Minutes(100, 3.8), store).check()
    state = store.load()
    assert state.operations == () and state.updates_refused_at == 100
    # WHEN the scaler restarts a minute later and may reshard again
    kinesis.refuse = None
    decision = service(kinesis, Minutes(101, 3.8), store).check()
    # THEN it splits until a day has passed since the refusal, then updates again
    assert decision.action is Action.SPLIT
    kinesis.shards = even_shards(4)
    later = service(kinesis, Minutes(100 + 1440, 3.8), store).check()
    assert later.action is Action.UPDATE_SHARD_COUNT and store.load().updates_refused_at is None


def test_an_operation_is_stored_before_its_call_so_a_crash_during_it_is_not_forgotten() -> None:
    # GIVEN the call never answers (the process dies, or the connection breaks)
    store = MemoryStateStore("s")
    kinesis = FakeKinesisAdmin(even_shards(4))

    def broken(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://kinesis")

    kinesis.update_shard_count = broken  # type: ignore[method-assign]  # broken for this test
    with pytest.raises(EndpointConnectionError):
        service(kinesis, Minutes(100, 3.8), store).check()
    # THEN the operation is in the store: a restarted scaler cools off from it
    (op,) = store.load().operations
    assert (op.minute, op.decision.target) == (100, 6)


def test_a_second_writer_makes_the_scaler_read_again_and_act_on_nothing_unseen() -> None:
    store = MemoryStateStore("s")
    kinesis = FakeKinesisAdmin(even_shards(4))
    scaler = service(kinesis, Minutes(100, 2.8), store)
    scaler.check()
    store.save(store.load())  # another scaler wrote meanwhile
    scaler.source = Minutes(101, 3.8)
    with pytest.raises(StateConflict):
        scaler.check()
    assert kinesis.calls == [] and scaler.state is None
    assert scaler.check().action is Action.UPDATE_SHARD_COUNT  # read again, then acted


def test_a_dry_run_reads_the_state_and_writes_nothing() -> None:
    store = MemoryStateStore("s")
    scaled_up(store)
    saves = store.saves
    dry = service(FakeKinesisAdmin(even_shards(6)), Minutes(106, 2.4), store, dry_run=True)
    assert dry.check().reason.startswith("cooling off")
    assert store.saves == saves


# ---- notifications ----------------------------------------------------------------------------
def test_every_operation_refusal_and_dry_run_decision_is_published_once() -> None:
    published = Published()
    store = MemoryStateStore("s")
    # GIVEN an applied scale-up
    kinesis = FakeKinesisAdmin(even_shards(4))
    service(kinesis, Minutes(100, 3.8), store, notifier=published).check()
    # AND a refused one (another scaler process, the same topic)
    refused = FakeKinesisAdmin(even_shards(4), refuse="ResourceInUseException")
    service(refused, Minutes(200, 3.8), MemoryStateStore("s"), notifier=published).check()
    # AND a dry run that would scale up, three checks in a row
    dry = service(
        FakeKinesisAdmin(even_shards(4)),
        Minutes(300, 3.8),
        MemoryStateStore("s"),
        notifier=published,
        dry_run=True,
    )
    for _ in range(3):
        dry.check()
    # AND a stream at max_shards under load
    capped = Scaler(
        StreamAdmin(FakeKinesisAdmin(even_shards(4)), "s"),
        Minutes(400, 3.8),
        Policy(PolicyConfig(max_shards=4)),
        notifier=published,
    )
    capped.check()
    capped.check()
    # THEN four messages: applied, refused (with AWS's error), the dry run once, held once
    outcomes = [m["outcome"] for _, m in published.messages]
    assert outcomes == ["applied", "refused", "dry_run", "held"]
    subject, body = published.messages[0]
    assert subject == "s: update_shard_count 4 -> 6 (applied)"
    assert (body["current"], body["target"], body["update_shard_count_calls_24h"]) == (4, 6, 1)
    assert "ResourceInUseException" in published.messages[1][1]["error"]
    assert published.messages[3][1]["reason"] == "at max_shards (4) under load"


def test_the_sns_notifier_publishes_json_and_never_stops_the_scaler() -> None:
    client = boto3.client(
        "sns", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    topic = "arn:aws:sns:us-east-1:123456789012:scaling"
    subject, body = message(
        "s", Decision(Action.MERGE, "cold \u2744", 5, 4, ("a", "b")), "applied", 0.0
    )
    assert subject == "s: merge 5 -> 4 (applied)" and body["shards"] == ["a", "b"]
    with Stubber(client) as stub:
        stub.add_response(
            "publish",
            {"MessageId": "1"},
            {"TopicArn": topic, "Subject": subject, "Message": json.dumps(body)},
        )
        stub.add_client_error("publish", "AuthorizationError")
        SnsNotifier(client, topic).publish(subject, body)
        SnsNotifier(client, topic).publish(subject, body)  # logged, not raised
        stub.assert_no_pending_responses()


# ---- the consumer's maximum follows the shards -----------------------------------------------
def test_the_consumer_maximum_follows_the_open_shards_within_its_bounds() -> None:
    autoscaling = FakeAutoscaling()
    capacity = ConsumerCapacity(autoscaling, "service/c/consumer", 2, 5)
    store = MemoryStateStore("s")
    kinesis = FakeKinesisAdmin(even_shards(4))
    # WHEN the scaler starts on 4 shards and scales up to 6
    scaler = service(kinesis, Minutes(100, 3.8), store, consumers=capacity)
    scaler.check()
    # THEN the maximum went to 4 (a task per shard), then to 5 (the configured bound)
    assert [c["MaxCapacity"] for c in autoscaling.calls] == [4, 5]
    assert autoscaling.calls[0] == {
        "ServiceNamespace": "ecs",
        "ResourceId": "service/c/consumer",
        "ScalableDimension": "ecs:service:DesiredCount",
        "MaxCapacity": 4,
    }
    # AND a restarted scaler does not set it again (it is in the state), unless shards change
    kinesis.shards = even_shards(6)
    service(kinesis, Minutes(101, 4.0), store, consumers=capacity).check()
    assert len(autoscaling.calls) == 2
    kinesis.shards = even_shards(1)
    service(kinesis, Minutes(200, 0.1), store, consumers=capacity).check()
    assert autoscaling.calls[-1]["MaxCapacity"] == 2  # never below the minimum


def test_a_failed_maximum_update_is_tried_again_and_does_not_stop_scaling() -> None:
    autoscaling = FakeAutoscaling(fail=True)
    store = MemoryStateStore("s")
    kinesis = FakeKinesisAdmin(even_shards(4))
    capacity = ConsumerCapacity(autoscaling, "service/c/consumer", 1, 10)
    assert service(kinesis, Minutes(100, 3.8), store, consumers=capacity).check().action is (
        Action.UPDATE_SHARD_COUNT
    )
    assert store.load().consumer_max is None
    autoscaling.fail = False
    kinesis.shards = even_shards(6)
    service(kinesis, Minutes(101, 4.0), store, consumers=capacity).check()
    assert [c["MaxCapacity"] for c in autoscaling.calls] == [6]
