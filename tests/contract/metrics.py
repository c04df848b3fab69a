"""The metric contract: what the local stack really published, and whether the dashboard and
the alarms (rendered with the local stack's names) ask only for that.

Published = the KCL's own metrics as CloudWatch (moto) has them after its PutMetricData calls
(ListMetrics: namespace, name, every dimension value), and our services' EMF lines in their
logs (the lines CloudWatch Logs would turn into metrics). AWS's own metrics cannot be
published locally: they must be in ``AWS_METRICS``, each from its service's documentation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

Metric = tuple[str, str, frozenset[tuple[str, str]]]  # namespace, name, dimensions

# AWS's metrics the dashboard and alarms use: namespace -> metric -> dimension names, with the
# documentation page that lists them.
AWS_METRICS: dict[str, dict[str, set[str]]] = {
    # Kinesis Data Streams Developer Guide, "Monitor the Amazon Kinesis Data Streams service
    # with Amazon CloudWatch" (stream-level metrics, dimension StreamName; the enhanced fan-out
    # consumer's metrics are per StreamName and ConsumerName)
    "AWS/Kinesis": {
        "WriteProvisionedThroughputExceeded": {"StreamName"},
        "IncomingBytes": {"StreamName"},
        "IncomingRecords": {"StreamName"},
        "GetRecords.IteratorAgeMilliseconds": {"StreamName"},
        "SubscribeToShardEvent.MillisBehindLatest": {"StreamName", "ConsumerName"},
    },
    # DynamoDB Developer Guide, "DynamoDB Metrics and dimensions" (TableName)
    "AWS/DynamoDB": {"WriteThrottleEvents": {"TableName"}},
    # Amazon ECS Developer Guide, "Amazon ECS CloudWatch metrics" (ClusterName, ServiceName)
    "AWS/ECS": {"CPUUtilization": {"ClusterName", "ServiceName"}},
    # CloudWatch User Guide, "Amazon ECS Container Insights metrics"
    "ECS/ContainerInsights": {"RunningTaskCount": {"ClusterName", "ServiceName"}},
    # Elastic Load Balancing, "CloudWatch metrics for your Application Load Balancer"
    "AWS/ApplicationELB": {
        "HTTPCode_ELB_5XX_Count": {"LoadBalancer"},
        "UnHealthyHostCount": {"TargetGroup", "LoadBalancer"},
    },
}


def from_cloudwatch(cloudwatch: Any) -> set[Metric]:
    found: set[Metric] = set()
    for page in cloudwatch.get_paginator("list_metrics").paginate():
        for m in page["Metrics"]:
            dims = frozenset((d["Name"], d["Value"]) for d in m.get("Dimensions", []))
            found.add((m["Namespace"], m["MetricName"], dims))
    return found


def from_emf(lines: Iterable[str]) -> set[Metric]:
    found: set[Metric] = set()
    for line in lines:
        start = line.find('{"_aws"')
        if start < 0:
            continue
        try:
            document = json.loads(line[start:])
        except ValueError:
            continue
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for names in directive["Dimensions"]:
                dims = frozenset((n, str(document[n])) for n in names)
                for metric in directive["Metrics"]:
                    found.add((directive["Namespace"], metric["Name"], dims))
    return found


def from_logs(log_dir: Path) -> set[Metric]:
    found: set[Metric] = set()
    for log in log_dir.glob("*.log"):
        found |= from_emf(log.read_text(errors="replace").splitlines())
    return found


def dashboard_rows(body: dict[str, Any]) -> list[tuple[str, Metric]]:
    rows = []
    for widget in body["widgets"]:
        for row in widget["properties"]["metrics"]:
            if "expression" in row[0]:
                continue
            namespace, name, *rest = row[:-1]
            dims = frozenset(zip(rest[::2], [str(v) for v in rest[1::2]], strict=True))
            rows.append((widget["properties"]["title"], (namespace, name, dims)))
    return rows


def unpublished(wanted: Iterable[tuple[str, Metric]], published: set[Metric]) -> list[str]:
    """Each (where, metric) that neither something published nor AWS documents."""
    problems = []
    for where, (namespace, name, dims) in wanted:
        if namespace in AWS_METRICS:
            names = AWS_METRICS[namespace].get(name)
            if names is None or {k for k, _ in dims} != names:
                problems.append(f"{where}: {namespace} {name} {dict(dims)} is not AWS's")
        elif (namespace, name, dims) not in published:
            problems.append(f"{where}: {namespace} {name} {dict(dims)} was never published")
    return problems
