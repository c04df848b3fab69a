"""Scaler settings: environment variables prefixed ``SCALER_``, validated at start.

Thresholds are percentages of the shard write limits (1 MiB/s and 1,000 records/s per shard),
like Kinesis Scaling Utils' ``scaleThresholdPct``. Windows and cool-offs count *samples*: one
minute each with CloudWatch; with the producer source a sample is one check interval, so a
local run can use seconds where AWS uses minutes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.settings import CoreFields, LogLevel, log_level_field, region_field
from scaler.policy import PolicyConfig, Step

# The settings the policy runs on; their defaults are PolicyConfig's (percentages where it holds
# fractions), stated there once.
_POLICY_NAMES = (
    "min_shards", "max_shards", "scale_up_after", "scale_down_after", "cool_off_after_up",
    "cool_off_after_down", "max_updates_per_day", "reserved_updates", "update_min_step",
)  # fmt: skip
_POLICY_PERCENTAGES = ("scale_up_pct", "target_pct", "scale_down_pct", "merge_below_pct")
POLICY = CoreFields(
    PolicyConfig,
    {**{n: (n, 1) for n in _POLICY_NAMES}, **{n: (n, 100) for n in _POLICY_PERCENTAGES}},
)
_default = POLICY.default


class ScalerSettings(BaseSettings):
    """The shard scaler's settings (``python -m scaler --help`` lists them)."""

    # a variable set to "" is unset (its default), e.g. an endpoint left empty means AWS
    model_config = SettingsConfigDict(
        env_prefix="SCALER_", env_ignore_empty=True, frozen=True, validate_by_name=True
    )

    stream_name: str = Field(min_length=1, max_length=128, description="the Kinesis stream")
    region: str = region_field("SCALER_", min_length=1)
    kinesis_endpoint: str | None = Field(None, description="Kinesis endpoint URL; unset: AWS")
    cloudwatch_endpoint: str | None = Field(None, description="CloudWatch endpoint URL; unset: AWS")
    metrics_source: Literal["cloudwatch", "producer"] = Field(
        "cloudwatch",
        description="cloudwatch: the stream's metrics (per shard too with shard_level_metrics); "
        "producer: the per-shard counts at each producer's GET /metrics (the local stack)",
    )
    shard_level_metrics: bool = Field(True, description="cloudwatch: read per-shard metrics too")
    producer_metrics_urls: str = Field(
        "", description="producer source: the producers' /metrics URLs, comma-separated"
    )
    producer_api_key: SecretStr | None = Field(
        None, description="producer source: X-Api-Key for /metrics, when the producers need one"
    )
    check_interval_seconds: float = Field(
        60.0, gt=0, le=3600, description="a check (sample and decision) this often"
    )
    dry_run: bool = Field(False, description="decide and log, call nothing")
    min_shards: int = Field(
        _default("min_shards"), ge=1, le=10_000, description="never fewer open shards"
    )
    max_shards: int = Field(
        _default("max_shards"), ge=1, le=10_000, description="never more open shards"
    )
    scale_up_pct: float = Field(
        _default("scale_up_pct"),
        gt=0,
        le=100,
        description="above this utilisation for scale_up_after samples: up",
    )
    scale_up_after: int = Field(
        _default("scale_up_after"),
        ge=1,
        le=1440,
        description="samples above scale_up_pct (or throttled) before a scale-up",
    )
    target_pct: float = Field(
        _default("target_pct"), gt=0, le=100, description="utilisation a resize aims at"
    )
    scale_down_pct: float = Field(
        _default("scale_down_pct"),
        gt=0,
        le=100,
        description="below this for scale_down_after samples: down",
    )
    scale_down_after: int = Field(
        _default("scale_down_after"),
        ge=1,
        le=1440,
        description="samples below scale_down_pct before a scale-down",
    )
    merge_below_pct: float = Field(
        _default("merge_below_pct"),
        gt=0,
        le=100,
        description="merge an adjacent pair only if together they peaked below",
    )
    cool_off_after_up: int = Field(
        _default("cool_off_after_up"),
        ge=0,
        le=1440,
        description="samples after a scale-up before a scale-down",
    )
    cool_off_after_down: int = Field(
        _default("cool_off_after_down"),
        ge=0,
        le=1440,
        description="samples after a scale-down before another one",
    )
    max_updates_per_day: int = Field(
        _default("max_updates_per_day"),
        ge=1,
        le=100,
        description="UpdateShardCount calls per rolling 24 h (the AWS limit)",
    )
    reserved_updates: int = Field(
        _default("reserved_updates"),
        ge=0,
        le=99,
        description="of those, kept for scale-ups; beyond, split and merge",
    )
    update_min_step: int = Field(
        _default("update_min_step"),
        ge=1,
        description="smaller scale-downs merge instead of spending an UpdateShardCount",
    )
    scale_up_step: str = Field(
        "auto", description="auto (to the target), a count (2) or a percentage (50%)"
    )
    scale_down_step: str = Field(
        "auto", description="auto (to the target), a count (2) or a percentage (50%)"
    )
    wait_active_seconds: float = Field(
        900, gt=0, description="after a reshard, wait this long at most for ACTIVE"
    )
    emf: bool = Field(True, description="an EMF metrics line on stdout after each check")
    heartbeat_path: str = Field(
        "/tmp/scaler-heartbeat",
        description="touched before every check; python -m scaler.health fails when it is older "
        "than the interval + wait_active_seconds + 2 min",
    )
    state_table: str = Field(
        "",
        description="the DynamoDB table (key stream) of what a restart must not forget "
        "(scaler.state); empty: kept in memory (a restart forgets cool-offs and the "
        "UpdateShardCount budget)",
    )
    dynamodb_endpoint: str | None = Field(None, description="DynamoDB endpoint URL; unset: AWS")
    notification_topic_arn: str = Field(
        "", description="every operation, refusal and dry-run decision to this SNS topic"
    )
    sns_endpoint: str | None = Field(None, description="SNS endpoint URL; unset: AWS")
    consumer_service: str = Field(
        "",
        description="the consumer's ECS service as Application Auto Scaling names it "
        "(service/<cluster>/<name>): its maximum task count follows the open shards",
    )
    consumer_min_tasks: int = Field(1, ge=1, le=1000, description="the maximum's lower bound")
    consumer_max_tasks: int = Field(15, ge=1, le=1000, description="the maximum's upper bound")
    application_autoscaling_endpoint: str | None = Field(
        None, description="Application Auto Scaling endpoint URL; unset: AWS"
    )
    log_level: LogLevel = log_level_field()

    @field_validator("scale_up_step", "scale_down_step")
    @classmethod
    def _step(cls, value: str) -> str:
        Step.parse(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ScalerSettings:
        self.policy_config()  # raises ValueError naming the inconsistent thresholds
        if self.metrics_source == "producer" and not self.urls:
            raise ValueError("metrics_source=producer needs producer_metrics_urls")
        if self.consumer_min_tasks > self.consumer_max_tasks:
            raise ValueError("need consumer_min_tasks <= consumer_max_tasks")
        if self.consumer_service and not self.consumer_service.startswith("service/"):
            raise ValueError("consumer_service must look like service/<cluster>/<service>")
        return self

    @property
    def urls(self) -> list[str]:
        return [u.strip() for u in self.producer_metrics_urls.split(",") if u.strip()]

    def policy_config(self) -> PolicyConfig:
        return POLICY.build(
            self,
            up_step=Step.parse(self.scale_up_step),
            down_step=Step.parse(self.scale_down_step),
            update_window=max(1, round(24 * 3600 / self.sample_seconds)),
            unit="min" if self.sample_seconds == 60 else f"x {self.sample_seconds:g} s",
        )

    @property
    def sample_seconds(self) -> float:
        return 60.0 if self.metrics_source == "cloudwatch" else self.check_interval_seconds


@lru_cache
def get_settings() -> ScalerSettings:
    return ScalerSettings()  # values come from the environment
