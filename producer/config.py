"""Producer settings: environment variables prefixed ``PRODUCER_``, validated at start
(``python -m producer --help`` lists them, generated from this class)."""

from __future__ import annotations

from functools import lru_cache
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.settings import CoreFields, LogLevel, log_level_field, region_field
from producer.collector import CollectorConfig
from producer.memory import CONNECTION_COST

# The settings the collector runs on; their defaults are CollectorConfig's (in ms where it
# counts seconds), stated there once.
COLLECTOR = CoreFields(
    CollectorConfig,
    {
        "stream_name": ("stream_name", 1),
        "aggregation_max_bytes": ("aggregation_max_bytes", 1),
        "aggregation_max_count": ("aggregation_max_count", 1),
        "rate_limit_percent": ("rate_limit_percent", 1),
        "shard_refresh_seconds": ("shard_refresh_interval", 1),
        "max_buffered_time_ms": ("max_buffered_time", 1000),
        "record_ttl_ms": ("record_ttl", 1000),
        "shard_queue_ms": ("shard_queue_seconds", 1000),
        "max_in_flight": ("max_in_flight", 1),
        "max_buffered_bytes": ("max_buffered_bytes", 1),
        "max_buffered_records": ("max_buffered_records", 1),
    },
)
_default = COLLECTOR.default


class ProducerSettings(BaseSettings):
    """KPL-equivalent knobs keep the KPL's defaults (AggregationMaxSize, AggregationMaxCount,
    RecordMaxBufferedTime, RecordTtl, RateLimit)."""

    model_config = SettingsConfigDict(env_prefix="PRODUCER_", frozen=True, validate_by_name=True)

    stream_name: str = Field(min_length=1, max_length=128, description="the Kinesis stream")
    region: str = region_field("PRODUCER_")
    kinesis_endpoint: str | None = Field(
        None, description="Kinesis endpoint URL; unset: AWS (e.g. https://127.0.0.1:4567 locally)"
    )
    kinesis_ca_bundle: str | None = Field(
        None, description="PEM file to verify the endpoint's certificate; unset: the system CAs"
    )
    host: str = Field("127.0.0.1", description="listen address (0.0.0.0 in a container)")
    port: int = Field(8080, ge=1, le=65535, description="listen port")
    aggregation_max_bytes: int = Field(
        _default("aggregation_max_bytes"),
        ge=1024,
        le=1024 * 1024,
        description="KPL AggregationMaxSize: bytes per aggregate",
    )
    aggregation_max_count: int = Field(
        _default("aggregation_max_count"),
        ge=1,
        description="KPL AggregationMaxCount: user records per aggregate",
    )
    rate_limit_percent: float = Field(
        _default("rate_limit_percent"),
        gt=0,
        le=1000,
        description="KPL RateLimit: what one producer sends a shard, as a percentage of 1 MiB/s "
        "and 1,000 records/s; held records stay buffered (and count toward the 503 bound). "
        "Each worker process and each task limits itself: together they may send a shard "
        "more, which Kinesis throttles and the producer retries",
    )
    shard_refresh_seconds: float = Field(
        _default("shard_refresh_seconds"),
        ge=0,
        description="ListShards this often to follow reshards (also at once when a record lands "
        "on another shard); 0: only then",
    )
    max_buffered_time_ms: int = Field(
        _default("max_buffered_time_ms"),
        ge=1,
        le=60_000,
        description="KPL RecordMaxBufferedTime: flush an aggregate after",
    )
    record_ttl_ms: int = Field(
        _default("record_ttl_ms"),
        ge=100,
        description="KPL RecordTtl: a record Kinesis has not taken by then: 503",
    )
    kinesis_timeout_ms: int = Field(
        6_000,
        ge=100,
        description="each Kinesis call's connect and read timeout (KPL ConnectTimeout/"
        "RequestTimeout), at most half the TTL; one attempt per call: the collector retries",
    )
    shard_queue_ms: int = Field(
        _default("shard_queue_ms"),
        ge=100,
        description="a shard's queue, in time at its rate limit (min with half the TTL): past "
        "it, 503 at once for that shard",
    )
    max_in_flight: int = Field(
        _default("max_in_flight"), ge=1, le=256, description="PutRecords calls at once"
    )
    max_buffered_bytes: int = Field(
        _default("max_buffered_bytes"),
        ge=1024 * 1024,
        description="back-pressure bound on everything held for waiting requests (bodies, their "
        "parse, records): past it, 503",
    )
    max_buffered_records: int = Field(
        _default("max_buffered_records"),
        ge=100,
        description="back-pressure bound on records awaiting Kinesis: past it, 503",
    )
    max_body_bytes: int = Field(
        6 * 1024 * 1024, ge=1024, description="larger request bodies get 413"
    )
    max_batch_records: int = Field(500, ge=1, le=10_000, description="records per POST /batch")
    api_key: SecretStr | None = Field(
        None,
        description="when set, every route but GET /health and GET /ready needs it in X-Api-Key",
    )
    api_keys: SecretStr | None = Field(
        None,
        description="several keys, comma-separated, all valid at once (a key rotates without "
        "downtime); in AWS the task gets it from Secrets Manager",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="a request's headers must be complete this long after its first byte, else "
        "408 and the connection closes (slow clients)",
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=300,
        description="a record request's body must be complete this long after its headers, "
        "else 408",
    )
    drain_seconds: float = Field(
        0.0,
        ge=0,
        le=300,
        description="on SIGTERM, /ready is 503 this long before shutdown (set it to the load "
        "balancer's health-check window)",
    )
    workers: int = Field(
        1, ge=1, le=64, description="uvicorn worker processes (with more than one, no drain delay)"
    )
    metrics_dir: str | None = Field(
        None,
        description="set by python -m producer for its workers, not by hand: where they share "
        "their counts, so /metrics and the EMF lines give the server's (producer/workers.py)",
    )
    # above the load balancer's idle timeout (60 s), or uvicorn (5 s by default) closes
    # connections the ALB still reuses: intermittent 502s (see infra/components/ingest.py)
    keep_alive_seconds: int = Field(
        65,
        ge=1,
        le=4000,
        description="uvicorn's keep-alive: an idle connection is closed after this; keep it "
        "above the load balancer's idle timeout (60 s)",
    )
    access_log: bool = Field(
        False,
        description="uvicorn's line per request (it costs more than handling the request, and "
        "turns off the direct path of producer.api.protocol; the load balancer logs requests too)",
    )
    emf_interval_seconds: float = Field(
        60.0, ge=0, description="EMF metrics line on stdout this often; 0 turns it off"
    )
    max_connections: int | None = Field(
        None,
        ge=1,
        description="uvicorn's limit_concurrency (connections and requests at once, then 503); "
        "unset: the memory bound over what a connection may hold beyond it",
    )
    log_level: LogLevel = log_level_field()

    @model_validator(mode="after")
    def _timeouts_within_the_ttl(self) -> Self:
        if self.max_buffered_time_ms >= self.record_ttl_ms:
            raise ValueError("max_buffered_time_ms must be shorter than record_ttl_ms")
        return self

    @model_validator(mode="after")
    def _keys_not_blank(self) -> Self:
        for name in ("api_key", "api_keys"):
            value = getattr(self, name)
            if value is not None and not value.get_secret_value().strip(" ,"):
                raise ValueError(f"{name} is set but holds no key")
        return self

    @property
    def keys(self) -> tuple[bytes, ...]:
        """Every API key a request may carry in ``X-Api-Key``; empty: no key needed."""
        given = [self.api_key.get_secret_value()] if self.api_key else []
        if self.api_keys:
            given += self.api_keys.get_secret_value().split(",")
        return tuple(dict.fromkeys(k.strip().encode() for k in given if k.strip()))

    def collector_config(self) -> CollectorConfig:
        return COLLECTOR.build(self)

    @property
    def kinesis_timeout(self) -> float:
        """Seconds a Kinesis call may take to connect, and then to answer."""
        return min(self.kinesis_timeout_ms, self.record_ttl_ms // 2) / 1000

    @property
    def connection_limit(self) -> int:
        return self.max_connections or max(64, self.max_buffered_bytes // CONNECTION_COST)


@lru_cache
def get_settings() -> ProducerSettings:
    return ProducerSettings()  # values come from the environment
