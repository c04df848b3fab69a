"""Every metric the project publishes or reads, each stated once: namespace, name, unit,
dimensions and what it means.

Who reads this file: the emitters (``common.emf.emf_line`` takes catalogue entries only: the
producer's, the consumer's and the scaler's EMF lines; the producer's Prometheus text; the
local stack's stand-in for Kinesis's own metrics), the readers (the scaler's metric sources,
the CloudWatch dashboard, the alarms and the consumer's lag scaling in ``infra/``, the local
dashboard, ``infra.smoke``) and the tests, which fail on a metric emitted or read that is not
here (``tests/unit/common/test_metric_catalog.py``, ``tests/infra/test_observability.py``).

A new metric: add its entry below, emit it from the code that counts it (by its entry:
``PRODUCER["Name"]``), and add it to the dashboards if someone should watch it (README,
"Watching it").

Units are CloudWatch's (``StandardUnit`` in the CloudWatch API Reference). Dimensions are the
dimension *sets* a metric is published under: CloudWatch matches the full set, so a reader must
name exactly one of them. Metrics AWS or the KCL publish cite the page that defines them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType


class Kind(StrEnum):
    COUNTER = "counter"  # EMF: the increase over the interval; Prometheus: the running total
    DISTRIBUTION = "distribution"  # EMF: the interval's mean (or a sample); Prometheus: summary
    GAUGE = "gauge"  # a level at the time of the line


@dataclass(frozen=True)
class Metric:
    namespace: str
    name: str
    unit: str
    meaning: str
    dimensions: tuple[tuple[str, ...], ...]  # the dimension sets it is published under
    kind: Kind = Kind.COUNTER
    cloudwatch: bool = True  # False: only in the producer's Prometheus text (GET /metrics)

    @property
    def prometheus(self) -> str:
        """The producer's Prometheus name: ``producer_<snake_case>``, ``_total`` for counters."""
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in self.name).lstrip("_")
        return f"producer_{snake}" + ("_total" if self.kind is Kind.COUNTER else "")

    def published_under(self, dimension_names: Iterable[str]) -> bool:
        """Whether the set of ``dimension_names`` is one this metric is published under."""
        wanted = set(dimension_names)
        return any(wanted == set(names) for names in self.dimensions)

    def of(self, application: str) -> Metric:
        """A KCL metric in ``application``'s namespace (the KCL publishes under the name of
        the application; the catalogue writes it ``KCL_APPLICATION``)."""
        assert self.namespace == KCL_APPLICATION, self
        return replace(self, namespace=application)


@dataclass(frozen=True)
class Namespace:
    """One CloudWatch namespace's metrics, by name: ``PRODUCER["UserRecordsPut"]``."""

    name: str
    publisher: str  # who publishes it, and where that is documented
    metrics: tuple[Metric, ...]
    # dimension values every metric of the namespace carries (our services' EMF lines)
    dimensions: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Metric:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(
            f"{self.name} {name} is not in the metric catalogue (common/metric_catalog.py)"
        )

    def __iter__(self) -> Iterator[Metric]:
        return iter(self.metrics)


def _emf(namespace: str, *dimensions: str) -> Callable[..., Metric]:
    """The entries of one of our services' namespaces: one dimension set each."""

    def metric(name: str, unit: str, meaning: str, kind: Kind = Kind.COUNTER) -> Metric:
        return Metric(namespace, name, unit, meaning, (dimensions,), kind)

    return metric


COUNTER, DISTRIBUTION, GAUGE = Kind.COUNTER, Kind.DISTRIBUTION, Kind.GAUGE
COUNT, BYTES, MS, PERCENT = "Count", "Bytes", "Milliseconds", "Percent"
KCL_APPLICATION = "<application>"  # the KCL's namespace: the application's name

# ---- the producer: an EMF line on stdout a minute (Service=producer), named like the KPL's
# metrics (Kinesis Data Streams Developer Guide, "Monitor the Kinesis Producer Library with
# Amazon CloudWatch"); the same counts, as totals, at GET /metrics (Prometheus text)
_P = "KinesisIngest/Producer"
_p = _emf(_P, "Service")
PRODUCER = Namespace(
    _P,
    "the producer (producer/metrics.py)",
    (
        _p("UserRecordsReceived", COUNT, "user records taken by the producer"),
        _p("UserRecordsPut", COUNT, "user records Kinesis accepted"),
        _p("UserRecordsNotAccepted", COUNT, "user records answered 503 after the record TTL"),
        _p("UserRecordsOverloaded", COUNT, "user records refused with 503 by back-pressure"),
        _p(
            "RequestsOverloaded",
            COUNT,
            "requests refused with 503 before their body was read or parsed (memory bound)",
        ),
        _p("KinesisRecordsPut", COUNT, "Kinesis records (aggregates) accepted"),
        _p("PutRecordsCalls", COUNT, "PutRecords requests made"),
        _p("Retries", COUNT, "PutRecords entries or calls retried"),
        _p("Reroutes", COUNT, "aggregates re-sent after a reshard"),
        _p("ShardMapRefreshes", COUNT, "shard maps adopted after a reshard"),
        _p(
            "KinesisRecordsRateLimited",
            COUNT,
            "Kinesis records held back by the per-shard rate limit",
        ),
        _p("Requests", COUNT, "requests to the record endpoints (POST / and /batch)"),
        _p("Responses4xx", COUNT, "record requests refused as bad input (4xx)"),
        _p(
            "Responses503",
            COUNT,
            "record requests answered 503 (overloaded, not accepted, draining)",
        ),
        _p("Responses5xx", COUNT, "record requests answered with another 5xx (a bug)"),
        _p("BufferingTime", MS, "time from taking a record to Kinesis accepting it", DISTRIBUTION),
        _p(
            "UserRecordsPerKinesisRecord",
            COUNT,
            "user records in each accepted Kinesis record",
            DISTRIBUTION,
        ),
        # only in the Prometheus text, by label (not CloudWatch dimensions): what the scaler's
        # producer source and the local stand-in for Kinesis's metrics read, and the local
        # dashboard's throttling (there is no CloudWatch to ask locally)
        Metric(_P, "Errors", COUNT, "PutRecords errors by code", (("code",),), cloudwatch=False),
        Metric(
            _P,
            "ShardKinesisRecordsPut",
            COUNT,
            "Kinesis records put by shard",
            (("shard",),),
            cloudwatch=False,
        ),
        Metric(
            _P,
            "ShardKinesisBytesPut",
            BYTES,
            "Kinesis bytes put by shard",
            (("shard",),),
            cloudwatch=False,
        ),
        Metric(
            _P,
            "ShardThrottled",
            COUNT,
            "Kinesis entries throttled by shard",
            (("shard",),),
            cloudwatch=False,
        ),
    ),
    MappingProxyType({"Service": "producer"}),
)

# ---- the consumer: each shard's record processor writes an EMF line on stderr every interval
# (Service=consumer): counts add up across shards, Maximum is the worst shard
_C = "KinesisIngest/Consumer"
_c = _emf(_C, "Service")
CONSUMER = Namespace(
    _C,
    "the consumer's record processors (consumer/metrics.py)",
    (
        _c("RecordsWritten", COUNT, "items put to the records table"),
        _c("RecordsQuarantined", COUNT, "poison records put to the quarantine table"),
        _c("RecordsSuperseded", COUNT, "copies not written: a later copy of the id is stored"),
        _c("WriteFailures", COUNT, "batches given up for a reason not about a record: replayed"),
        _c("WriteRetries", COUNT, "BatchWriteItem calls retried (throttling, UnprocessedItems)"),
        _c("BatchWriteLatency", MS, "mean time to write one processRecords batch", DISTRIBUTION),
        _c("BatchWriteLatencyMax", MS, "longest time to write one processRecords batch", GAUGE),
        _c("MillisBehindLatest", MS, "the largest lag the KCL reported in the interval", GAUGE),
        _c(
            "EndToEndLatency",
            MS,
            "stored_at - ingested_at (when the producer took it): a uniform sample of up to 100",
            DISTRIBUTION,
        ),
        _c("EndToEndLatencyMax", MS, "the largest end-to-end latency of the interval", GAUGE),
    ),
    MappingProxyType({"Service": "consumer"}),
)

# ---- the scaler: an EMF line on stdout at every check, per stream (StreamName)
_S = "KinesisIngest/Scaler"
_s = _emf(_S, "StreamName")
SCALER = Namespace(
    _S,
    "the shard scaler (scaler/service.py)",
    (
        _s("OpenShards", COUNT, "open shards at the check", GAUGE),
        _s("TargetShards", COUNT, "the open shard count the scaler decided on", GAUGE),
        _s("Utilisation", PERCENT, "the last sample's load over the open shards' limit", GAUGE),
        _s("ScalingOperations", COUNT, "resharding operations made (1 when the check acted)"),
        _s("ThrottledWrites", COUNT, "writes Kinesis throttled in the last sample"),
    ),
)

# ---- AWS's own metrics that something here reads
_STREAM, _SHARD = ("StreamName",), ("StreamName", "ShardId")
KINESIS = Namespace(
    "AWS/Kinesis",
    "Kinesis Data Streams Developer Guide, 'Monitor the Amazon Kinesis Data Streams service with"
    " Amazon CloudWatch' (https://docs.aws.amazon.com/streams/latest/dev/"
    "monitoring-with-cloudwatch.html); the shard-level names: API Reference, EnhancedMetrics",
    (
        # stream level always; per shard with enhanced shard-level monitoring (the scaler's
        # CloudWatch source reads both; locally local_stack.stream_metrics publishes them)
        Metric("AWS/Kinesis", "IncomingBytes", BYTES, "bytes put to the stream", (_STREAM, _SHARD)),
        Metric("AWS/Kinesis", "IncomingRecords", COUNT, "records put", (_STREAM, _SHARD)),
        Metric(
            "AWS/Kinesis",
            "WriteProvisionedThroughputExceeded",
            COUNT,
            "records refused for throttling",
            (_STREAM, _SHARD),
        ),
        # the age of what the consumer has not read: polling (GetRecords), and a registered
        # enhanced fan-out consumer (ConsumerName: the KCL application's name)
        Metric(
            "AWS/Kinesis",
            "GetRecords.IteratorAgeMilliseconds",
            MS,
            "age of the last record GetRecords returned",
            (_STREAM,),
            GAUGE,
        ),
        Metric(
            "AWS/Kinesis",
            "SubscribeToShardEvent.MillisBehindLatest",
            MS,
            "how far a fan-out consumer's reads are behind the tip of the stream",
            (("StreamName", "ConsumerName"),),
            GAUGE,
        ),
    ),
)
DYNAMODB = Namespace(
    "AWS/DynamoDB",
    "DynamoDB Developer Guide, 'DynamoDB Metrics and dimensions' (https://docs.aws.amazon.com/"
    "amazondynamodb/latest/developerguide/metrics-dimensions.html)",
    (Metric("AWS/DynamoDB", "WriteThrottleEvents", COUNT, "throttled writes", (("TableName",),)),),
)
_SERVICE = (("ClusterName", "ServiceName"),)
ECS = Namespace(
    "AWS/ECS",
    "Amazon ECS Developer Guide, 'Amazon ECS CloudWatch metrics' (https://docs.aws.amazon.com/"
    "AmazonECS/latest/developerguide/available-metrics.html)",
    (Metric("AWS/ECS", "CPUUtilization", PERCENT, "CPU used / reserved", _SERVICE, GAUGE),),
)
CONTAINER_INSIGHTS = Namespace(
    "ECS/ContainerInsights",
    "CloudWatch User Guide, 'Amazon ECS Container Insights metrics' (https://docs.aws.amazon.com/"
    "AmazonCloudWatch/latest/monitoring/Container-Insights-metrics-ECS.html)",
    (Metric("ECS/ContainerInsights", "RunningTaskCount", COUNT, "tasks", _SERVICE, GAUGE),),
)
ALB = Namespace(
    "AWS/ApplicationELB",
    "Elastic Load Balancing, 'CloudWatch metrics for your Application Load Balancer' "
    "(https://docs.aws.amazon.com/elasticloadbalancing/latest/application/"
    "load-balancer-cloudwatch-metrics.html)",
    (
        Metric(
            "AWS/ApplicationELB",
            "HTTPCode_ELB_5XX_Count",
            COUNT,
            "5xx answers made by the load balancer itself (no healthy target, timeouts)",
            (("LoadBalancer",),),
        ),
        Metric(
            "AWS/ApplicationELB",
            "UnHealthyHostCount",
            COUNT,
            "targets failing the health check",
            (("TargetGroup", "LoadBalancer"),),
            GAUGE,
        ),
    ),
)

# ---- the KCL's own (its namespace is the application's name)
KCL = Namespace(
    KCL_APPLICATION,
    "the KCL daemon: Kinesis Data Streams Developer Guide, 'Monitor the Kinesis Client Library"
    " with Amazon CloudWatch' (https://docs.aws.amazon.com/streams/latest/dev/"
    "monitoring-with-kcl.html); dimensions as KCL 3.1.3 ProcessTask.java publishes them",
    (
        # at every ProcessTask, empty fetches too: per shard (Operation=ProcessTask, ShardId)
        # and for the whole application (Operation=ApplicationTracker alone)
        Metric(
            KCL_APPLICATION,
            "MillisBehindLatest",
            MS,
            "how far the KCL's reads are behind the tip of the stream",
            (("Operation",), ("Operation", "ShardId")),
            GAUGE,
        ),
    ),
)
# the application-level series of the KCL's MillisBehindLatest: the one series an alarm can
# watch (CloudWatch matches the full set: Operation=ProcessTask without ShardId does not exist)
KCL_APPLICATION_LAG = MappingProxyType({"Operation": "ApplicationTracker"})

OURS = (PRODUCER, CONSUMER, SCALER)
AWS = (KINESIS, DYNAMODB, ECS, CONTAINER_INSIGHTS, ALB, KCL)
NAMESPACES = {namespace.name: namespace for namespace in (*OURS, *AWS)}
CATALOGUE = frozenset(metric for namespace in NAMESPACES.values() for metric in namespace)


def lookup(namespace: str, name: str, application: str | None = None) -> Metric:
    """The entry of ``namespace``'s ``name`` (``application``: the KCL application's name, so
    its namespace reads as the KCL's); ``KeyError`` when the catalogue has none."""
    if namespace not in NAMESPACES and application is not None and namespace == application:
        return KCL[name].of(application)
    if namespace not in NAMESPACES:
        raise KeyError(f"namespace {namespace!r} is not in the metric catalogue")
    return NAMESPACES[namespace][name]


def catalogued(metric: Metric) -> bool:
    """Whether ``metric`` is an entry of the catalogue (a KCL metric in any application's
    namespace)."""
    return metric in CATALOGUE or replace(metric, namespace=KCL_APPLICATION) in KCL.metrics
