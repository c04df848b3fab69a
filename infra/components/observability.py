"""The CloudWatch dashboard and the alarms (the log groups: ``infra.components.logs``).

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


@dataclass
class ObservabilityArgs:
    """What the dashboard and the alarms watch; ``services``: service -> its ECS service name."""

    region: str
    application: str
    stream: pulumi.Input[str]
    records_table: pulumi.Input[str]
    cluster: pulumi.Input[str]
    services: dict[str, pulumi.Input[str]]
    alb_suffix: pulumi.Input[str]
    target_group_suffix: pulumi.Input[str]
    scaler: bool = True  # provisioned stream: the shard scaler's panel; on demand: stream load
    alarm_topic: aws.sns.Topic | None = None  # where the alarms (and their recoveries) go
    retention_hours: int = 168  # the stream's: records-expiring alarms at half of it
    retrieval_mode: str = "FANOUT"


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
    metric: Metric,
    stat: str = "Sum",
    ref: str = "",
    visible: bool = True,
    *,
    dims: Mapping[str, str],
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
                _metric(PRODUCER["Requests"], dims=prod),
                _metric(PRODUCER["UserRecordsReceived"], dims=prod),
                _metric(PRODUCER["UserRecordsPut"], dims=prod),
            ],
        ),
        (
            "Consumer lag: millis behind latest",
            [
                _metric(
                    KCL["MillisBehindLatest"].of(d.application), "Maximum", dims=KCL_APPLICATION_LAG
                ),
                _metric(CONSUMER["MillisBehindLatest"], "Maximum", dims=cons),
            ],
        ),
        (
            "End-to-end latency, ingest to stored (ms)",
            [
                _metric(CONSUMER["EndToEndLatency"], "p50", dims=cons),
                _metric(CONSUMER["EndToEndLatency"], "p99", dims=cons),
                _metric(CONSUMER["EndToEndLatencyMax"], "Maximum", dims=cons),
            ],
        ),
        (
            "Records put to Kinesis vs stored and quarantined",
            [
                _metric(PRODUCER["UserRecordsPut"], dims=prod),
                _metric(CONSUMER["RecordsWritten"], dims=cons),
                _metric(CONSUMER["RecordsQuarantined"], dims=cons),
            ],
        ),
        (
            "Producer answers: 4xx, 503, other 5xx",
            [
                _metric(PRODUCER["Responses4xx"], dims=prod),
                _metric(PRODUCER["Responses503"], dims=prod),
                _metric(PRODUCER["Responses5xx"], dims=prod),
                _metric(PRODUCER["UserRecordsNotAccepted"], dims=prod),
                _metric(ALB["HTTPCode_ELB_5XX_Count"], dims=alb),
            ],
        ),
        (
            "Aggregation: user records per Kinesis record and per PutRecords call",
            [
                _metric(PRODUCER["UserRecordsPerKinesisRecord"], "Average", dims=prod),
                _metric(PRODUCER["UserRecordsPut"], ref="put", visible=False, dims=prod),
                _metric(PRODUCER["PutRecordsCalls"], ref="calls", visible=False, dims=prod),
                _expression("put / calls", "user records per PutRecords call"),
            ],
        ),
        (
            "Throttling: Kinesis writes, DynamoDB writes",
            [
                _metric(KINESIS["WriteProvisionedThroughputExceeded"], dims=stream),
                _metric(PRODUCER["Retries"], dims=prod),
                _metric(DYNAMODB["WriteThrottleEvents"], dims={"TableName": d.records_table}),
                _metric(CONSUMER["WriteRetries"], dims=cons),
            ],
        ),
        (
            "Shards: open vs scaler target, utilisation %",
            [
                _metric(SCALER["OpenShards"], "Maximum", dims=stream),
                _metric(SCALER["TargetShards"], "Maximum", dims=stream),
                _metric(SCALER["Utilisation"], "Maximum", dims=stream),
            ],
        )
        if d.scaler
        else (
            "Stream (on demand): incoming bytes and records",
            [
                _metric(KINESIS["IncomingBytes"], dims=stream),
                _metric(KINESIS["IncomingRecords"], dims=stream),
            ],
        ),
        (
            "CPU per service (%)",
            [
                _metric(
                    ECS["CPUUtilization"],
                    "Average",
                    dims={"ClusterName": d.cluster, "ServiceName": n},
                )
                for n in d.services.values()
            ],
        ),
        (
            "Running tasks per service",
            [
                _metric(
                    CONTAINER_INSIGHTS["RunningTaskCount"],
                    "Average",
                    dims={"ClusterName": d.cluster, "ServiceName": n},
                )
                for n in d.services.values()
            ],
        ),
        (
            "Consumer: batch write latency (ms)",
            [
                _metric(CONSUMER["BatchWriteLatency"], "Average", dims=cons),
                _metric(CONSUMER["BatchWriteLatencyMax"], "Maximum", dims=cons),
            ],
        ),
        (
            "Producer: buffering time (ms), records held by the rate limit",
            [
                _metric(PRODUCER["BufferingTime"], "Average", dims=prod),
                _metric(PRODUCER["KinesisRecordsRateLimited"], dims=prod),
                _metric(PRODUCER["UserRecordsOverloaded"], dims=prod),
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
        child = pulumi.ResourceOptions(parent=self)
        watched = pulumi.Output.all(
            stream=args.stream,
            cluster=args.cluster,
            services=pulumi.Output.all(**args.services),
            alb_suffix=args.alb_suffix,
            target_group_suffix=args.target_group_suffix,
            records_table=args.records_table,
        )
        inputs = watched.apply(
            lambda w: DashboardInputs(
                region=args.region, application=args.application, scaler=args.scaler, **w
            )
        )
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=name,
            dashboard_body=inputs.apply(lambda d: json.dumps(dashboard_body(d))),
            opts=child,
        )
        self.dashboard_url = pulumi.Output.concat(
            f"https://{args.region}.console.aws.amazon.com/cloudwatch/home?region={args.region}",
            "#dashboards:name=",
            self.dashboard.dashboard_name,
        )
        specs = alarm_specs(
            args.stream, args.application, args.target_group_suffix, args.alb_suffix,
            args.records_table, retention_hours=args.retention_hours,
            retrieval_mode=args.retrieval_mode,
        )  # fmt: skip
        actions = [args.alarm_topic.arn] if args.alarm_topic is not None else []
        self.alarms = [_metric_alarm(f"{name}-{spec.key}", spec, actions, child) for spec in specs]
        self.register_outputs(
            {"dashboard_url": self.dashboard_url, "alarms": [a.name for a in self.alarms]}
        )


def _metric_alarm(
    name: str, spec: AlarmSpec, actions: list[Any], opts: pulumi.ResourceOptions
) -> aws.cloudwatch.MetricAlarm:
    return aws.cloudwatch.MetricAlarm(
        name,
        alarm_description=spec.text,
        namespace=spec.namespace,
        metric_name=spec.metric,
        statistic=spec.stat,
        period=spec.period,
        evaluation_periods=spec.periods,
        threshold=spec.threshold,
        comparison_operator=spec.comparison,
        dimensions=spec.dimensions,
        treat_missing_data="notBreaching",
        alarm_actions=actions,
        ok_actions=actions,
        opts=opts,
    )


@dataclass(frozen=True)
class AlarmSpec:
    key: str
    text: str
    namespace: str
    metric: str
    stat: str
    threshold: float
    periods: int  # consecutive periods beyond the threshold
    dimensions: dict[str, Any]
    comparison: str = "GreaterThanThreshold"  # the metric against the threshold
    period: int = 60  # seconds


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
    periods: int,  # one-minute periods in a row beyond the threshold
    dimensions: Mapping[str, Any],
) -> AlarmSpec:
    """The alarm on the catalogue's ``metric`` under ``dimensions`` (one of its sets)."""
    if not metric.published_under(dimensions):
        raise ValueError(
            f"{metric.namespace} {metric.name} is not published under {set(dimensions)}"
        )
    dims = dict(dimensions)  # a plain dict for Pulumi (the catalogue's are read-only)
    return AlarmSpec(key, text, metric.namespace, metric.name, stat, threshold, periods, dims)
