"""The whole stack from settings: what ``__main__`` runs and the infra tests build under mocks."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from consumer.rebuild import rebuild_application, rebuild_environment
from infra import iam
from infra.components.data import Data, DataArgs
from infra.components.images import SERVICES, Images, ImagesArgs
from infra.components.ingest import PRODUCER_PORT, LoadBalancer, LoadBalancerArgs
from infra.components.logs import Logs, LogsArgs
from infra.components.network import Network, NetworkArgs
from infra.components.notifications import Notifications, NotificationsArgs
from infra.components.observability import Observability, ObservabilityArgs, consumer_lag_metric
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
    """The stack: its components wired together, each given what it needs by name."""
    if not s.application_name:
        s = s.model_copy(update={"application_name": f"{name}-consumer"})
    # Every AWS resource gets the stack's tags through this provider's default_tags; the
    # region is explicit (an explicit provider ignores the stack's aws:region).
    provider = aws.Provider(f"{name}-aws", region=region, default_tags={"tags": tags(name)})
    opts = pulumi.ResourceOptions(providers=[provider])
    provisioned = s.stream_mode == "provisioned"  # on demand: Kinesis sizes it, no scaler
    since = s.rebuild_moment()
    rebuild_app = rebuild_application(s.application_name, since) if since else ""
    network = Network(
        name,
        NetworkArgs(
            cidr=s.vpc_cidr,
            az_count=s.az_count,
            single_nat_gateway=s.single_nat_gateway,
            interface_endpoints=s.interface_endpoints,
        ),
        opts,
    )
    data = Data(
        name,
        DataArgs(
            shard_count=s.shard_count,
            retention_hours=s.retention_hours,
            shard_level_metrics=s.shard_level_metrics,
            application_name=s.application_name,
            on_demand=not provisioned,
            fan_out=s.consumer_retrieval_mode == "FANOUT",
            item_ttl=s.item_ttl_days > 0,
            scaler_state=provisioned,
            rebuild_application=rebuild_app,
        ),
        opts,
    )
    images = Images(name, ImagesArgs(version=version, architecture=s.cpu_architecture), opts)
    logs = Logs(
        name,
        LogsArgs(
            retention_days=s.log_retention_days,
            services=(*SERVICES, "rebuild") if rebuild_app else SERVICES,
            cluster_name=name,
        ),
        opts,
    )
    notify = Notifications(
        name,
        NotificationsArgs(
            alarm_email=s.alarm_email, scaling=provisioned, scaling_email=s.scaling_email
        ),
        opts,
    )
    entry = LoadBalancer(
        name,
        LoadBalancerArgs(
            vpc_id=network.vpc_id,
            public_subnet_ids=[x.id for x in network.public_subnets],
            allowed_cidr=s.allowed_cidr,
            certificate_arn=s.certificate_arn,
            waf_rate_limit=s.waf_rate_limit,
            depends_on=network.public_ready,
        ),
        opts,
    )
    keys = ApiKeys(name, ApiKeysArgs(s.api_key_secret_arn), opts) if s.require_api_key else None
    platform = _platform(name, provider, network, logs)
    wiring = Wiring(
        s=s, name=name, region=region, opts=opts, platform=platform, data=data, images=images,
        logs=logs, entry=entry, notify=notify, keys=keys, since=since, rebuild_app=rebuild_app,
    )  # fmt: skip
    services = _services(wiring)
    observe = Observability(
        name,
        ObservabilityArgs(
            region=region,
            application=s.application_name,
            stream=data.stream.name,
            records_table=data.records.name,
            cluster=platform.cluster.name,
            services={svc: x.service.name for svc, x in services.items()},
            alb_suffix=entry.alb.arn_suffix,
            target_group_suffix=entry.target_group.arn_suffix,
            scaler=provisioned,
            alarm_topic=notify.alarm_topic,
            retention_hours=s.retention_hours,
            retrieval_mode=s.consumer_retrieval_mode,
        ),
        opts,
    )
    return Stack(
        url=entry.url,
        dashboard_url=observe.dashboard_url,
        stream_name=data.stream.name,
        records_table=data.records.name,
        quarantine_table=data.quarantine.name,
        services=services,
        region=region,
        application_name=s.application_name,
        alarm_names=pulumi.Output.all(*[a.name for a in observe.alarms]),
        scaling_topic_arn=notify.scaling_topic.arn if notify.scaling_topic is not None else None,
        rebuild_application=rebuild_app,
        api_key_secret_arn=keys.secret_arn if keys else None,
        cluster_name=platform.cluster.name,
    )


@dataclass
class Platform:
    """Where the services run: the ECS cluster and the security group of the tasks nothing
    calls (consumer, scaler)."""

    cluster: aws.ecs.Cluster
    worker_sg: aws.ec2.SecurityGroup
    subnet_ids: list[pulumi.Input[str]]


def _platform(name: str, provider: aws.Provider, network: Network, logs: Logs) -> Platform:
    own = pulumi.ResourceOptions(provider=provider)
    insights = logs.container_insights
    assert insights is not None  # Logs is given the cluster's name (build)
    # Container Insights writes to its log group, created first (``Logs``) to be the stack's
    cluster = aws.ecs.Cluster(
        name,
        name=name,
        settings=[{"name": "containerInsights", "value": "enabled"}],
        opts=own.merge(pulumi.ResourceOptions(depends_on=[insights])),
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
    return Platform(cluster, worker_sg, [x.id for x in network.private_subnets])


@dataclass
class Wiring:
    """What the services are made from: the settings and the components they run on."""

    s: InfraSettings
    name: str
    region: str
    opts: pulumi.ResourceOptions
    platform: Platform
    data: Data
    images: Images
    logs: Logs
    entry: LoadBalancer
    notify: Notifications
    keys: ApiKeys | None
    since: datetime | None
    rebuild_app: str

    def service(
        self, svc: str, image: str, policy: Any, environment: dict, **spec: Any
    ) -> FargateService:
        return FargateService(
            f"{self.name}-{svc}",
            ServiceArgs(
                image=self.images.refs[image],
                repository_arn=self.images.repositories[image].arn,
                log_group=self.logs.groups[svc],
                task_policy=policy,
                environment=environment,
                cluster_arn=self.platform.cluster.arn,
                subnet_ids=self.platform.subnet_ids,
                cpu_architecture=ARCHITECTURES[self.s.cpu_architecture],
                **spec,
            ),
            self.opts,
        )

    def consumer_policy(
        self, efo: aws.kinesis.StreamConsumer | None, tables: list, application: str
    ) -> pulumi.Output[str]:
        data = self.data
        return pulumi.Output.all(
            stream=data.stream.arn,
            efo=efo.arn if efo is not None else None,
            tables=[t.arn for t in tables],
            writes=[data.records.arn, data.quarantine.arn],
        ).apply(
            lambda a: json.dumps(
                iam.consumer_policy(a["stream"], a["efo"], a["tables"], a["writes"], application)
            )
        )


def _services(w: Wiring) -> dict[str, FargateService]:
    """The producer and the consumer; the scaler with a provisioned stream; the rebuild
    application's consumer while one runs."""
    s, data, keys = w.s, w.data, w.keys
    env = environments(s, w.region, data)
    services = {
        "producer": w.service(
            "producer", "producer",
            data.stream.arn.apply(lambda a: json.dumps(iam.producer_policy(a))), env["producer"],
            cpu=s.producer_cpu, memory=s.producer_memory, min_tasks=s.producer_min_tasks,
            max_tasks=s.producer_max_tasks, cpu_target_percent=s.cpu_target_percent,
            security_group_id=w.entry.producer_sg.id, health_check=PRODUCER_HEALTH_CHECK,
            port=PRODUCER_PORT, target_group_arn=w.entry.target_group.arn,
            depends_on=[w.entry.listener, *(keys.ready if keys else [])],
            secrets={KEYS_VARIABLE: keys.value_from} if keys else {},
            secret_arns=[keys.secret_arn] if keys else [],
        ),
    }  # fmt: skip
    consumer_spec: dict[str, Any] = dict(
        cpu=s.consumer_cpu, memory=s.consumer_memory, security_group_id=w.platform.worker_sg.id,
        health_check=CONSUMER_HEALTH_CHECK,
    )  # fmt: skip
    provisioned = data.scaler_state is not None
    services["consumer"] = w.service(
        "consumer", "consumer",
        w.consumer_policy(data.efo_consumer, data.kcl_tables, s.application_name),
        env["consumer"], min_tasks=s.consumer_min_tasks, max_tasks=s.consumer_max_tasks,
        cpu_target_percent=s.cpu_target_percent,
        lag_metric=consumer_lag_metric(s.application_name),
        lag_target_ms=s.consumer_lag_target_seconds * 1000, max_tasks_followed=provisioned,
        **consumer_spec,
    )  # fmt: skip
    if provisioned:
        services["scaler"] = _scaler(w, services["consumer"], env["scaler"])
    if w.since is not None:  # a second application reading from `since` into the same table
        services["rebuild"] = w.service(
            "rebuild", "consumer",
            w.consumer_policy(data.rebuild_efo_consumer, data.rebuild_tables, w.rebuild_app),
            {**env["consumer"], **rebuild_environment(s.application_name, w.since)},
            min_tasks=s.rebuild_tasks, max_tasks=s.rebuild_tasks, cpu_target_percent=None,
            **consumer_spec,
        )  # fmt: skip
    return services


def _scaler(w: Wiring, consumer: FargateService, env: dict[str, Any]) -> FargateService:
    """The shard scaler: it reshards the stream and sets the consumer's maximum task count."""
    data, cluster, topic = w.data, w.platform.cluster, w.notify.scaling_topic
    assert consumer.scaling_target is not None and data.scaler_state is not None
    assert topic is not None
    # Application Auto Scaling's name for it, and its ARN for ecs:* (cluster/ -> service/)
    resource_id = pulumi.Output.concat("service/", cluster.name, "/", consumer.service.name)
    service_arn = pulumi.Output.all(cluster.arn, consumer.service.name).apply(
        lambda a: a[0].replace(":cluster/", ":service/", 1) + "/" + a[1]
    )
    policy = pulumi.Output.all(
        data.stream.arn, data.scaler_state.arn, topic.arn, consumer.scaling_target.arn,
        service_arn,
    ).apply(lambda a: json.dumps(iam.scaler_policy(*a)))  # fmt: skip
    return w.service(
        "scaler", "scaler", policy,
        {**env, "SCALER_NOTIFICATION_TOPIC_ARN": topic.arn,
         "SCALER_CONSUMER_SERVICE": resource_id},
        cpu=256, memory=512, min_tasks=1, max_tasks=1, cpu_target_percent=None,
        security_group_id=w.platform.worker_sg.id, health_check=SCALER_HEALTH_CHECK,
        single_instance=True,  # two scalers must never reshard at once
    )  # fmt: skip


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
