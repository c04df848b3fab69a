"""The whole stack from settings: what ``__main__`` runs and the infra tests build under mocks."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.components.data import Data, DataArgs
from infra.components.images import Images, ImagesArgs
from infra.components.ingest import PRODUCER_PORT, Ingest, IngestArgs
from infra.components.network import Network, NetworkArgs
from infra.components.observability import DashboardInputs, Observability, ObservabilityArgs
from infra.components.service import FargateService, ServiceArgs
from infra.settings import InfraSettings

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
            "CONSUMER_RETRIEVAL_MODE": "FANOUT",
            "CONSUMER_METRICS_LEVEL": "SUMMARY",
            "CONSUMER_SHUTDOWN_GRACE_MILLIS": str(CONSUMER_SHUTDOWN_GRACE_MILLIS),
            "CONSUMER_PROPERTIES_PATH": "/tmp/consumer.properties",
        },
        "scaler": {
            "SCALER_STREAM_NAME": data.stream.name,
            "SCALER_REGION": region,
            "SCALER_METRICS_SOURCE": "cloudwatch",
            "SCALER_SHARD_LEVEL_METRICS": str(s.shard_level_metrics).lower(),
            "SCALER_MIN_SHARDS": str(s.min_shards),
            "SCALER_MAX_SHARDS": str(s.max_shards),
            "SCALER_DRY_RUN": str(s.scaler_dry_run).lower(),
        },
    }


def build(s: InfraSettings, name: str, version: str) -> Stack:
    if not s.application_name:
        s = s.model_copy(update={"application_name": f"{name}-consumer"})
    # Every AWS resource gets the stack's tags through this provider's default_tags.
    provider = aws.Provider(f"{name}-aws", default_tags={"tags": tags(name)})
    opts = pulumi.ResourceOptions(providers=[provider])
    region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(provider=provider)).region
    network = Network(
        name, NetworkArgs(s.vpc_cidr, s.az_count, s.single_nat_gateway, s.interface_endpoints), opts
    )
    data = Data(
        name,
        DataArgs(s.shard_count, s.retention_hours, s.shard_level_metrics, s.application_name),
        opts,
    )
    images = Images(name, ImagesArgs(version), opts)
    observe = Observability(name, ObservabilityArgs(s.log_retention_days, s.alarm_email), opts)
    ingest = Ingest(
        name,
        IngestArgs(
            network.vpc_id,
            [x.id for x in network.public_subnets],
            s.allowed_cidr,
            s.certificate_arn,
        ),
        opts,
    )
    own = pulumi.ResourceOptions(provider=provider)
    cluster = aws.ecs.Cluster(
        name, settings=[{"name": "containerInsights", "value": "enabled"}], opts=own
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
    policies = {
        "producer": stream_arn.apply(lambda a: json.dumps(iam.producer_policy(a))),
        "consumer": pulumi.Output.all(
            stream_arn,
            data.efo_consumer.arn,
            [t.arn for t in data.kcl_tables],
            [data.records.arn, data.quarantine.arn],
        ).apply(
            lambda a: json.dumps(iam.consumer_policy(a[0], a[1], a[2], a[3], s.application_name))
        ),
        "scaler": stream_arn.apply(lambda a: json.dumps(iam.scaler_policy(a))),
    }
    env = environments(s, region, data)
    private = [x.id for x in network.private_subnets]
    specs = {
        "producer": dict(
            cpu=s.producer_cpu,
            memory=s.producer_memory,
            min_tasks=s.producer_min_tasks,
            max_tasks=s.producer_max_tasks,
            cpu_target_percent=s.cpu_target_percent,
            security_group_id=ingest.producer_sg.id,
            health_check=PRODUCER_HEALTH_CHECK,
            port=PRODUCER_PORT,
            target_group_arn=ingest.target_group.arn,
            depends_on=[ingest.listener],
        ),
        "consumer": dict(
            cpu=s.consumer_cpu,
            memory=s.consumer_memory,
            min_tasks=s.consumer_min_tasks,
            max_tasks=s.consumer_max_tasks,
            cpu_target_percent=s.cpu_target_percent,
            security_group_id=worker_sg.id,
            health_check=CONSUMER_HEALTH_CHECK,
        ),
        "scaler": dict(
            cpu=256,
            memory=512,
            min_tasks=1,
            max_tasks=1,
            cpu_target_percent=None,
            security_group_id=worker_sg.id,
            health_check=SCALER_HEALTH_CHECK,
        ),
    }
    services = {
        svc: FargateService(
            f"{name}-{svc}",
            ServiceArgs(
                cluster_arn=cluster.arn,
                image=images.refs[svc],
                repository_arn=images.repositories[svc].arn,
                log_group=observe.log_groups[svc],
                task_policy=policies[svc],
                environment=env[svc],
                subnet_ids=private,
                **spec,
            ),
            opts,
        )
        for svc, spec in specs.items()
    }
    inputs = pulumi.Output.all(
        region,
        data.stream.name,
        cluster.name,
        ingest.alb.arn_suffix,
        ingest.target_group.arn_suffix,
        data.records.name,
        *[x.service.name for x in services.values()],
    ).apply(
        lambda a: DashboardInputs(
            a[0],
            a[1],
            s.application_name,
            a[2],
            dict(zip(services, a[6:], strict=True)),
            a[3],
            a[4],
            a[5],
        )
    )
    dashboard = observe.add_dashboard(inputs)
    observe.add_alarms(
        data.stream.name,
        s.application_name,
        ingest.target_group.arn_suffix,
        ingest.alb.arn_suffix,
        data.records.name,
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
    )
