"""The stack's configuration: every key declared in ``Pulumi.yaml``, parsed and validated.

``load(values)`` is pure (a mapping of config key -> string, as ``pulumi config`` stores
them), so tests check defaults and errors without a Pulumi engine. Errors name the key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

Cpu = Annotated[int, Field(ge=256, le=16384)]
Memory = Annotated[int, Field(ge=512, le=122880)]
Tasks = Annotated[int, Field(ge=1, le=1000)]


class InfraSettings(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )

    allowed_cidr: str  # required: who may send records
    certificate_arn: str = ""
    vpc_cidr: str = "10.0.0.0/16"
    az_count: int = Field(2, ge=2, le=6)
    single_nat_gateway: bool = False
    interface_endpoints: bool = True
    shard_count: int = Field(5, ge=1, le=10_000)
    min_shards: int = Field(1, ge=1)
    max_shards: int = Field(64, ge=1, le=10_000)
    retention_hours: int = Field(24, ge=24, le=8760)
    shard_level_metrics: bool = True
    producer_cpu: Cpu = 1024
    producer_memory: Memory = 2048
    producer_min_tasks: Tasks = 1
    producer_max_tasks: Tasks = 15
    consumer_cpu: Cpu = 1024
    consumer_memory: Memory = 2048
    consumer_min_tasks: Tasks = 1
    consumer_max_tasks: Tasks = 15
    cpu_target_percent: float = Field(65, gt=0, le=100)
    log_retention_days: int = 30
    application_name: str = Field("", pattern=r"^([A-Za-z0-9_.-]{3,200})?$")  # "": <stack>-consumer
    scaler_dry_run: bool = False
    alarm_email: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> InfraSettings:
        problems = []
        try:
            network = ipaddress.ip_network(self.allowed_cidr, strict=True)
            if network.version != 4:
                problems.append("allowedCidr must be an IPv4 CIDR")
        except ValueError as exc:
            problems.append(f"allowedCidr is not a CIDR: {exc}")
        if ipaddress.ip_network(self.vpc_cidr).prefixlen > 20:
            problems.append("vpcCidr needs at least a /20 (two /24 subnets per AZ)")
        if not self.min_shards <= self.shard_count <= self.max_shards:
            problems.append("need minShards <= shardCount <= maxShards")
        for service in ("producer", "consumer"):
            if getattr(self, f"{service}_min_tasks") > getattr(self, f"{service}_max_tasks"):
                problems.append(f"{service}MinTasks is above {service}MaxTasks")
        if self.consumer_max_tasks > self.max_shards:
            problems.append(
                "consumerMaxTasks is above maxShards: the extra workers would hold no lease"
            )
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            problems.append(f"logRetentionDays must be one of {sorted(LOG_RETENTION_DAYS)}")
        if self.certificate_arn and not self.certificate_arn.startswith("arn:"):
            problems.append("certificateArn must be an ACM certificate ARN")
        if problems:
            raise ValueError("; ".join(problems))
        return self


LOG_RETENTION_DAYS = {
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
}


def config_keys() -> list[str]:
    """Every key the stack reads (camelCase, as in ``Pulumi.yaml``)."""
    return [field.alias or name for name, field in InfraSettings.model_fields.items()]


class ConfigError(ValueError):
    """The stack configuration is invalid; the message says which keys and why."""


def load(values: Mapping[str, str]) -> InfraSettings:
    """Parse config values (strings, keyed like ``Pulumi.yaml``) into settings."""
    try:
        return InfraSettings.model_validate(dict(values))
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid stack configuration: {details}") from None
