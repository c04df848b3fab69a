"""The metric catalogue (``common.metric_catalog``) is complete and is the only place metrics
come from: every metric the services' code emits (EMF lines, the producer's Prometheus text,
the local stand-in for Kinesis's metrics) and every metric the readers ask for (the scaler's
sources, the local dashboard) is a catalogue entry with that unit and those dimensions, and
every entry of our namespaces is emitted. The dashboard and the alarms are checked under
Pulumi mocks (``tests/infra/test_observability.py``); the local stack's real output by
``tests/integration/test_local_pipeline.py`` (the metric contract)."""

from __future__ import annotations

import ast
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import botocore.model
import botocore.session
import pytest

from common.emf import emf_line
from common.kinesis import Shard, even_shards
from common.metric_catalog import (
    AWS,
    CATALOGUE,
    CONSUMER,
    KCL,
    KINESIS,
    NAMESPACES,
    OURS,
    PRODUCER,
    SCALER,
    Metric,
    lookup,
)
from consumer.metrics import ConsumerMetrics
from local_stack.dashboard import ConsumerState, emf_documents, parse_prometheus
from local_stack.stream_metrics import StreamMetrics
from producer.metrics import ProducerMetrics
from scaler.model import Load
from scaler.sources import CloudWatchSource, ProducerSource
from tests.unit.scaler.test_service import FakeKinesisAdmin, busy, scaler

ROOT = Path(__file__).resolve().parents[3]
Seen = tuple[str, str, frozenset[str], str]  # namespace, name, dimension names, unit


def _emf_metrics(text: str) -> set[Seen]:
    found = set()
    for line in text.splitlines():
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for names in directive["Dimensions"]:
                for m in directive["Metrics"]:
                    found.add((directive["Namespace"], m["Name"], frozenset(names), m["Unit"]))
    return found


def _busy_producer() -> ProducerMetrics:
    metrics = ProducerMetrics()
    metrics.count("UserRecordsReceived", 3)
    metrics.response(200)
    metrics.error("ProvisionedThroughputExceededException")
    metrics.shard_put("shardId-000000000001", 500)
    metrics.shard_throttled["shardId-000000000001"] += 1
    metrics.observe("BufferingTime", 12.0)
    return metrics


def _prometheus_families(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))


def emitted() -> tuple[set[Seen], set[str], list[dict[str, Any]]]:
    """What the emitters write: EMF metrics, the producer's Prometheus families, and the
    local stand-in's PutMetricData calls."""
    producer = _busy_producer()
    seen = _emf_metrics(producer.emf(now=1.0))
    out = io.StringIO()
    consumer = ConsumerMetrics(out)
    consumer.batch(3, 1, 2.5, 700, [5.0, 9.0], retries=1, superseded=1)
    consumer.emit()
    consumer.write_failed()
    seen |= _emf_metrics(out.getvalue())
    out = io.StringIO()
    kinesis = FakeKinesisAdmin(even_shards(4))
    scaler(kinesis, busy(1.0), metrics_out=out).check()
    seen |= _emf_metrics(out.getvalue())
    calls: list[dict[str, Any]] = []

    class CloudWatch:
        def put_metric_data(self, **kwargs: Any) -> None:
            calls.append(kwargs)

    class Admin:
        stream_name = "s"

        def open_shards(self) -> list[Shard]:
            return [Shard("shardId-000000000001", 0, 1)]

    texts = iter([ProducerMetrics().prometheus(), producer.prometheus()])
    admin: Any = Admin()  # the stream calls the stand-in makes (StreamAdmin's)
    stand_in = StreamMetrics(CloudWatch(), admin, ["p"], fetch=lambda _url: next(texts))
    stand_in.publish()
    assert stand_in.publish() > 0
    return seen, _prometheus_families(producer.prometheus()), calls


def test_every_entry_has_a_cloudwatch_unit_dimensions_and_a_meaning() -> None:
    units = botocore.session.get_session().get_service_model("cloudwatch")
    unit_shape = units.shape_for("StandardUnit")
    assert isinstance(unit_shape, botocore.model.StringShape)
    standard = set(unit_shape.enum)
    names = Counter((m.namespace, m.name) for m in CATALOGUE)
    assert [key for key, n in names.items() if n > 1] == []
    for metric in CATALOGUE:
        assert metric.unit in standard, metric
        assert metric.meaning and metric.dimensions and all(metric.dimensions), metric
    # AWS's and the KCL's metrics cite the documentation that defines them
    for namespace in AWS:
        assert "https://docs.aws.amazon.com/" in namespace.publisher, namespace.name


def test_every_metric_the_services_emit_is_in_the_catalogue_and_every_entry_is_emitted() -> None:
    # GIVEN what the emitters write when they have something to say
    seen, families, calls = emitted()
    # THEN each EMF metric is a catalogue entry, with its unit, under one of its dimension sets
    for namespace, name, dims, unit in seen:
        entry = lookup(namespace, name)
        assert entry.unit == unit and entry.published_under(dims), (namespace, name, dims, unit)
    # AND so is each datapoint the local stand-in for Kinesis's own metrics publishes
    for call in calls:
        for datum in call["MetricData"]:
            entry = lookup(call["Namespace"], datum["MetricName"])
            assert entry.namespace == KINESIS.name and entry.unit == datum["Unit"]
            assert entry.published_under(d["Name"] for d in datum["Dimensions"]), datum
    # AND the producer's Prometheus families are exactly its entries' Prometheus names
    assert families == {m.prometheus for m in PRODUCER}
    # AND every entry of our namespaces that goes to CloudWatch is emitted (none is dead)
    in_cloudwatch = {(m.namespace, m.name) for ns in OURS for m in ns if m.cloudwatch}
    assert {(ns, name) for ns, name, _, _ in seen} == in_cloudwatch
    stood_in = {d["MetricName"] for call in calls for d in call["MetricData"]}
    assert stood_in == {m.name for m in KINESIS if m.published_under(("StreamName", "ShardId"))}


def test_every_metric_the_readers_ask_for_is_in_the_catalogue() -> None:
    # GIVEN the scaler's CloudWatch source, asking a client that records the queries
    queries: list[dict[str, Any]] = []

    class Client:
        def get_metric_data(self, **kwargs: Any) -> dict[str, Any]:
            queries.extend(kwargs["MetricDataQueries"])
            return {"MetricDataResults": []}

    shards = [Shard("shardId-000000000001", 0, 1), Shard("shardId-000000000002", 2, 3)]
    CloudWatchSource(Client(), "s", shard_level=True, clock=lambda: 6000.0).samples(shards, 5)
    # THEN each query names a catalogue entry under one of its dimension sets
    assert queries
    for query in queries:
        metric = query["MetricStat"]["Metric"]
        entry = lookup(metric["Namespace"], metric["MetricName"])
        assert entry.published_under(d["Name"] for d in metric["Dimensions"]), metric
    # AND the producer source's counters and the local dashboard's are the producer's entries,
    # found in the text the producer really writes
    text = _busy_producer().prometheus()
    families = _prometheus_families(text)
    for name in (ProducerSource.RECORDS, ProducerSource.BYTES, ProducerSource.THROTTLED):
        assert name in families
    texts = iter([ProducerMetrics().prometheus(), text])
    source = ProducerSource(["p"], fetch=lambda _url: next(texts), clock=iter([0.0, 1.0]).__next__)
    source.samples(shards, 1)
    (sample,) = source.samples(shards, 1)
    assert (sample.stream, sample.throttled) == (Load(500.0, 1.0), 1)
    values = parse_prometheus(text)
    assert (values["received"], values["requests"], values["throttled"]) == (3, 1, 1)
    # AND the local dashboard reads the consumer's and the scaler's lines by their entries
    out = io.StringIO()
    consumer = ConsumerMetrics(out)
    consumer.batch(3, 1, 2.5, 700, [5.0])
    consumer.emit()
    state = ConsumerState()
    for document in emf_documents(out.getvalue().splitlines(), CONSUMER.name):
        state.add(document, "consumer-1.log", 1.0)
    assert (state.written, state.quarantined, state.behind["consumer-1.log"][1]) == (3, 1, 700)


def test_a_metric_not_in_the_catalogue_cannot_be_emitted_or_looked_up() -> None:
    made_up = Metric(PRODUCER.name, "MadeUp", "Count", "not catalogued", (("Service",),))
    with pytest.raises(ValueError, match="not in the metric catalogue"):
        emf_line({made_up: 1}, PRODUCER.dimensions, 0.0)
    # a catalogued metric under dimensions it is not published under
    with pytest.raises(ValueError, match="not in the metric catalogue"):
        emf_line({PRODUCER["Requests"]: 1}, {"StreamName": "s"}, 0.0)
    # one namespace per line
    with pytest.raises(ValueError, match="one namespace"):
        emf_line({PRODUCER["Requests"]: 1, SCALER["OpenShards"]: 1}, PRODUCER.dimensions, 0.0)
    with pytest.raises(KeyError, match=r"common/metric_catalog\.py"):
        PRODUCER["MadeUp"]
    with pytest.raises(KeyError):
        lookup("KinesisIngest/Elsewhere", "Requests")
    # the KCL's metrics live in the application's namespace
    assert lookup("my-app", "MillisBehindLatest", application="my-app").namespace == "my-app"
    assert KCL["MillisBehindLatest"].of("my-app").namespace == "my-app"


# The modules that emit or read CloudWatch metrics, each checked through the catalogue by a
# test (here, tests/infra/test_observability.py, the integration metric contract). A new one
# fails this test until its metrics come from the catalogue and a test checks them.
METRIC_CALLS = {"emf_line", "put_metric_data", "get_metric_data", "put_metric_alarm",
                "list_metrics", "MetricAlarm", "Dashboard"}  # fmt: skip
METRIC_KEYWORDS = {"shard_level_metrics", "customized_metric_specification"}  # Pulumi inputs
KNOWN = {
    "producer/metrics.py": {"emf_line"},  # emitted(): EMF and Prometheus
    "consumer/metrics.py": {"emf_line"},  # emitted()
    "scaler/service.py": {"emf_line"},  # emitted()
    "scaler/sources.py": {"get_metric_data"},  # test_every_metric_the_readers_ask_for_...
    "local_stack/stream_metrics.py": {"put_metric_data"},  # emitted()
    "local_stack/observed.py": {"put_metric_alarm"},  # alarm_specs: test_observability
    "infra/components/observability.py": {"MetricAlarm", "Dashboard"},  # test_observability
    "infra/components/data.py": {"shard_level_metrics"},  # test_observability
    "infra/program.py": {"shard_level_metrics"},  # the setting, passed on to Data by keyword
    "infra/components/service.py": {"customized_metric_specification"},  # test_observability
    "infra/smoke.py": {"list_metrics"},  # the KCL's lag, by its catalogue entry
}


def _product_files() -> list[Path]:
    packages = ("common", "producer", "consumer", "scaler", "local_stack", "infra", "loadgen")
    return [path for package in packages for path in sorted((ROOT / package).rglob("*.py"))]


def test_every_module_that_emits_or_reads_metrics_is_checked_and_names_no_namespace() -> None:
    using: dict[str, set[str]] = {}
    literals = []
    for path in _product_files():
        relative = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            found = set()
            if isinstance(node, ast.Call):
                function = node.func
                name = function.attr if isinstance(function, ast.Attribute) else None
                name = name or getattr(function, "id", None)
                found |= {name} & METRIC_CALLS
                found |= {k.arg for k in node.keywords} & METRIC_KEYWORDS
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                found |= {node.value} & METRIC_KEYWORDS
                if node.value in NAMESPACES and relative != "common/metric_catalog.py":
                    literals.append(f"{relative}:{node.lineno} {node.value}")
            if found:
                using.setdefault(relative, set()).update(found)
    assert using == KNOWN
    # namespaces are written once, in the catalogue
    assert literals == []
