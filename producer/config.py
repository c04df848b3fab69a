"""Producer settings: environment variables prefixed ``PRODUCER_``, validated at start."""

from __future__ import annotations

from functools import lru_cache
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from producer.memory import CONNECTION_COST


class ProducerSettings(BaseSettings):
    """KPL-equivalent knobs keep the KPL's defaults (AggregationMaxSize, AggregationMaxCount,
    RecordMaxBufferedTime, RecordTtl, RateLimit)."""

    model_config = SettingsConfigDict(env_prefix="PRODUCER_", frozen=True)

    stream_name: str = Field(min_length=1, max_length=128)
    region: str = "us-east-1"
    kinesis_endpoint: str | None = None
    kinesis_ca_bundle: str | None = None  # PEM file to verify the endpoint's certificate
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    aggregation_max_bytes: int = Field(51_200, ge=1024, le=1024 * 1024)
    aggregation_max_count: int = Field(4_294_967_295, ge=1)
    rate_limit_percent: float = Field(150.0, gt=0, le=1000)  # of 1 MiB/s, 1,000 records/s a shard
    shard_refresh_seconds: float = Field(60.0, ge=0)  # ListShards; 0: only on a misrouted record
    max_buffered_time_ms: int = Field(100, ge=1, le=60_000)
    record_ttl_ms: int = Field(30_000, ge=100)
    # each Kinesis call's connect and read timeout (KPL ConnectTimeout/RequestTimeout, 6 s),
    # at most half the TTL (``kinesis_timeout``), one attempt per call: the collector retries
    kinesis_timeout_ms: int = Field(6_000, ge=100)
    shard_queue_ms: int = Field(5_000, ge=100)  # a shard's queue, in time at its rate limit
    max_in_flight: int = Field(8, ge=1, le=256)
    # everything held for waiting requests (bodies, their parse, records): then 503
    max_buffered_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)
    max_buffered_records: int = Field(200_000, ge=100)  # then 503
    max_body_bytes: int = Field(6 * 1024 * 1024, ge=1024)
    max_batch_records: int = Field(500, ge=1, le=10_000)
    api_key: SecretStr | None = None  # when set, POSTs need the X-Api-Key header
    drain_seconds: float = Field(0.0, ge=0, le=300)  # SIGTERM: /ready is 503 this long first
    workers: int = Field(1, ge=1, le=64)
    # above the load balancer's idle timeout (60 s), or uvicorn (5 s by default) closes
    # connections the ALB still reuses: intermittent 502s (see infra/components/ingest.py)
    keep_alive_seconds: int = Field(65, ge=1, le=4000)
    access_log: bool = False  # a line per request costs more than handling it; the ALB logs too
    emf_interval_seconds: float = Field(60.0, ge=0)  # EMF metrics line on stdout; 0: off
    # uvicorn's limit_concurrency (connections and requests, then 503); by default the memory
    # bound over what a connection may hold beyond it (memory.CONNECTION_COST)
    max_connections: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _timeouts_within_the_ttl(self) -> Self:
        if self.max_buffered_time_ms >= self.record_ttl_ms:
            raise ValueError("max_buffered_time_ms must be shorter than record_ttl_ms")
        return self

    @property
    def kinesis_timeout(self) -> float:
        """Seconds a Kinesis call may take to connect, and then to answer."""
        return min(self.kinesis_timeout_ms, self.record_ttl_ms // 2) / 1000

    @property
    def connection_limit(self) -> int:
        return self.max_connections or max(64, self.max_buffered_bytes // CONNECTION_COST)


@lru_cache
def get_settings() -> ProducerSettings:
    return ProducerSettings()  # type: ignore[call-arg]  # values come from the environment
