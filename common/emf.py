"""CloudWatch Embedded Metric Format: one JSON log line from which CloudWatch Logs extracts
metrics (the awslogs driver ships the line; no PutMetricData call, no agent)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from common.metric_catalog import Metric, catalogued


def emf_line(
    metrics: Mapping[Metric, float | list[float]],
    dimensions: Mapping[str, str],
    timestamp: float,
    properties: Mapping[str, object] | None = None,
) -> str:
    """The EMF document for ``metrics`` (catalogue entry -> value, or up to 100 values) of one
    namespace under one dimension set; ``timestamp`` in seconds; ``properties`` are logged
    beside them but not metrics. A metric not in the catalogue, or not published under these
    dimensions there, is a ``ValueError``."""
    namespaces = {metric.namespace for metric in metrics}
    if len(namespaces) != 1:
        raise ValueError(f"one namespace per EMF line, not {sorted(namespaces)}")
    for metric in metrics:
        if not catalogued(metric) or not metric.published_under(dimensions):
            where = f"{metric.namespace} {metric.name} {sorted(dimensions)}"
            raise ValueError(f"{where} is not in the metric catalogue (common/metric_catalog.py)")
    document = {
        "_aws": {
            "Timestamp": int(timestamp * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespaces.pop(),
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": metric.name, "Unit": metric.unit} for metric in metrics],
                }
            ],
        },
        **dimensions,
        **(properties or {}),
        **{metric.name: value for metric, value in metrics.items()},
    }
    return json.dumps(document)
