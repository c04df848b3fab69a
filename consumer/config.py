"""Consumer settings: environment variables prefixed ``CONSUMER_``, validated at start
(``python -m consumer --help`` lists them, generated from this class)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.settings import LogLevel, log_level_field, region_field

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_kinesis.client import KinesisClient


class ConsumerSettings(BaseSettings):
    """What the daemon launcher and the record processor need; both read the same variables.

    Construction validates everything (bad values raise ``pydantic.ValidationError`` at start):
    names non-empty, the millis positive, every string a single line (they end up in a
    properties file).
    """

    # a variable set to "" is unset (its default), e.g. an endpoint left empty means AWS
    model_config = SettingsConfigDict(
        env_prefix="CONSUMER_", env_ignore_empty=True, frozen=True, validate_by_name=True
    )

    stream_name: str = Field(min_length=1, max_length=128, description="the Kinesis stream")
    application_name: str = Field(
        "kinesis-ingest-consumer",
        min_length=1,
        max_length=128,
        description="the KCL application: names its three tables and the EFO consumer",
    )
    region: str = region_field("CONSUMER_", min_length=1)
    records_table: str = Field(
        "records", min_length=3, max_length=255, description="where records are stored"
    )
    quarantine_table: str = Field(
        "records-quarantine",
        min_length=3,
        max_length=255,
        description="poison records, whole, with the reason",
    )
    kinesis_endpoint: str | None = Field(None, description="Kinesis endpoint URL; unset: AWS")
    dynamodb_endpoint: str | None = Field(None, description="DynamoDB endpoint URL; unset: AWS")
    # The KCL's own metrics (PutMetricData). The MultiLangDaemon has no property for it: the
    # launcher passes it to the JVM as the AWS SDK's service-specific endpoint setting.
    cloudwatch_endpoint: str | None = Field(
        None, description="CloudWatch endpoint URL for the KCL's metrics; unset: AWS"
    )
    max_leases_for_worker: int | None = Field(
        None,
        ge=1,
        description="KCL maxLeasesForWorker: the most shards one worker leases (each costs a "
        "Python process); unset: no limit",
    )
    initial_position: Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"] = Field(
        "TRIM_HORIZON", description="where a shard without a checkpoint is read from"
    )
    initial_timestamp: AwareDatetime | None = Field(
        None,
        description="with AT_TIMESTAMP: where a new application (no checkpoints yet) starts "
        "reading, ISO 8601 with a zone (2026-11-30T10:00:00Z) or epoch seconds; the KCL takes "
        "whole seconds",
    )
    retrieval_mode: Literal["FANOUT", "POLLING"] = Field(
        "FANOUT", description="enhanced fan-out (SubscribeToShard) or GetRecords polling"
    )
    failover_time_millis: int = Field(
        10_000, gt=0, description="KCL failoverTimeMillis: a lease not renewed this long expires"
    )
    lease_assignment_interval_millis: int | None = Field(
        None,
        gt=0,
        description="KCL leaseAssignmentIntervalMillis: how often the leader assigns leases; "
        "unset: the KCL's 2 x failoverTimeMillis",
    )
    shard_sync_interval_millis: int = Field(
        60_000, gt=0, description="KCL shardSyncIntervalMillis: the leader's shard sync"
    )
    parent_shard_poll_interval_millis: int = Field(
        10_000,
        gt=0,
        description="KCL parentShardPollIntervalMillis: how often a child shard checks whether "
        "its parents are done",
    )
    shutdown_grace_millis: int = Field(
        30_000,
        gt=0,
        description="KCL shutdownGraceMillis: on SIGTERM, how long the record processors get "
        "for their final checkpoints; keep it under the container's stop timeout",
    )
    metrics_level: Literal["NONE", "SUMMARY", "DETAILED"] = Field(
        "SUMMARY", description="the KCL's CloudWatch metrics; NONE locally (no CloudWatch)"
    )
    java: str = Field("java", min_length=1, description="the java that runs the KCL daemon")
    jvm_options: str = Field("", description="more JVM options (shell-quoted)")
    properties_path: str = Field(
        ".local/consumer.properties", description="where the rendered KCL properties go"
    )
    write_deadline_seconds: float = Field(
        60.0,
        gt=0,
        allow_inf_nan=False,
        description="a batch not written by then makes the processor exit for a replay",
    )
    max_writes_in_flight: int = Field(
        4, ge=1, le=32, description="BatchWriteItem calls (25 items each) at once per shard"
    )
    metrics_interval_seconds: float = Field(
        60.0,
        gt=0,
        description="each shard's processor writes an EMF line on stderr this often",
    )
    heartbeat_dir: str = Field(
        "/tmp/kcl-heartbeats",
        description="each record processor's heartbeat file; python -m consumer.health fails "
        "when one has been busy with a batch for over the write deadline + 60 s",
    )
    # The KCL's workerId. Unset: the KCL draws a random one per start (a new ECS task is a new
    # worker). The local stack sets a stable one, so a worker it restarts in place resumes its
    # own leases and leader lock instead of waiting out the dead worker's (README, local stack).
    worker_id: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="the KCL's workerId; unset: a random one per start. A worker restarted "
        "with the same id resumes its own leases at once",
    )
    item_ttl_seconds: int = Field(
        0,
        ge=0,
        le=100 * 365 * 86400,
        description="item expiry: each stored record gets expires_at (epoch seconds) this long "
        "after its arrival in Kinesis, for DynamoDB's TTL; 0: no expiry",
    )
    log_level: LogLevel = log_level_field()

    @model_validator(mode="after")
    def _timestamp_with_at_timestamp(self) -> ConsumerSettings:
        if (self.initial_position == "AT_TIMESTAMP") != (self.initial_timestamp is not None):
            raise ValueError(
                "initial_timestamp is set exactly when initial_position is AT_TIMESTAMP"
            )
        return self

    @property
    def initial_epoch_seconds(self) -> int | None:
        """AT_TIMESTAMP's moment as the KCL reads it: whole seconds (rounded down)."""
        stamp: datetime | None = self.initial_timestamp
        return int(stamp.timestamp()) if stamp is not None else None

    def tool_clients(
        self, kinesis_ca_bundle: str | None = None
    ) -> tuple[KinesisClient, DynamoDBClient]:
        """Kinesis and DynamoDB clients at the configured region and endpoints, for the
        operator's tools (replay, rebuild); ``kinesis_ca_bundle`` verifies a local endpoint."""
        import boto3  # the tools' only: the settings are read where boto3 is not needed

        kinesis = boto3.client(
            "kinesis",
            region_name=self.region,
            endpoint_url=self.kinesis_endpoint,
            verify=kinesis_ca_bundle,
        )
        ddb = boto3.client("dynamodb", region_name=self.region, endpoint_url=self.dynamodb_endpoint)
        return kinesis, ddb

    @field_validator("*")
    @classmethod
    def _single_line(cls, value: object) -> object:
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            raise ValueError("must be a single line")
        return value


@lru_cache
def get_settings() -> ConsumerSettings:
    """The process's settings, read from the environment on first use (not at import)."""
    return ConsumerSettings()  # values come from the environment
