"""Scaler settings: environment variables prefixed ``SCALER_``, validated at start.

Thresholds are percentages of the shard write limits (1 MiB/s and 1,000 records/s per shard),
like Kinesis Scaling Utils' ``scaleThresholdPct``. Windows and cool-offs count *samples*: one
minute each with CloudWatch; with the producer source a sample is one check interval, so a
local run can use seconds where AWS uses minutes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scaler.policy import PolicyConfig, Step


class ScalerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCALER_", frozen=True)

    stream_name: str = Field(min_length=1, max_length=128)
    region: str = Field("us-east-1", min_length=1)
    kinesis_endpoint: str | None = None
    cloudwatch_endpoint: str | None = None
    # cloudwatch: the stream's metrics (shard-level too when enhanced monitoring is on);
    # producer: the per-shard counts at each producer's GET /metrics (local stack)
    metrics_source: Literal["cloudwatch", "producer"] = "cloudwatch"
    shard_level_metrics: bool = True  # cloudwatch: read per-shard metrics too
    producer_metrics_urls: str = ""  # comma-separated
    check_interval_seconds: float = Field(60.0, gt=0, le=3600)
    dry_run: bool = False
    min_shards: int = Field(1, ge=1, le=10_000)
    max_shards: int = Field(64, ge=1, le=10_000)
    scale_up_pct: float = Field(90, gt=0, le=100)
    scale_up_after: int = Field(2, ge=1, le=1440)
    target_pct: float = Field(75, gt=0, le=100)
    scale_down_pct: float = Field(65, gt=0, le=100)
    scale_down_after: int = Field(5, ge=1, le=1440)
    merge_below_pct: float = Field(75, gt=0, le=100)
    cool_off_after_up: int = Field(30, ge=0, le=1440)
    cool_off_after_down: int = Field(2, ge=0, le=1440)
    max_updates_per_day: int = Field(10, ge=1, le=100)
    reserved_updates: int = Field(2, ge=0, le=99)
    update_min_step: int = Field(2, ge=1)
    scale_up_step: str = "auto"  # auto | N | N%
    scale_down_step: str = "auto"
    wait_active_seconds: float = Field(900, gt=0)
    emf: bool = True  # an EMF metrics line on stdout after each check
    heartbeat_path: str = "/tmp/scaler-heartbeat"  # touched after each check (scaler.health)

    @field_validator("kinesis_endpoint", "cloudwatch_endpoint", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

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
        return self

    @property
    def urls(self) -> list[str]:
        return [u.strip() for u in self.producer_metrics_urls.split(",") if u.strip()]

    def policy_config(self) -> PolicyConfig:
        return PolicyConfig(
            min_shards=self.min_shards,
            max_shards=self.max_shards,
            scale_up_pct=self.scale_up_pct / 100,
            scale_up_after=self.scale_up_after,
            target_pct=self.target_pct / 100,
            scale_down_pct=self.scale_down_pct / 100,
            scale_down_after=self.scale_down_after,
            merge_below_pct=self.merge_below_pct / 100,
            cool_off_after_up=self.cool_off_after_up,
            cool_off_after_down=self.cool_off_after_down,
            max_updates_per_day=self.max_updates_per_day,
            reserved_updates=self.reserved_updates,
            update_min_step=self.update_min_step,
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
    return ScalerSettings()  # type: ignore[call-arg]  # values come from the environment
