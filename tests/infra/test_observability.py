"""The dashboard and the alarms show only metrics of the catalogue (``common.metric_catalog``)
that something really publishes, with the dimensions it publishes them under: our services'
metrics are read from the EMF lines their code writes; AWS's (and the KCL's) from the
catalogue, which cites AWS's docs for each."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from common.metric_catalog import KCL_APPLICATION, KINESIS, SCALER, lookup
from consumer.metrics import ConsumerMetrics
from producer.metrics import ProducerMetrics
from tests.infra.conftest import ACCOUNT, CONFIG, REGION, Built, build_stack

APPLICATION = KCL_APPLICATION  # the consumer task's CONSUMER_APPLICATION_NAME


def _emf(line: str) -> tuple[str, dict[str, str], set[str]]:
    document = json.loads(line)
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    (dimension_names,) = directive["Dimensions"]
    dimensions = {name: document[name] for name in dimension_names}
    return directive["Namespace"], dimensions, {m["Name"] for m in directive["Metrics"]}


def published() -> dict[str, tuple[dict[str, str], set[str]]]:
    """Namespace -> (dimensions, metric names), from what the services' code writes."""
    producer = _emf(ProducerMetrics().emf(now=0))
    out = io.StringIO()
    consumer_metrics = ConsumerMetrics(out)
    consumer_metrics.batch(1, 0, 1.0, 0, [5.0])
    consumer_metrics.emit()
    consumer = _emf(out.getvalue())
    found = {ns: (dims, names) for ns, dims, names in (producer, consumer)}
    # the scaler's line under StreamName (tests/unit/common/test_metric_catalog.py checks that the
    # scaler writes exactly these)
    found[SCALER.name] = ({"StreamName": "<stream>"}, {m.name for m in SCALER})
    return found


def _application(built: Built) -> str:
    (task,) = [t for t in built.of("aws:ecs/taskDefinition:TaskDefinition") if "consumer" in t.name]
    (container,) = json.loads(task.inputs["containerDefinitions"])
    env = {e["name"]: e["value"] for e in container["environment"]}
    return str(env["CONSUMER_APPLICATION_NAME"])


def _check(namespace: str, metric: str, dimensions: dict[str, Any], built: Built) -> None:
    """The metric is the catalogue's, under one of its dimension sets; ours, also as our
    services' code writes it."""
    stream = built.outputs["stream"]
    if namespace == _application(built):
        namespace = APPLICATION  # the KCL's, whose namespace the catalogue writes so
    entry = lookup(namespace, metric)  # KeyError: not in the catalogue
    assert entry.published_under(dimensions), (namespace, metric, dimensions)
    ours = published()
    if namespace in ours:
        expected_dims, names = ours[namespace]
        assert metric in names, f"{namespace} {metric}: no service publishes it"
        expected = {k: (stream if v == "<stream>" else v) for k, v in expected_dims.items()}
        assert dimensions == expected, f"{namespace} {metric}: {dimensions} != {expected}"


def _dashboard(built: Built) -> dict[str, Any]:
    (dashboard,) = built.of("aws:cloudwatch/dashboard:Dashboard")
    return json.loads(dashboard.inputs["dashboardBody"])


def test_every_dashboard_metric_is_published_under_those_dimensions(built: Built) -> None:
    rows = 0
    for widget in _dashboard(built)["widgets"]:
        for row in widget["properties"]["metrics"]:
            if "expression" in row[0]:
                continue
            namespace, metric, *rest = row[:-1]
            _check(namespace, metric, dict(zip(rest[::2], rest[1::2], strict=True)), built)
            rows += 1
    assert rows >= 30


def test_the_dashboard_answers_keeping_up_lost_and_cost(built: Built) -> None:
    widgets = _dashboard(built)["widgets"]
    app = _application(built)
    names = {
        (APPLICATION if row[0] == app else row[0], row[1], row[-1].get("stat"))
        for widget in widgets
        for row in widget["properties"]["metrics"]
        if "expression" not in row[0]
    }
    for wanted in [
        ("KinesisIngest/Producer", "Requests", "Sum"),  # ingest rate
        ("KinesisIngest/Producer", "UserRecordsReceived", "Sum"),
        ("KinesisIngest/Producer", "UserRecordsPerKinesisRecord", "Average"),
        ("KinesisIngest/Producer", "Responses4xx", "Sum"),
        ("KinesisIngest/Producer", "Responses503", "Sum"),
        ("KinesisIngest/Producer", "Responses5xx", "Sum"),
        (APPLICATION, "MillisBehindLatest", "Maximum"),  # lag
        ("KinesisIngest/Consumer", "EndToEndLatency", "p50"),
        ("KinesisIngest/Consumer", "EndToEndLatency", "p99"),
        ("KinesisIngest/Consumer", "RecordsWritten", "Sum"),  # stored vs put
        ("KinesisIngest/Consumer", "RecordsQuarantined", "Sum"),
        ("AWS/Kinesis", "WriteProvisionedThroughputExceeded", "Sum"),  # throttling
        ("AWS/DynamoDB", "WriteThrottleEvents", "Sum"),
        ("KinesisIngest/Scaler", "OpenShards", "Maximum"),  # cost
        ("KinesisIngest/Scaler", "TargetShards", "Maximum"),
        ("AWS/ECS", "CPUUtilization", "Average"),
        ("ECS/ContainerInsights", "RunningTaskCount", "Average"),
    ]:
        assert wanted in names, wanted
    # per PutRecords call: a metric-math expression over two hidden series that exist
    expressions = [
        (row[0]["expression"], widget["properties"]["metrics"])
        for widget in widgets
        for row in widget["properties"]["metrics"]
        if "expression" in row[0]
    ]
    assert [e for e, _ in expressions] == ["put / calls"]
    ids = {row[-1].get("id"): row[1] for row in expressions[0][1] if "id" in row[-1]}
    assert ids == {"put": "UserRecordsPut", "calls": "PutRecordsCalls"}
    # CPU and tasks for each of the three services; widgets on a grid, none overlapping
    cpu = next(w for w in widgets if w["properties"]["title"].startswith("CPU"))
    assert len(cpu["properties"]["metrics"]) == 3
    cells = {(w["x"], w["y"]) for w in widgets}
    assert len(cells) == len(widgets)


def _alarms(built: Built) -> dict[str, dict[str, Any]]:
    return {
        a.name.removeprefix("ingest-test-"): a.inputs
        for a in built.of("aws:cloudwatch/metricAlarm:MetricAlarm")
    }


def test_alarms_cover_lag_throttling_quarantine_errors_and_targets(built: Built) -> None:
    alarms = _alarms(built)
    assert set(alarms) == {
        "consumer-behind", "records-expiring", "kinesis-throttling", "dynamodb-throttling",
        "quarantine", "consumer-write-failures", "records-not-accepted", "producer-errors",
        "unhealthy-targets",
    }  # fmt: skip
    for alarm in alarms.values():
        _check(alarm["namespace"], alarm["metricName"], alarm["dimensions"], built)
        assert alarm["alarmDescription"] and alarm["treatMissingData"] == "notBreaching"
    # sustained means minutes in a row; a single quarantined record is enough to alarm
    assert alarms["kinesis-throttling"]["evaluationPeriods"] == 5
    assert alarms["dynamodb-throttling"]["dimensions"] == {"TableName": "ingest-test-records"}
    assert (alarms["quarantine"]["evaluationPeriods"], alarms["quarantine"]["threshold"]) == (1, 0)
    # a batch given up for a reason not about a record (the shard replays): the first one
    failures = alarms["consumer-write-failures"]
    assert (failures["metricName"], failures["evaluationPeriods"], failures["threshold"]) == (
        "WriteFailures", 1, 0)  # fmt: skip
    # no alarm topic unless an e-mail is configured: the alarms then have no actions (the
    # scaler's topic exists anyway)
    assert all(not a.get("alarmActions") for a in alarms.values())
    assert [t.name for t in built.of("aws:sns/topic:Topic")] == ["ingest-test-scaling"]


@pytest.fixture(scope="module")
def with_email() -> Built:
    return build_stack({**CONFIG, "alarmEmail": "ops@example.com"})


def test_alarms_notify_the_topic_when_an_email_is_configured(with_email: Built) -> None:
    topic = with_email.one("aws:sns/topic:Topic", "-alarms")
    (subscription,) = with_email.of("aws:sns/topicSubscription:TopicSubscription")
    assert subscription.inputs["endpoint"] == "ops@example.com"
    assert subscription.inputs["topic"] == f"arn:aws:sns:{REGION}:{ACCOUNT}:{topic.name}"
    arn = f"arn:aws:sns:{REGION}:{ACCOUNT}:{topic.name}"
    for alarm in _alarms(with_email).values():
        assert alarm["alarmActions"] == alarm["okActions"] == [arn]


def test_every_metric_the_stack_reads_or_enables_is_in_the_catalogue(built: Built) -> None:
    # GIVEN the stack as Pulumi builds it (dashboard and alarms: the tests above)
    # THEN the consumer's lag scaling tracks a catalogued metric under its dimensions
    customized = [
        spec
        for policy in built.of("aws:appautoscaling/policy:Policy")
        for spec in [
            policy.inputs.get("targetTrackingScalingPolicyConfiguration", {}).get(
                "customizedMetricSpecification"
            )
        ]
        if spec
    ]
    assert customized, "no lag scaling policy"
    for spec in customized:
        dims = {d["name"]: d["value"] for d in spec["dimensions"]}
        _check(spec["namespace"], spec["metricName"], dims, built)
    # AND the stream's shard-level metrics are the catalogue's per-shard Kinesis metrics
    (stream,) = built.of("aws:kinesis/stream:Stream")
    enabled = stream.inputs["shardLevelMetrics"]
    per_shard = ("StreamName", "ShardId")
    assert enabled and all(KINESIS[name].published_under(per_shard) for name in enabled)
