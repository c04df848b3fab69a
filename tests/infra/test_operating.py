"""Operating it at scale, under Pulumi mocks: the consumer scales on lag too and its
maximum follows the shards (the scaler may set it, nothing else); the scaler's state table,
notification topic and their grants; the alarm topic CloudWatch can really publish to;
retention and its alarm; item expiry; the rebuild from a moment."""

from __future__ import annotations

import json

import pytest

from consumer.config import ConsumerSettings
from infra.settings import ConfigError, load
from tests.contract.iam import ALLOW, decide
from tests.infra.conftest import ACCOUNT, CONFIG, REGION, Built, build_stack

APP = "ingest-test-consumer"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/ingest-test-stream"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"
MOMENT = "2026-11-30T10:00:00Z"
REBUILD_APP = f"{APP}-rebuild-20261130T100000Z"


def _env(built: Built, service: str) -> dict[str, str]:
    task = built.one("aws:ecs/taskDefinition:TaskDefinition", f"-{service}")
    (container,) = json.loads(task.inputs["containerDefinitions"])
    return {e["name"]: e["value"] for e in container["environment"]}


def _arn(built: Built, service: str) -> str:
    """The scalable target's ARN (the mock's id: its resource name)."""
    base = f"arn:aws:application-autoscaling:{REGION}:{ACCOUNT}:scalable-target"
    return f"{base}/ingest-test-{service}-scaling"


# ---- 1. the consumer scales on lag, up to one task per open shard ---------------------------
def test_the_consumer_scales_on_the_kcl_lag_beside_cpu(built: Built) -> None:
    # GIVEN the consumer's scaling policies
    policies = {p.name: p.inputs["targetTrackingScalingPolicyConfiguration"]
                for p in built.of("aws:appautoscaling/policy:Policy")
                if p.name.startswith("ingest-test-consumer")}  # fmt: skip
    assert set(policies) == {"ingest-test-consumer-cpu", "ingest-test-consumer-lag"}
    # THEN one tracks the KCL's MillisBehindLatest for the whole application (the series the
    # lag alarm watches: the namespace is the application, Operation=ApplicationTracker)
    lag = policies["ingest-test-consumer-lag"]
    assert lag["targetValue"] == 30_000
    assert lag["customizedMetricSpecification"] == {
        "namespace": APP, "metricName": "MillisBehindLatest", "statistic": "Maximum",
        "dimensions": [{"name": "Operation", "value": "ApplicationTracker"}],
    }  # fmt: skip
    assert not lag.get("disableScaleIn")  # scale-in needs lag and CPU both low
    # AND the producer scales on CPU alone
    assert not [p for p in built.of("aws:appautoscaling/policy:Policy") if "producer-lag" in p.name]
    assert (
        build_stack({**CONFIG, "consumerLagTargetSeconds": "90"})
        .named("ingest-test-consumer-lag")
        .inputs["targetTrackingScalingPolicyConfiguration"]["targetValue"]
        == 90_000
    )


def test_the_scaler_owns_the_consumers_maximum_and_may_set_nothing_else(built: Built) -> None:
    # GIVEN the consumer's scalable target: created with consumerMaxTasks, then left to the
    # scaler (pulumi up does not reset what the scaler set)
    consumer = built.named("ingest-test-consumer-scaling")
    assert consumer.ignore_changes == ["maxCapacity"]
    assert built.named("ingest-test-producer-scaling").ignore_changes == []
    # AND the scaler is told which target and within which bounds
    env = _env(built, "scaler")
    assert env["SCALER_CONSUMER_SERVICE"] == consumer.inputs["resourceId"]
    assert env["SCALER_CONSUMER_SERVICE"].startswith("service/ingest-test/")
    assert (env["SCALER_CONSUMER_MIN_TASKS"], env["SCALER_CONSUMER_MAX_TASKS"]) == ("2", "15")
    # WHEN IAM evaluates RegisterScalableTarget against the scaler's policy
    policy = built.policy("scaler-task")
    context = [
        ("application-autoscaling:service-namespace", "ecs"),
        ("application-autoscaling:scalable-dimension", "ecs:service:DesiredCount"),
    ]
    action = "application-autoscaling:RegisterScalableTarget"
    # THEN it may change the consumer's target, and not the producer's, nor another dimension
    assert decide(policy, action, _arn(built, "consumer"), context) == ALLOW
    assert decide(policy, action, _arn(built, "producer"), context) != ALLOW
    other = [context[0], ("application-autoscaling:scalable-dimension", "other")]
    assert decide(policy, action, _arn(built, "consumer"), other) != ALLOW
    # AND the ECS permissions Application Auto Scaling checks on its caller name the consumer
    # service alone
    ecs = next(s for s in policy["Statement"] if "ecs:UpdateService" in s["Action"])
    assert ecs["Action"] == ["ecs:DescribeServices", "ecs:UpdateService"]
    (service_arn,) = ecs["Resource"]
    assert service_arn.startswith(f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/ingest-test/")


# ---- 2. the scaler's state ------------------------------------------------------------------
def test_the_scaler_keeps_its_state_in_its_own_table(built: Built) -> None:
    table = built.one("aws:dynamodb/table:Table", "scaler-state").inputs
    assert (table["name"], table["hashKey"]) == ("ingest-test-scaler-state", "stream")
    assert table["billingMode"] == "PAY_PER_REQUEST" and table["serverSideEncryption"]["enabled"]
    assert _env(built, "scaler")["SCALER_STATE_TABLE"] == "ingest-test-scaler-state"
    policy = built.policy("scaler-task")
    for action in ("dynamodb:GetItem", "dynamodb:PutItem"):
        assert decide(policy, action, f"{TABLE}/ingest-test-scaler-state") == ALLOW
        assert decide(policy, action, f"{TABLE}/ingest-test-records") != ALLOW
    assert decide(policy, "dynamodb:DeleteItem", f"{TABLE}/ingest-test-scaler-state") != ALLOW


# ---- 3. notifications -----------------------------------------------------------------------
def test_the_scaler_publishes_to_its_topic_only(built: Built) -> None:
    topic = built.named("ingest-test-scaling").inputs
    assert topic["kmsMasterKeyId"] == "alias/aws/sns"  # publishers of the account may use it
    arn = f"arn:aws:sns:{REGION}:{ACCOUNT}:ingest-test-scaling"
    assert _env(built, "scaler")["SCALER_NOTIFICATION_TOPIC_ARN"] == arn
    policy = built.policy("scaler-task")
    assert decide(policy, "sns:Publish", arn) == ALLOW
    assert decide(policy, "sns:Publish", f"arn:aws:sns:{REGION}:{ACCOUNT}:other") != ALLOW
    assert built.outputs["scaling_topic_arn"] == arn
    # no subscription unless configured; scalingEmail subscribes one
    assert built.of("aws:sns/topicSubscription:TopicSubscription") == []
    mailed = build_stack({**CONFIG, "scalingEmail": "scale@example.com"})
    (subscription,) = mailed.of("aws:sns/topicSubscription:TopicSubscription")
    assert (subscription.inputs["topic"], subscription.inputs["endpoint"]) == (
        arn, "scale@example.com")  # fmt: skip


def test_cloudwatch_alarms_can_use_the_alarm_topics_key() -> None:
    # GIVEN alarms by e-mail: the AWS managed SNS key would refuse CloudWatch alarms
    built = build_stack({**CONFIG, "alarmEmail": "ops@example.com"})
    topic = built.one("aws:sns/topic:Topic", "-alarms").inputs
    key = built.one("aws:kms/key:Key", "alarms")
    assert topic["kmsMasterKeyId"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key.name}"
    assert key.inputs["enableKeyRotation"] is True
    # THEN the key's policy lets this account's CloudWatch alarms encrypt for the topic
    statements = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}
    alarms = statements["CloudWatchAlarms"]
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert alarms["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert alarms["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert statements["Account"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}


# ---- 4. retention ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "metric", "dimensions", "hours"),
    [
        ({}, "SubscribeToShardEvent.MillisBehindLatest",
         {"StreamName": "ingest-test-stream", "ConsumerName": APP}, 168),
        ({"consumerRetrievalMode": "POLLING", "retentionHours": "48"},
         "GetRecords.IteratorAgeMilliseconds", {"StreamName": "ingest-test-stream"}, 48),
    ],
)  # fmt: skip
def test_an_alarm_fires_before_unread_records_expire(
    values: dict[str, str], metric: str, dimensions: dict[str, str], hours: int
) -> None:
    built = build_stack({**CONFIG, **values})
    assert built.one("aws:kinesis/stream:Stream", "stream").inputs["retentionPeriod"] == hours
    alarm = built.named("ingest-test-records-expiring").inputs
    # the age of the oldest unread record, as Kinesis measures it for this retrieval mode,
    # above half the retention
    assert (alarm["namespace"], alarm["metricName"], alarm["statistic"]) == (
        "AWS/Kinesis", metric, "Maximum")  # fmt: skip
    assert alarm["dimensions"] == dimensions
    assert alarm["threshold"] == hours * 3600 * 1000 / 2
    assert f"{hours // 2} h" in alarm["alarmDescription"]


def test_retention_defaults_to_a_week_and_stays_within_what_kinesis_allows() -> None:
    assert load(CONFIG).retention_hours == 168
    for hours in ("23", "8761"):
        with pytest.raises(ConfigError, match="retentionHours"):
            load({**CONFIG, "retentionHours": hours})


# ---- 5. rebuild from a moment ---------------------------------------------------------------
def test_no_rebuild_runs_unless_configured(built: Built) -> None:
    assert not [r for r in built.resources if "rebuild" in r.name]
    assert built.outputs.get("rebuild_application", "") == ""


@pytest.fixture(scope="module")
def rebuilding() -> Built:
    return build_stack({**CONFIG, "rebuildFrom": MOMENT})


def test_a_rebuild_is_a_second_kcl_application_from_the_moment(rebuilding: Built) -> None:
    # GIVEN rebuildFrom: its own three KCL tables and fan-out consumer, created by the stack
    tables = {t.inputs["name"] for t in rebuilding.of("aws:dynamodb/table:Table")}
    assert {REBUILD_APP, f"{REBUILD_APP}-WorkerMetricStats",
            f"{REBUILD_APP}-CoordinatorState"} <= tables  # fmt: skip
    efo = rebuilding.one("aws:kinesis/streamConsumer:StreamConsumer", "rebuild").inputs
    assert efo["name"] == REBUILD_APP
    # AND a service running the consumer's image, starting at the moment, into the same table
    env = _env(rebuilding, "rebuild")
    consumer = _env(rebuilding, "consumer")
    assert env["CONSUMER_APPLICATION_NAME"] == REBUILD_APP
    assert (env["CONSUMER_INITIAL_POSITION"], env["CONSUMER_INITIAL_TIMESTAMP"]) == (
        "AT_TIMESTAMP", "2026-11-30T10:00:00+00:00")  # fmt: skip
    assert env["CONSUMER_RECORDS_TABLE"] == consumer["CONSUMER_RECORDS_TABLE"]
    ConsumerSettings(**{k.removeprefix("CONSUMER_").lower(): v for k, v in env.items()})
    task = rebuilding.one("aws:ecs/taskDefinition:TaskDefinition", "-rebuild")
    (container,) = json.loads(task.inputs["containerDefinitions"])
    consumer_task = rebuilding.one("aws:ecs/taskDefinition:TaskDefinition", "-consumer")
    assert (
        container["image"] == json.loads(consumer_task.inputs["containerDefinitions"])[0]["image"]
    )
    # enough workers to lease every shard the stream may have: 64 / 16 leases a task
    service = rebuilding.one("aws:ecs/service:Service", "-rebuild").inputs
    assert service["desiredCount"] == 4
    assert rebuilding.outputs["rebuild_application"] == REBUILD_APP


def test_the_rebuild_may_use_its_own_tables_and_the_records_table_only(
    rebuilding: Built,
) -> None:
    policy = rebuilding.policy("rebuild-task")
    for table in (REBUILD_APP, f"{REBUILD_APP}-CoordinatorState"):
        assert decide(policy, "dynamodb:PutItem", f"{TABLE}/{table}") == ALLOW
    assert decide(policy, "dynamodb:PutItem", f"{TABLE}/{APP}") != ALLOW  # not the consumer's
    assert decide(policy, "dynamodb:BatchWriteItem", f"{TABLE}/ingest-test-records") == ALLOW
    consumer = f"{STREAM_ARN}/consumer/{REBUILD_APP}"
    assert decide(policy, "kinesis:SubscribeToShard", consumer) == ALLOW
    assert decide(policy, "kinesis:SubscribeToShard", f"{STREAM_ARN}/consumer/{APP}") != ALLOW
    condition = [("cloudwatch:namespace", REBUILD_APP)]
    assert decide(policy, "cloudwatch:PutMetricData", "*", condition) == ALLOW


def test_a_polling_rebuild_registers_no_consumer_and_a_bad_moment_is_refused() -> None:
    polling = build_stack({**CONFIG, "rebuildFrom": MOMENT, "consumerRetrievalMode": "POLLING"})
    assert not [c for c in polling.of("aws:kinesis/streamConsumer:StreamConsumer")]
    for moment, message in (("yesterday", "rebuildFrom"), ("2026-11-30T10:00:00", "time zone")):
        with pytest.raises(ConfigError, match=message):
            load({**CONFIG, "rebuildFrom": moment})


# ---- 6. item expiry -------------------------------------------------------------------------
def test_items_expire_only_when_configured(built: Built) -> None:
    assert "ttl" not in built.named("ingest-test-records").inputs
    assert "CONSUMER_ITEM_TTL_SECONDS" not in _env(built, "consumer")
    expiring = build_stack({**CONFIG, "itemTtlDays": "30"})
    table = expiring.named("ingest-test-records").inputs
    assert table["ttl"] == {"attributeName": "expires_at", "enabled": True}
    assert _env(expiring, "consumer")["CONSUMER_ITEM_TTL_SECONDS"] == str(30 * 86400)
    assert "ttl" not in expiring.named("ingest-test-records-quarantine").inputs


# ---- on demand: no scaler, nothing of it ---------------------------------------------------
def test_an_on_demand_stream_has_no_scaler_state_topic_or_followed_maximum() -> None:
    built = build_stack({**CONFIG, "streamMode": "on-demand"})
    for name in ("ingest-test-scaler-state", "ingest-test-scaling", "ingest-test-scaler-task"):
        assert not [r for r in built.resources if r.name == name]
    assert built.named("ingest-test-consumer-scaling").ignore_changes == []
    assert built.outputs.get("scaling_topic_arn") is None
