"""Log groups (one per service, with retention), the CloudWatch dashboard and the alarms.

Widgets and alarms use only metrics something really publishes: AWS/Kinesis, AWS/ECS and
AWS/ApplicationELB from AWS itself, the KCL's own (namespace = application name), and the
EMF metrics of the producer (``KinesisIngest/Producer``) and the scaler
(``KinesisIngest/Scaler``). The infra tests check every metric against the code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

SERVICES = ("producer", "consumer", "scaler")


@dataclass
class ObservabilityArgs:
    retention_days: int
    alarm_email: str


@dataclass
class DashboardInputs:
    region: str
    stream: str
    application: str
    cluster: str
    services: dict[str, str]  # service -> ECS service name
    alb_suffix: str
    target_group_suffix: str


def _metric(namespace: str, name: str, stat: str = "Sum", **dims: str) -> list[Any]:
    row: list[Any] = [namespace, name]
    for key, value in dims.items():
        row += [key, value]
    return [*row, {"stat": stat}]


def _widget(title: str, metrics: list[list[Any]], region: str, x: int, y: int) -> dict[str, Any]:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": 12,
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
    """The dashboard's JSON body (pure: tests read it)."""
    producer, scaler, kinesis = "KinesisIngest/Producer", "KinesisIngest/Scaler", "AWS/Kinesis"
    svc = {"Service": "producer"}
    stream = {"StreamName": d.stream}
    panels = [
        (
            "Ingest: user records received / put per minute",
            [
                _metric(producer, "UserRecordsReceived", **svc),
                _metric(producer, "UserRecordsPut", **svc),
            ],
        ),
        (
            "Aggregation: PutRecords calls vs Kinesis records vs user records",
            [
                _metric(producer, "PutRecordsCalls", **svc),
                _metric(producer, "KinesisRecordsPut", **svc),
                _metric(producer, "UserRecordsPerKinesisRecord", "Average", **svc),
            ],
        ),
        (
            "Producer refusals (503) and records not accepted",
            [
                _metric(producer, "UserRecordsOverloaded", **svc),
                _metric(producer, "UserRecordsNotAccepted", **svc),
                _metric(
                    "AWS/ApplicationELB", "HTTPCode_Target_4XX_Count", LoadBalancer=d.alb_suffix
                ),
                _metric(
                    "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", LoadBalancer=d.alb_suffix
                ),
            ],
        ),
        (
            "Consumer lag: millis behind latest",
            [_metric(d.application, "MillisBehindLatest", "Maximum", Operation="ProcessTask")],
        ),
        (
            "Stream throttling and put success",
            [
                _metric(kinesis, "WriteProvisionedThroughputExceeded", **stream),
                _metric(kinesis, "PutRecords.Success", "Average", **stream),
            ],
        ),
        (
            "Shards: open vs scaler target",
            [
                _metric(scaler, "OpenShards", "Maximum", **stream),
                _metric(scaler, "TargetShards", "Maximum", **stream),
                _metric(scaler, "Utilisation", "Maximum", **stream),
            ],
        ),
        (
            "CPU per service (%)",
            [
                _metric(
                    "AWS/ECS", "CPUUtilization", "Average", ClusterName=d.cluster, ServiceName=n
                )
                for n in d.services.values()
            ],
        ),
        (
            "Running tasks per service",
            [
                _metric(
                    "ECS/ContainerInsights",
                    "RunningTaskCount",
                    "Average",
                    ClusterName=d.cluster,
                    ServiceName=n,
                )
                for n in d.services.values()
            ],
        ),
    ]
    widgets = [
        _widget(title, metrics, d.region, 12 * (i % 2), 6 * (i // 2))
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
            for service in SERVICES
        }
        self.topic: aws.sns.Topic | None = None
        if args.alarm_email:
            self.topic = aws.sns.Topic(
                f"{name}-alarms", kms_master_key_id="alias/aws/sns", opts=self._child
            )
            aws.sns.TopicSubscription(
                f"{name}-alarms-email",
                topic=self.topic.arn,
                protocol="email",
                endpoint=args.alarm_email,
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
    ) -> None:
        actions = [self.topic.arn] if self.topic is not None else []
        alarms = {
            "consumer-behind": (
                "consumer more than 60 s behind the stream for 5 minutes",
                application,
                "MillisBehindLatest",
                "Maximum",
                60_000,
                5,
                {"Operation": "ProcessTask"},
            ),
            "throttling": (
                "Kinesis throttled writes for 5 minutes in a row",
                "AWS/Kinesis",
                "WriteProvisionedThroughputExceeded",
                "Sum",
                0,
                5,
                {"StreamName": stream},
            ),
            "records-not-accepted": (
                "the producer answered 503: records not accepted by Kinesis",
                "KinesisIngest/Producer",
                "UserRecordsNotAccepted",
                "Sum",
                0,
                1,
                {"Service": "producer"},
            ),
            "unhealthy-targets": (
                "producer targets failing the load balancer's health check",
                "AWS/ApplicationELB",
                "UnHealthyHostCount",
                "Maximum",
                0,
                3,
                {"TargetGroup": target_group_suffix, "LoadBalancer": alb_suffix},
            ),
        }
        for key, (text, namespace, metric, stat, threshold, minutes, dims) in alarms.items():
            aws.cloudwatch.MetricAlarm(
                f"{self._name}-{key}",
                alarm_description=text,
                namespace=namespace,
                metric_name=metric,
                statistic=stat,
                period=60,
                evaluation_periods=minutes,
                threshold=threshold,
                comparison_operator="GreaterThanThreshold",
                dimensions=dims,
                treat_missing_data="notBreaching",
                alarm_actions=actions,
                ok_actions=actions,
                opts=self._child,
            )
