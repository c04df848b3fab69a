"""Log groups: one per service (with retention), and the one Container Insights writes to.

Created before the services (each task logs to its group from its first start) and the ECS
cluster (Container Insights creates its group unless it exists: created here first, it has our
retention and goes with ``pulumi destroy``; Amazon CloudWatch User Guide, "Container Insights",
the performance log events' log group).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi.resource import create_urn

# These log groups were children of the Observability component until the dashboard and alarms
# got a component of their own; the alias keeps a deployed stack's groups (and their logs)
# instead of replacing them.
FORMER_PARENT_TYPE = "kinesis-ingest:observability:Observability"


@dataclass
class LogsArgs:
    retention_days: int
    services: tuple[str, ...]  # a log group each
    cluster_name: str = ""  # the ECS cluster whose Container Insights log group we own


class Logs(pulumi.ComponentResource):
    def __init__(self, name: str, args: LogsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kinesis-ingest:logs:Logs", name, None, opts)
        child = pulumi.ResourceOptions(
            parent=self, aliases=[pulumi.Alias(parent=create_urn(name, FORMER_PARENT_TYPE))]
        )
        self.groups = {
            service: aws.cloudwatch.LogGroup(
                f"{name}-{service}",
                name=f"/ecs/{name}/{service}",
                retention_in_days=args.retention_days,
                opts=child,
            )
            for service in args.services
        }
        self.container_insights: aws.cloudwatch.LogGroup | None = None
        if args.cluster_name:
            self.container_insights = aws.cloudwatch.LogGroup(
                f"{name}-container-insights",
                name=f"/aws/ecs/containerinsights/{args.cluster_name}/performance",
                retention_in_days=args.retention_days,
                opts=child,
            )
        self.register_outputs({service: group.name for service, group in self.groups.items()})
