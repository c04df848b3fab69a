"""The whole stack from settings: what ``__main__`` runs and the infra tests build under mocks."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from consumer.rebuild import rebuild_application, rebuild_environment
from infra import iam
from infra.components.data import Data, DataArgs
from infra.components.images import Images, ImagesArgs
from infra.components.ingest import PRODUCER_PORT, Ingest, IngestArgs
from infra.components.network import Network, NetworkArgs
from infra.components.notifications import Notifications, NotificationsArgs
from infra.components.observability import (
    SERVICES,
    DashboardInputs,
    Observability,
    ObservabilityArgs,
    consumer_lag_metric,
)
from infra.components.secrets import KEYS_VARIABLE, ApiKeys, ApiKeysArgs
from infra.components.service import FargateService, ServiceArgs
from infra.settings import (
    InfraSettings,
    config_keys,
    consumer_heap_mib,
    consumer_leases_per_task,
    load,
)

PRODUCER_HEALTH_CHECK = [
    "CMD",
    "python",
    "-c",
    "import urllib.request; "
    f"urllib.request.urlopen('http://127.0.0.1:{PRODUCER_PORT}/health', timeout=3)",
]
# consumer.health: unhealthy when a record processor is stuck mid-batch (see its docstring)
CONSUMER_HEALTH_CHECK = ["CMD", "python", "-m", "consumer.health"]
# scaler.health: unhealthy when its check loop has not come round for far too long
SCALER_HEALTH_CHECK = ["CMD", "python", "-m", "scaler.health"]
CONSUMER_SHUTDOWN_GRACE_MILLIS = 90_000  # under the 120 s stop timeout
# Fargate's runtime platform names for the config's cpuArchitecture
ARCHITECTURES = {"x86_64": "X86_64", "arm64": "ARM64"}


def tags(name: str) -> dict[str, str]:
    return {"project": "kinesis-ingest", "stack": name, "managed-by": "pulumi"}


@dataclass
class Stack:
    url: pulumi.Output[str]
    dashboard_url: pulumi.Output[str]
    stream_name: pulumi.Output[str]
    records_table: pulumi.Output[str]
    quarantine_table: pulumi.Output[str]
    services: dict[str, FargateService]
    region: str = ""
    application_name: str = ""
    alarm_names: pulumi.Output[list[str]] | None = None
    scaling_topic_arn: pulumi.Output[str] | None = None
    rebuild_application: str = ""
    api_key_secret_arn: pulumi.Output[str] | None = None  # None: the API takes no key
    cluster_name: pulumi.Output[str] | None = None


def environments(s: InfraSettings, region: pulumi.Input[str], data: Data) -> dict[str, dict]:
    """Each task's environment: the variables its service's settings class reads."""
    return {
        "producer": {
            "PRODUCER_STREAM_NAME": data.stream.name,
            "PRODUCER_REGION": region,
            "PRODUCER_HOST": "0.0.0.0",
            "PRODUCER_PORT": str(PRODUCER_PORT),
            "PRODUCER_WORKERS": str(max(1, s.producer_cpu // 1024)),
            "PRODUCER_DRAIN_SECONDS": "25",  # > 2 failed checks of 10 s: the ALB stops first
            "PRODUCER_EMF_INTERVAL_SECONDS": "60",
        },
        "consumer": {
            "CONSUMER_STREAM_NAME": data.stream.name,
            "CONSUMER_REGION": region,
            "CONSUMER_APPLICATION_NAME": s.application_name,
            "CONSUMER_RECORDS_TABLE": data.records.name,
            "CONSUMER_QUARANTINE_TABLE": data.quarantine.name,
            "CONSUMER_RETRIEVAL_MODE": s.consumer_retrieval_mode,
            "CONSUMER_METRICS_LEVEL": "SUMMARY",
            # one JVM and one Python process per leased shard share the task's memory
            "CONSUMER_JVM_OPTIONS": f"-Xmx{consumer_heap_mib(s.consumer_memory)}m",
            "CONSUMER_MAX_LEASES_FOR_WORKER": str(consumer_leases_per_task(s.consumer_memory)),
            "CONSUMER_SHUTDOWN_GRACE_MILLIS": str(CONSUMER_SHUTDOWN_GRACE_MILLIS),
            "CONSUMER_PROPERTIES_PATH": "/tmp/consumer.properties",
            **(
                {"CONSUMER_ITEM_TTL_SECONDS": str(s.item_ttl_days * 86400)}
                if s.item_ttl_days
                else {}
            ),
        },
        "scaler": {
            "SCALER_STREAM_NAME": data.stream.name,
            "SCALER_REGION": region,
            "SCALER_METRICS_SOURCE": "cloudwatch",
            "SCALER_SHARD_LEVEL_METRICS": str(s.shard_level_metrics).lower(),
            "SCALER_MIN_SHARDS": str(s.min_shards),
            "SCALER_MAX_SHARDS": str(s.max_shards),
            "SCALER_DRY_RUN": str(s.scaler_dry_run).lower(),
            "SCALER_CONSUMER_MIN_TASKS": str(s.consumer_min_tasks),
            "SCALER_CONSUMER_MAX_TASKS": str(s.consumer_max_tasks),
            **({"SCALER_STATE_TABLE": data.scaler_state.name} if data.scaler_state else {}),
        },
    }


def from_config() -> Stack:
    """What ``pulumi up`` runs: the stack configuration (``Pulumi.yaml`` keys and
    ``aws:region``) -> the stack. An explicit provider does not read ``aws:*`` config itself:
    the region is passed on, and required, so a stack never deploys to a default region."""
    stack_config = pulumi.Config()
    values = {key: stack_config.get(key) for key in config_keys()}
    region = pulumi.Config("aws").require("region")
    return build(
        load({k: v for k, v in values.items() if v is not None}),
        f"ingest-{pulumi.get_stack()}",
        _version(),
        region,
    )


def _version() -> str:
    """The image tag: the checked-out commit (``-dirty`` when the tree has changes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "latest"


def build(s: InfraSettings, name: str, version: str, region: str) -> Stack:
    if not s.application_name:
        s = s.model_copy(update={"application_name": f"{name}-consumer"})
    # Every AWS resource gets the stack's tags through this provider's default_tags; the
    # region is explicit (an explicit provider ignores the stack's aws:region).
    provider = aws.Provider(f"{name}-aws", region=region, default_tags={"tags": tags(name)})
    opts = pulumi.ResourceOptions(providers=[provider])
    network = Network(
        name, NetworkArgs(s.vpc_cidr, s.az_count, s.single_nat_gateway, s.interface_endpoints), opts
    )
    provisioned = s.stream_mode == "provisioned"
    fan_out = s.consumer_retrieval_mode == "FANOUT"
    since = s.rebuild_moment()
    rebuild_app = rebuild_application(s.application_name, since) if since else ""
    data = Data(
        name,
        DataArgs(
            s.shard_count,
            s.retention_hours,
            s.shard_level_metrics,
            s.application_name,
            on_demand=not provisioned,
            fan_out=fan_out,
            item_ttl=s.item_ttl_days > 0,
            scaler_state=provisioned,
            rebuild_application=rebuild_app,
        ),
        opts,
    )
    architecture = ARCHITECTURES[s.cpu_architecture]
    images = Images(name, ImagesArgs(version, s.cpu_architecture), opts)
    log_services = (*SERVICES, "rebuild") if rebuild_app else SERVICES
    observe = Observability(
        name,
        ObservabilityArgs(s.log_retention_days, cluster_name=name, services=log_services),
        opts,
    )
    notify = Notifications(
        name, NotificationsArgs(s.alarm_email, provisioned, s.scaling_email), opts
    )
    ingest = Ingest(
        name,
        IngestArgs(
            network.vpc_id,
            [x.id for x in network.public_subnets],
            s.allowed_cidr,
            s.certificate_arn,
            s.waf_rate_limit,
            depends_on=network.public_ready,
        ),
        opts,
    )
    own = pulumi.ResourceOptions(provider=provider)
    # Container Insights writes to /aws/ecs/containerinsights/<cluster>/performance, a log
    # group it creates unless it exists: created first here (Observability), it has our
    # retention and goes with `pulumi destroy` (Amazon CloudWatch User Guide, "Container
    # Insights": the performance log events' log group).
    cluster = aws.ecs.Cluster(
        name,
        name=name,
        settings=[{"name": "containerInsights", "value": "enabled"}],
        opts=own.merge(pulumi.ResourceOptions(depends_on=[observe.container_insights])),
    )
    worker_sg = aws.ec2.SecurityGroup(
        f"{name}-workers",
        vpc_id=network.vpc_id,
        description="Consumer and scaler: no inbound",
        egress=[
            {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]}
        ],
        opts=own,
    )
    stream_arn = data.stream.arn

    def consumer_policy(efo: aws.kinesis.StreamConsumer | None, tables: list, app: str) -> Any:
        return pulumi.Output.all(
            stream_arn,
            efo.arn if efo is not None else None,
            [t.arn for t in tables],
            [data.records.arn, data.quarantine.arn],
        ).apply(lambda a: json.dumps(iam.consumer_policy(a[0], a[1], a[2], a[3], app)))

    env = environments(s, region, data)
    keys = ApiKeys(name, ApiKeysArgs(s.api_key_secret_arn), opts) if s.require_api_key else None
    private = [x.id for x in network.private_subnets]
    common = dict(cluster_arn=cluster.arn, subnet_ids=private, cpu_architecture=architecture)
    services: dict[str, FargateService] = {}

    def service(svc: str, image: str, policy: Any, environment: dict, **spec: Any) -> None:
        services[svc] = FargateService(
            f"{name}-{svc}",
            ServiceArgs(
                image=images.refs[image],
                repository_arn=images.repositories[image].arn,
                log_group=observe.log_groups[svc],
                task_policy=policy,
                environment=environment,
                **common,
                **spec,
            ),
            opts,
        )

    service(
        "producer", "producer", stream_arn.apply(lambda a: json.dumps(iam.producer_policy(a))),
        env["producer"], cpu=s.producer_cpu, memory=s.producer_memory,
        min_tasks=s.producer_min_tasks, max_tasks=s.producer_max_tasks,
        cpu_target_percent=s.cpu_target_percent, security_group_id=ingest.producer_sg.id,
        health_check=PRODUCER_HEALTH_CHECK, port=PRODUCER_PORT,
        target_group_arn=ingest.target_group.arn,
        depends_on=[ingest.listener, *(keys.ready if keys else [])],
        secrets={KEYS_VARIABLE: keys.value_from} if keys else {},
        secret_arns=[keys.secret_arn] if keys else [],
    )  # fmt: skip
    consumer_spec: dict[str, Any] = dict(
        cpu=s.consumer_cpu, memory=s.consumer_memory, security_group_id=worker_sg.id,
        health_check=CONSUMER_HEALTH_CHECK,
    )  # fmt: skip
    service(
        "consumer", "consumer",
        consumer_policy(data.efo_consumer, data.kcl_tables, s.application_name),
        env["consumer"], min_tasks=s.consumer_min_tasks, max_tasks=s.consumer_max_tasks,
        cpu_target_percent=s.cpu_target_percent,
        lag_metric=consumer_lag_metric(s.application_name),
        lag_target_ms=s.consumer_lag_target_seconds * 1000, max_tasks_followed=provisioned,
        **consumer_spec,
    )  # fmt: skip
    if provisioned:  # on demand: Kinesis sizes the stream, there is nothing to scale
        consumer = services["consumer"]
        assert consumer.scaling_target is not None and data.scaler_state is not None
        assert notify.scaling_topic is not None
        # Application Auto Scaling's name for it, and its ARN for ecs:* (cluster/ -> service/)
        resource_id = pulumi.Output.concat("service/", cluster.name, "/", consumer.service.name)
        service_arn = pulumi.Output.all(cluster.arn, consumer.service.name).apply(
            lambda a: a[0].replace(":cluster/", ":service/", 1) + "/" + a[1]
        )
        scaler_policy = pulumi.Output.all(
            stream_arn, data.scaler_state.arn, notify.scaling_topic.arn,
            consumer.scaling_target.arn, service_arn,
        ).apply(lambda a: json.dumps(iam.scaler_policy(*a)))  # fmt: skip
        scaler_env = {**env["scaler"], "SCALER_NOTIFICATION_TOPIC_ARN": notify.scaling_topic.arn,
                      "SCALER_CONSUMER_SERVICE": resource_id}  # fmt: skip
        service(
            "scaler", "scaler", scaler_policy, scaler_env, cpu=256, memory=512, min_tasks=1,
            max_tasks=1, cpu_target_percent=None, security_group_id=worker_sg.id,
            health_check=SCALER_HEALTH_CHECK,
            single_instance=True,  # two scalers must never reshard at once
        )  # fmt: skip
    if since is not None:  # a second application reading from `since` into the same table
        service(
            "rebuild", "consumer",
            consumer_policy(data.rebuild_efo_consumer, data.rebuild_tables, rebuild_app),
            {**env["consumer"], **rebuild_environment(s.application_name, since)},
            min_tasks=s.rebuild_tasks, max_tasks=s.rebuild_tasks, cpu_target_percent=None,
            **consumer_spec,
        )  # fmt: skip
    inputs = pulumi.Output.all(
        data.stream.name,
        cluster.name,
        ingest.alb.arn_suffix,
        ingest.target_group.arn_suffix,
        data.records.name,
        *[x.service.name for x in services.values()],
    ).apply(
        lambda a: DashboardInputs(
            region,
            a[0],
            s.application_name,
            a[1],
            dict(zip(services, a[5:], strict=True)),
            a[2],
            a[3],
            a[4],
            scaler=provisioned,
        )
    )
    dashboard = observe.add_dashboard(inputs)
    alarms = observe.add_alarms(
        data.stream.name,
        s.application_name,
        ingest.target_group.arn_suffix,
        ingest.alb.arn_suffix,
        data.records.name,
        notify.alarm_topic,
        retention_hours=s.retention_hours,
        retrieval_mode=s.consumer_retrieval_mode,
    )
    dashboard_url = pulumi.Output.concat(
        "https://",
        region,
        ".console.aws.amazon.com/cloudwatch/home?region=",
        region,
        "#dashboards:name=",
        dashboard.dashboard_name,
    )
    return Stack(
        ingest.url,
        dashboard_url,
        data.stream.name,
        data.records.name,
        data.quarantine.name,
        services,
        region,
        s.application_name,
        pulumi.Output.all(*[a.name for a in alarms]),
        notify.scaling_topic.arn if notify.scaling_topic is not None else None,
        rebuild_app,
        keys.secret_arn if keys else None,
        cluster.name,
    )


def export(stack: Stack) -> None:
    """The stack outputs: what a user and ``python -m infra.smoke`` read after ``pulumi up``."""
    pulumi.export("url", stack.url)
    pulumi.export("dashboard_url", stack.dashboard_url)
    pulumi.export("stream_name", stack.stream_name)
    pulumi.export("records_table", stack.records_table)
    pulumi.export("quarantine_table", stack.quarantine_table)
    pulumi.export("region", stack.region)
    pulumi.export("application_name", stack.application_name)
    pulumi.export("alarm_names", stack.alarm_names)
    pulumi.export("scaling_topic_arn", stack.scaling_topic_arn)
    pulumi.export("rebuild_application", stack.rebuild_application)
    # where the keys are, not what they are (README "API keys": fetch one with the AWS CLI)
    pulumi.export("api_key_secret_arn", stack.api_key_secret_arn)
    # what `aws ecs update-service --force-new-deployment` needs after a key rotation
    pulumi.export("cluster", stack.cluster_name)
    pulumi.export("producer_service", stack.services["producer"].service.name)
