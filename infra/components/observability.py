"""Log groups (one per service, with retention), the CloudWatch dashboard and the alarms.

Widgets and alarms use only metrics something really publishes: AWS/Kinesis, AWS/DynamoDB,
AWS/ECS, ECS/ContainerInsights and AWS/ApplicationELB from AWS itself, the KCL's own (namespace
= application name), and the EMF metrics of the producer (``KinesisIngest/Producer``), the
consumer (``KinesisIngest/Consumer``) and the scaler (``KinesisIngest/Scaler``): each an entry
of the metric catalogue (``common.metric_catalog``), named there with its unit and dimensions.
The infra tests check every metric and dimension against the catalogue and the code that
publishes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from common.metric_catalog import (
    ALB,
    CONSUMER,
    CONTAINER_INSIGHTS,
    DYNAMODB,
    ECS,
    KCL,
    KCL_APPLICATION_LAG,
    KINESIS,
    PRODUCER,
    SCALER,
    Metric,
)

SERVICES = ("producer", "consumer", "scaler")


@dataclass
class ObservabilityArgs:
    retention_days: int
    cluster_name: str = ""  # the ECS cluster whose Container Insights log group we own
    services: tuple[str, ...] = SERVICES  # a log group each


@dataclass
class DashboardInputs:
    region: str
    stream: str
    application: str
    cluster: str
    services: dict[str, str]  # service -> ECS service name
    alb_suffix: str
    target_group_suffix: str
    records_table: str = "records"
    scaler: bool = True  # provisioned stream: the shard scaler's panel; on demand: stream load


def _metric(
    metric: Metric, stat: str = "Sum", ref: str = "", visible: bool = True, **dims: str
) -> list[Any]:
    """A dashboard row: the catalogue's ``metric`` under ``dims`` (one of its dimension sets)."""
    if not metric.published_under(dims):
        raise ValueError(f"{metric.namespace} {metric.name} is not published under {set(dims)}")
    name = metric.name
    row: list[Any] = [metric.namespace, name]
    for key, value in dims.items():
        row += [key, value]
    options: dict[str, Any] = {"stat": stat}
    if stat != "Sum":
        options["label"] = f"{name} {stat}"
    if ref:
        options["id"] = ref
    if not visible:
        options["visible"] = False
    return [*row, options]


def _expression(expression: str, label: str) -> list[Any]:
    return [{"expression": expression, "label": label}]


def _widget(title: str, metrics: list[list[Any]], region: str, x: int, y: int) -> dict[str, Any]:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": 8,
        "height": 6,
        "properties": {
            "title": title,
            "metrics": metrics,
            "region": region,
            "period": 60,
            "view": "timeSeries",
            "stacked": False,
        },
    }


def dashboard_body(d: DashboardInputs) -> dict[str, Any]:
    """The dashboard's JSON body (pure: tests read it). Three widgets a row, read left to right:
    is it keeping up (ingest, lag, latency), is anything lost (put vs stored, refusals,
    quarantine, throttling), what does it cost (shards, CPU, tasks)."""
    prod, cons = PRODUCER.dimensions, CONSUMER.dimensions
    stream = {"StreamName": d.stream}
    alb = {"LoadBalancer": d.alb_suffix}
    panels: list[tuple[str, list[list[Any]]]] = [
        (
            "Ingest: requests and user records per minute",
            [
                _metric(PRODUCER["Requests"], **prod),
                _metric(PRODUCER["UserRecordsReceived"], **prod),
                _metric(PRODUCER["UserRecordsPut"], **prod),
            ],
        ),
        (
            "Consumer lag: millis behind latest",
            [
                _metric(
                    KCL["MillisBehindLatest"].of(d.application), "Maximum", **KCL_APPLICATION_LAG
                ),
                _metric(CONSUMER["MillisBehindLatest"], "Maximum", **cons),
            ],
        ),
        (
            "End-to-end latency, ingest to stored (ms)",
            [
                _metric(CONSUMER["EndToEndLatency"], "p50", **cons),
                _metric(CONSUMER["EndToEndLatency"], "p99", **cons),
                _metric(CONSUMER["EndToEndLatencyMax"], "Maximum", **cons),
            ],
        ),
        (
            "Records put to Kinesis vs stored and quarantined",
            [
                _metric(PRODUCER["UserRecordsPut"], **prod),
                _metric(CONSUMER["RecordsWritten"], **cons),
                _metric(CONSUMER["RecordsQuarantined"], **cons),
            ],
        ),
        (
            "Producer answers: 4xx, 503, other 5xx",
            [
                _metric(PRODUCER["Responses4xx"], **prod),
                _metric(PRODUCER["Responses503"], **prod),
                _metric(PRODUCER["Responses5xx"], **prod),
                _metric(PRODUCER["UserRecordsNotAccepted"], **prod),
                _metric(ALB["HTTPCode_ELB_5XX_Count"], **alb),
            ],
        ),
        (
            "Aggregation: user records per Kinesis record and per PutRecords call",
            [
                _metric(PRODUCER["UserRecordsPerKinesisRecord"], "Average", **prod),
                _metric(PRODUCER["UserRecordsPut"], ref="put", visible=False, **prod),
                _metric(PRODUCER["PutRecordsCalls"], ref="calls", visible=False, **prod),
                _expression("put / calls", "user records per PutRecords call"),
            ],
        ),
        (
            "Throttling: Kinesis writes, DynamoDB writes",
            [
                _metric(KINESIS["WriteProvisionedThroughputExceeded"], **stream),
                _metric(PRODUCER["Retries"], **prod),
                _metric(DYNAMODB["WriteThrottleEvents"], TableName=d.records_table),
                _metric(CONSUMER["WriteRetries"], **cons),
            ],
        ),
        (
            "Shards: open vs scaler target, utilisation %",
            [
                _metric(SCALER["OpenShards"], "Maximum", **stream),
                _metric(SCALER["TargetShards"], "Maximum", **stream),
                _metric(SCALER["Utilisation"], "Maximum", **stream),
            ],
        )
        if d.scaler
        else (
            "Stream (on demand): incoming bytes and records",
            [
                _metric(KINESIS["IncomingBytes"], **stream),
                _metric(KINESIS["IncomingRecords"], **stream),
            ],
        ),
        (
            "CPU per service (%)",
            [
                _metric(ECS["CPUUtilization"], "Average", ClusterName=d.cluster, ServiceName=n)
                for n in d.services.values()
            ],
        ),
        (
            "Running tasks per service",
            [
                _metric(
                    CONTAINER_INSIGHTS["RunningTaskCount"],
                    "Average",
                    ClusterName=d.cluster,
                    ServiceName=n,
                )
                for n in d.services.values()
            ],
        ),
        (
            "Consumer: batch write latency (ms)",
            [
                _metric(CONSUMER["BatchWriteLatency"], "Average", **cons),
                _metric(CONSUMER["BatchWriteLatencyMax"], "Maximum", **cons),
            ],
        ),
        (
            "Producer: buffering time (ms), records held by the rate limit",
            [
                _metric(PRODUCER["BufferingTime"], "Average", **prod),
                _metric(PRODUCER["KinesisRecordsRateLimited"], **prod),
                _metric(PRODUCER["UserRecordsOverloaded"], **prod),
            ],
        ),
    ]
    widgets = [
        _widget(title, metrics, d.region, 8 * (i % 3), 6 * (i // 3))
        for i, (title, metrics) in enumerate(panels)
    ]
    return {"widgets": widgets}


class Observability(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("kinesis-ingest:observability:Observability", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self)
        self._name = name
        self.log_groups = {
            service: aws.cloudwatch.LogGroup(
                f"{name}-{service}",
                name=f"/ecs/{name}/{service}",
                retention_in_days=args.retention_days,
                opts=self._child,
            )
            for service in args.services
        }
        self.container_insights: aws.cloudwatch.LogGroup | None = None
        if args.cluster_name:
            self.container_insights = aws.cloudwatch.LogGroup(
                f"{name}-container-insights",
                name=f"/aws/ecs/containerinsights/{args.cluster_name}/performance",
                retention_in_days=args.retention_days,
                opts=self._child,
            )
        self.dashboard: aws.cloudwatch.Dashboard | None = None
        self.register_outputs({})

    def add_dashboard(self, inputs: pulumi.Output[DashboardInputs]) -> aws.cloudwatch.Dashboard:
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{self._name}-dashboard",
            dashboard_name=self._name,
            dashboard_body=inputs.apply(lambda d: json.dumps(dashboard_body(d))),
            opts=self._child,
        )
        return self.dashboard

    def add_alarms(
        self,
        stream: pulumi.Input[str],
        application: str,
        target_group_suffix: pulumi.Input[str],
        alb_suffix: pulumi.Input[str],
        records_table: pulumi.Input[str],
        topic: aws.sns.Topic | None = None,
        **streaming: Any,
    ) -> list[aws.cloudwatch.MetricAlarm]:
        """The alarms (to ``topic`` when given); see ``alarm_specs`` (``streaming``: its
        retention and retrieval keywords)."""
        actions = [topic.arn] if topic is not None else []
        alarms = []
        for spec in alarm_specs(
            stream, application, target_group_suffix, alb_suffix, records_table, **streaming
        ):
            alarm = aws.cloudwatch.MetricAlarm(
                f"{self._name}-{spec.key}",
                alarm_description=spec.text,
                namespace=spec.namespace,
                metric_name=spec.metric,
                statistic=spec.stat,
                period=60,
                evaluation_periods=spec.minutes,
                threshold=spec.threshold,
                comparison_operator="GreaterThanThreshold",
                dimensions=spec.dimensions,
                treat_missing_data="notBreaching",
                alarm_actions=actions,
                ok_actions=actions,
                opts=self._child,
            )
            alarms.append(alarm)
        return alarms


@dataclass(frozen=True)
class AlarmSpec:
    key: str
    text: str
    namespace: str
    metric: str
    stat: str
    threshold: float
    minutes: int  # consecutive one-minute periods over the threshold
    dimensions: dict[str, Any]


def unread_age_metric(stream: Any, application: str, retrieval_mode: str) -> tuple[Metric, dict]:
    """The age of the oldest record the consumer has not read, as Kinesis itself publishes it
    (Kinesis Data Streams Developer Guide, "Monitor the Amazon Kinesis Data Streams service with
    Amazon CloudWatch", basic stream-level metrics): with enhanced fan-out
    ``SubscribeToShardEvent.MillisBehindLatest`` per registered consumer (StreamName,
    ConsumerName; the consumer's name is the application's), polling
    ``GetRecords.IteratorAgeMilliseconds`` (StreamName)."""
    if retrieval_mode == "FANOUT":
        fan_out = KINESIS["SubscribeToShardEvent.MillisBehindLatest"]
        return fan_out, {"StreamName": stream, "ConsumerName": application}
    return KINESIS["GetRecords.IteratorAgeMilliseconds"], {"StreamName": stream}


def consumer_lag_metric(application: str) -> tuple[str, str, dict[str, str], str]:
    """What the consumer's lag scaling tracks: the KCL's MillisBehindLatest for the whole
    application (namespace, metric, dimensions, statistic). The KCL publishes it at every
    ProcessTask, also for empty fetches (KCL 3.1.3 ProcessTask.java), so it is there whenever
    the workers run."""
    lag = KCL["MillisBehindLatest"].of(application)
    return lag.namespace, lag.name, dict(KCL_APPLICATION_LAG), "Maximum"


def alarm_specs(
    stream: Any,
    application: str,
    target_group_suffix: Any,
    alb_suffix: Any,
    records_table: Any,
    retention_hours: int = 168,
    retrieval_mode: str = "FANOUT",
) -> list[AlarmSpec]:
    """Falling behind, records nearing expiry (half the stream's retention), sustained
    throttling, anything quarantined, producer errors, unhealthy targets: each says in its
    description what it means."""
    prod, cons = PRODUCER.dimensions, CONSUMER.dimensions
    unread_metric, unread_dims = unread_age_metric(stream, application, retrieval_mode)
    half = retention_hours * 3600 * 1000 // 2
    return [
        _alarm("consumer-behind", "consumer more than 60 s behind the stream for 5 minutes",
               KCL["MillisBehindLatest"].of(application), "Maximum", 60_000, 5,
               KCL_APPLICATION_LAG),
        _alarm("records-expiring", f"the oldest unread record is older than half the "
               f"stream's retention ({retention_hours // 2} h): unread records expire at "
               f"{retention_hours} h, lost. The consumer is stuck or far behind: see its log "
               "(README, Troubleshooting)", unread_metric, "Maximum", half, 5, unread_dims),
        _alarm("kinesis-throttling", "Kinesis throttled writes for 5 minutes in a row "
               "(the scaler is not keeping up, or one key is hot)",
               KINESIS["WriteProvisionedThroughputExceeded"], "Sum", 0, 5,
               {"StreamName": stream}),
        _alarm("dynamodb-throttling", "DynamoDB throttled writes to the records table for 5 "
               "minutes in a row (the consumer retries; lag grows)",
               DYNAMODB["WriteThrottleEvents"], "Sum", 0, 5, {"TableName": records_table}),
        _alarm("quarantine", "records were quarantined: look at the quarantine table, fix, "
               "replay (README, Operating)", CONSUMER["RecordsQuarantined"], "Sum", 0, 1, cons),
        _alarm("consumer-write-failures", "a record processor gave up a batch for a reason "
               "not about a record (DynamoDB throttling past the write deadline, network, "
               "AccessDenied, a missing table): the shard replays from its checkpoint until "
               "it is fixed", CONSUMER["WriteFailures"], "Sum", 0, 1, cons),
        _alarm("records-not-accepted", "the producer answered 503: records not accepted by "
               "Kinesis within their TTL", PRODUCER["UserRecordsNotAccepted"], "Sum", 0, 1,
               prod),
        _alarm("producer-errors", "the producer answered 5xx other than 503 (a bug: see its "
               "log)", PRODUCER["Responses5xx"], "Sum", 0, 1, prod),
        _alarm("unhealthy-targets", "producer targets failing the load balancer's health "
               "check", ALB["UnHealthyHostCount"], "Maximum", 0, 3,
               {"TargetGroup": target_group_suffix, "LoadBalancer": alb_suffix}),
    ]  # fmt: skip


def _alarm(
    key: str,
    text: str,
    metric: Metric,
    stat: str,
    threshold: float,
    minutes: int,
    dimensions: Mapping[str, Any],
) -> AlarmSpec:
    """The alarm on the catalogue's ``metric`` under ``dimensions`` (one of its sets)."""
    if not metric.published_under(dimensions):
        raise ValueError(
            f"{metric.namespace} {metric.name} is not published under {set(dimensions)}"
        )
    dims = dict(dimensions)  # a plain dict for Pulumi (the catalogue's are read-only)
    return AlarmSpec(key, text, metric.namespace, metric.name, stat, threshold, minutes, dims)
