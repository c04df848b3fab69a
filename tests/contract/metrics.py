"""The metric contract: what the local stack really published, and whether the dashboard and
the alarms (rendered with the local stack's names) ask only for that.

Published = the KCL's own metrics as CloudWatch (moto) has them after its PutMetricData calls
(ListMetrics: namespace, name, every dimension value), and our services' EMF lines in their
logs (the lines CloudWatch Logs would turn into metrics). AWS's own metrics cannot be
published locally: they must be in the metric catalogue (``common.metric_catalog``), which
cites each one's documentation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from common.metric_catalog import AWS, KCL, NAMESPACES

Metric = tuple[str, str, frozenset[tuple[str, str]]]  # namespace, name, dimensions

# what AWS itself publishes (each namespace's documentation is cited in the catalogue)
AWS_PUBLISHED = {namespace.name for namespace in AWS if namespace is not KCL}


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
    """Each (where, metric) that is not in the catalogue under those dimensions, or that
    nothing published (AWS's own cannot be published locally: the catalogue vouches for them);
    a namespace the catalogue does not name is the KCL application's."""
    problems = []
    for where, (namespace, name, dims) in wanted:
        what = f"{where}: {namespace} {name} {dict(dims)}"
        try:
            entry = NAMESPACES[namespace][name] if namespace in NAMESPACES else KCL[name]
        except KeyError:
            problems.append(f"{what} is not in the metric catalogue")
            continue
        if not entry.published_under(k for k, _ in dims):
            problems.append(f"{what} is not under dimensions the catalogue gives")
        elif namespace not in AWS_PUBLISHED and (namespace, name, dims) not in published:
            problems.append(f"{what} was never published")
    return problems
