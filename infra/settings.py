"""The stack's configuration: every key declared in ``Pulumi.yaml``, parsed and validated.

``load(values)`` is pure (a mapping of config key -> string, as ``pulumi config`` stores
them), so tests check defaults and errors without a Pulumi engine. Errors name the key.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

# A secret's full ARN: its name, a hyphen and six random characters (Secrets Manager User
# Guide, "Permissions policy examples" / CreateSecret's ARN: "the name of the secret followed
# by six random characters"). ECS takes the full ARN in ``valueFrom`` (ECS Developer Guide,
# "Pass Secrets Manager secrets through Amazon ECS environment variables"), and IAM matches
# GetSecretValue against it.
SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+-\w{6}")
WAF_MIN_RATE_LIMIT = 10

Cpu = Annotated[int, Field(ge=256, le=16384)]
Memory = Annotated[int, Field(ge=512, le=122880)]
Tasks = Annotated[int, Field(ge=1, le=1000)]


class InfraSettings(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )

    allowed_cidr: str  # required: who may send records
    certificate_arn: str = ""
    # POSTs, /docs and /metrics need an X-Api-Key header; the keys live in Secrets Manager
    require_api_key: bool = True
    api_key_secret_arn: str = ""  # "": the stack creates the secret with one random key
    # AWS WAF on the ALB: the most requests one client IP may send in 5 minutes (0: no WAF).
    # AWS WAF Developer Guide, "Rate-based rule high-level settings": the lowest limit is 10;
    # WAFV2 API Reference, RateBasedStatement.Limit: at most 2,000,000,000.
    waf_rate_limit: int = Field(0, ge=0, le=2_000_000_000)
    vpc_cidr: str = "10.0.0.0/16"
    az_count: int = Field(2, ge=2, le=6)
    single_nat_gateway: bool = False
    interface_endpoints: bool = True
    # provisioned: shards we pay by the hour, resized by the shard scaler; on-demand: Kinesis
    # sizes the stream itself (no scaler deployed). README "Deploy to AWS" says which is cheaper.
    stream_mode: Literal["provisioned", "on-demand"] = "provisioned"
    shard_count: int = Field(5, ge=1, le=10_000)
    min_shards: int = Field(1, ge=1)
    max_shards: int = Field(64, ge=1, le=10_000)
    # 7 days: a week to notice a stuck consumer and replay (rebuildFrom); its cost in README
    retention_hours: int = Field(168, ge=24, le=8760)
    shard_level_metrics: bool = True
    producer_cpu: Cpu = 1024
    producer_memory: Memory = 2048
    producer_min_tasks: Tasks = 2  # one per AZ of the default two: a zone can fail
    producer_max_tasks: Tasks = 15
    consumer_cpu: Cpu = 1024
    consumer_memory: Memory = 2048
    consumer_min_tasks: Tasks = 2
    consumer_max_tasks: Tasks = 15
    cpu_target_percent: float = Field(65, gt=0, le=100)
    # the consumer also scales out on the KCL's lag (MillisBehindLatest) above this target
    consumer_lag_target_seconds: float = Field(30, gt=0, le=86400)
    log_retention_days: int = 30
    application_name: str = Field("", pattern=r"^([A-Za-z0-9_.-]{3,200})?$")  # "": <stack>-consumer
    consumer_retrieval_mode: Literal["FANOUT", "POLLING"] = "FANOUT"
    scaler_dry_run: bool = False
    alarm_email: str = ""
    scaling_email: str = ""  # subscribed to the scaler's notifications (the topic exists anyway)
    # DynamoDB deletes stored records this many days after their arrival in Kinesis; 0: never
    item_ttl_days: int = Field(0, ge=0, le=36500)
    # a moment (ISO 8601 with a zone): a second KCL application reads the stream again from
    # there into the records table (README, "Rebuilding the table"); empty: none runs
    rebuild_from: str = ""
    # Graviton (arm64) tasks are ~20% cheaper per vCPU-hour; the images are built for it too
    cpu_architecture: Literal["x86_64", "arm64"] = "x86_64"

    @model_validator(mode="after")
    def _consistent(self) -> InfraSettings:
        problems = []
        try:
            network = ipaddress.ip_network(self.allowed_cidr, strict=True)
            if network.version != 4:
                problems.append("allowedCidr must be an IPv4 CIDR")
        except ValueError as exc:
            problems.append(f"allowedCidr is not a CIDR: {exc}")
        try:
            prefix = ipaddress.ip_network(self.vpc_cidr, strict=True).prefixlen
            # a VPC's block is /16 to /28 (Amazon VPC User Guide, "VPC CIDR blocks"); we need
            # room for two /24 subnets per AZ, public in the lower half, private in the upper
            if not 16 <= prefix <= 20:
                problems.append("vpcCidr must be a /16 to /20 (two /24 subnets per AZ)")
        except ValueError as exc:
            problems.append(f"vpcCidr is not a CIDR: {exc}")
        if not self.min_shards <= self.shard_count <= self.max_shards:
            problems.append("need minShards <= shardCount <= maxShards")
        for service in ("producer", "consumer"):
            if getattr(self, f"{service}_min_tasks") > getattr(self, f"{service}_max_tasks"):
                problems.append(f"{service}MinTasks is above {service}MaxTasks")
        if self.consumer_max_tasks > self.max_shards:
            problems.append(
                "consumerMaxTasks is above maxShards: the extra workers would hold no lease"
            )
        for service in ("producer", "consumer"):
            cpu, memory = getattr(self, f"{service}_cpu"), getattr(self, f"{service}_memory")
            if memory not in FARGATE_SIZES.get(cpu, ()):
                problems.append(
                    f"{service}Cpu {cpu} with {service}Memory {memory} is not a Fargate task "
                    f"size (CPU units {sorted(FARGATE_SIZES)}; memory for {cpu}: "
                    f"{_memory_choices(cpu)})"
                )
        leases = consumer_leases_per_task(self.consumer_memory)
        if leases < 1:
            problems.append("consumerMemory leaves no room for a record processor")
        elif self.consumer_max_tasks * leases < self.max_shards:
            problems.append(
                f"consumerMaxTasks x {leases} leases a task (consumerMemory "
                f"{self.consumer_memory} MiB) is below maxShards: shards would go unread"
            )
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            problems.append(f"logRetentionDays must be one of {sorted(LOG_RETENTION_DAYS)}")
        if self.certificate_arn and not self.certificate_arn.startswith("arn:"):
            problems.append("certificateArn must be an ACM certificate ARN")
        if self.rebuild_from:
            try:
                self.rebuild_moment()
            except ValueError as exc:
                problems.append(f"rebuildFrom: {exc}")
            if len(self.application_name) > 103:
                problems.append(
                    "applicationName over 103 characters leaves no room for the rebuild's "
                    "fan-out consumer name (<applicationName>-rebuild-<moment>, 128 at most)"
                )
        if self.api_key_secret_arn and not SECRET_ARN.fullmatch(self.api_key_secret_arn):
            problems.append(
                "apiKeySecretArn must be the full ARN of a Secrets Manager secret "
                "(arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>)"
            )
        if self.api_key_secret_arn and not self.require_api_key:
            problems.append("apiKeySecretArn is set but requireApiKey is false")
        if 0 < self.waf_rate_limit < WAF_MIN_RATE_LIMIT:
            problems.append(f"wafRateLimit must be 0 (no WAF) or at least {WAF_MIN_RATE_LIMIT}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def rebuild_moment(self) -> datetime | None:
        """``rebuildFrom`` parsed (None when empty); ValueError when it is not a moment."""
        from consumer.rebuild import parse_moment

        return parse_moment(self.rebuild_from) if self.rebuild_from else None

    @property
    def rebuild_tasks(self) -> int:
        """Enough rebuild workers to lease every shard the stream may have."""
        return max(1, math.ceil(self.max_shards / consumer_leases_per_task(self.consumer_memory)))


def _fargate_sizes() -> dict[int, tuple[int, ...]]:
    """CPU units -> the memory sizes (MiB) Fargate accepts with it, Linux tasks ("Task CPU and
    memory", Amazon ECS Developer Guide: docs.aws.amazon.com/AmazonECS/latest/developerguide/
    fargate-tasks-services.html#fargate-tasks-size)."""
    return {
        256: (512, 1024, 2048),
        512: tuple(range(1024, 4096 + 1, 1024)),
        1024: tuple(range(2048, 8192 + 1, 1024)),
        2048: tuple(range(4096, 16384 + 1, 1024)),
        4096: tuple(range(8192, 30720 + 1, 1024)),
        8192: tuple(range(16384, 61440 + 1, 4096)),
        16384: tuple(range(32768, 122880 + 1, 8192)),
    }


FARGATE_SIZES = _fargate_sizes()


def _memory_choices(cpu: int) -> str:
    sizes = FARGATE_SIZES.get(cpu)
    if not sizes:
        return "none"
    step = sizes[1] - sizes[0] if len(sizes) > 1 else 0
    return f"{sizes[0]}-{sizes[-1]} in steps of {step}" if step else str(sizes[0])


# The consumer task runs one JVM (the KCL daemon) and one Python record processor per leased
# shard (MultiLangDaemon: a child process per ShardRecordProcessor). Sizing, measured on the
# local stack (test_consumer_faults, 3 processors under traffic): 62 MiB RSS each, the
# KCL JVM 230-290 MiB; a processor is counted as PROCESSOR_MIB with headroom.
PROCESSOR_MIB = 80
JVM_OVERHEAD_MIB = 256  # metaspace, threads, Netty's direct buffers beyond the heap


def consumer_heap_mib(memory: int) -> int:
    """The KCL JVM's -Xmx: a quarter of the task, 256 MiB to 2 GiB."""
    return max(256, min(2048, memory // 4))


def consumer_leases_per_task(memory: int) -> int:
    """How many shards one consumer task may lease (the KCL's maxLeasesForWorker): what is
    left of the task's memory after the JVM, one record processor each."""
    return (memory - consumer_heap_mib(memory) - JVM_OVERHEAD_MIB) // PROCESSOR_MIB


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
