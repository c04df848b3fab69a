"""CloudWatch Embedded Metric Format: one JSON log line from which CloudWatch Logs extracts
metrics (the awslogs driver ships the line; no PutMetricData call, no agent)."""

from __future__ import annotations

import json
from collections.abc import Mapping


def emf_line(
    namespace: str,
    dimensions: Mapping[str, str],
    metrics: Mapping[str, tuple[float | list[float], str]],
    timestamp: float,
    properties: Mapping[str, object] | None = None,
) -> str:
    """The EMF document for ``metrics`` (name -> (value or up to 100 values, unit)) under one
    dimension set;
    ``timestamp`` in seconds; ``properties`` are logged beside them but not metrics."""
    document = {
        "_aws": {
            "Timestamp": int(timestamp * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [
                        {"Name": name, "Unit": unit} for name, (_, unit) in metrics.items()
                    ],
                }
            ],
        },
        **dimensions,
        **(properties or {}),
        **{name: value for name, (value, _) in metrics.items()},
    }
    return json.dumps(document)
