"""Consumer settings: environment variables prefixed ``CONSUMER_``, validated at start."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsumerSettings(BaseSettings):
    """What the daemon launcher and the record processor need; both read the same variables.

    Construction validates everything (bad values raise ``pydantic.ValidationError`` at start):
    names non-empty, the millis positive, every string a single line (they end up in a
    properties file).
    """

    model_config = SettingsConfigDict(env_prefix="CONSUMER_", frozen=True)

    stream_name: str = Field(min_length=1, max_length=128)
    application_name: str = Field("kinesis-ingest-consumer", min_length=1, max_length=128)
    region: str = Field("us-east-1", min_length=1)
    records_table: str = Field("records", min_length=3, max_length=255)
    quarantine_table: str = Field("records-quarantine", min_length=3, max_length=255)
    kinesis_endpoint: str | None = None
    dynamodb_endpoint: str | None = None
    # The KCL's own metrics (PutMetricData). The MultiLangDaemon has no property for it: the
    # launcher passes it to the JVM as the AWS SDK's service-specific endpoint setting.
    cloudwatch_endpoint: str | None = None
    # The most shards one worker leases (KCL maxLeasesForWorker): each costs a Python process
    max_leases_for_worker: int | None = Field(None, ge=1)
    initial_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    retrieval_mode: Literal["FANOUT", "POLLING"] = "FANOUT"
    failover_time_millis: int = Field(10_000, gt=0)
    shard_sync_interval_millis: int = Field(60_000, gt=0)
    parent_shard_poll_interval_millis: int = Field(10_000, gt=0)
    shutdown_grace_millis: int = Field(30_000, gt=0)  # SIGTERM to exit; keep under the stop timeout
    metrics_level: Literal["NONE", "SUMMARY", "DETAILED"] = "SUMMARY"
    java: str = Field("java", min_length=1)
    jvm_options: str = ""
    properties_path: str = ".local/consumer.properties"
    write_deadline_seconds: float = Field(60.0, gt=0, allow_inf_nan=False)
    max_writes_in_flight: int = Field(4, ge=1, le=32)  # BatchWriteItem calls at once per shard
    metrics_interval_seconds: float = Field(60.0, gt=0)  # EMF line on stderr per shard
    heartbeat_dir: str = "/tmp/kcl-heartbeats"  # consumer.health reads what processors write
    # The KCL's workerId. Unset: the KCL draws a random one per start (a new ECS task is a new
    # worker). The local stack sets a stable one, so a worker it restarts in place resumes its
    # own leases and leader lock instead of waiting out the dead worker's (README, local stack).
    worker_id: str | None = Field(None, min_length=1, max_length=256)

    @field_validator(
        "kinesis_endpoint", "dynamodb_endpoint", "cloudwatch_endpoint", "worker_id", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("*")
    @classmethod
    def _single_line(cls, value: object) -> object:
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            raise ValueError("must be a single line")
        return value


@lru_cache
def get_settings() -> ConsumerSettings:
    """The process's settings, read from the environment on first use (not at import)."""
    return ConsumerSettings()  # type: ignore[call-arg]  # values come from the environment
