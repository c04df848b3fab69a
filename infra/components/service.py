"""One ECS Fargate service: task role (given policy), execution role, task definition with its
log group, health check and stop timeout, the service in private subnets without public IPs,
deployment circuit breaker with rollback, and optional CPU target tracking."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import iam

STOP_TIMEOUT_SECONDS = 120  # Fargate's maximum: the producer drains, the KCL checkpoints
RUN_AS = "10001:10001"  # the images' unprivileged user (docker/*.Dockerfile)
# The one writable place of a task whose root filesystem is read-only: a bind mount on the
# task's ephemeral storage (ECS Developer Guide, "Use bind mounts with Amazon ECS": a volume
# without ``host`` on Fargate). The images declare ``VOLUME /tmp`` so it starts as the image's
# world-writable, sticky /tmp rather than root's 0755. What writes there: the consumer's
# rendered KCL properties and processor heartbeats, the JVM's hsperfdata and Netty's native
# libraries (java.io.tmpdir), the scaler's heartbeat, the producer workers' shared counts
# (a temporary directory, producer/__main__.py).
TMP_VOLUME = "tmp"
TMP_PATH = "/tmp"
TrackingConfig = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgsDict


@dataclass
class ServiceArgs:
    cluster_arn: pulumi.Input[str]
    image: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    log_group: aws.cloudwatch.LogGroup
    task_policy: pulumi.Input[str]  # JSON policy document for the task role
    environment: dict[str, pulumi.Input[str]]
    subnet_ids: list[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    cpu: int
    memory: int
    min_tasks: int
    max_tasks: int
    cpu_target_percent: float | None  # None: a fixed count of min_tasks (no autoscaling)
    health_check: list[str] | None = None
    port: int | None = None
    target_group_arn: pulumi.Input[str] | None = None
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    cpu_architecture: str = "X86_64"  # or ARM64 (Graviton): the image must be built for it
    # One at a time (the scaler): 0/100 stops the old task before the new one starts, so two
    # never act on the stream at once. Others: 100/200, a new task is healthy before the old
    # one stops.
    single_instance: bool = False
    # a second target tracking policy on a lag metric (namespace, metric, dimensions,
    # statistic) and its target: the service scales out on whichever needs more tasks, and in
    # only when both allow it (Application Auto Scaling, "Multiple target tracking policies")
    lag_metric: tuple[str, str, dict[str, str], str] | None = None
    lag_target_ms: float = 30_000
    # the scaler sets the maximum task count from then on (it follows the open shards)
    max_tasks_followed: bool = False
    # variable -> the ``valueFrom`` of a Secrets Manager secret (ECS reads it when the task
    # starts, with the execution role, which may read ``secret_arns`` and nothing else)
    secrets: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    secret_arns: list[pulumi.Input[str]] = field(default_factory=list)


class FargateService(pulumi.ComponentResource):
    def __init__(self, name: str, args: ServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kinesis-ingest:ecs:FargateService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        assume = json.dumps(iam.assume_role())
        self.task_role = aws.iam.Role(f"{name}-task", assume_role_policy=assume, opts=child)
        task_policy = aws.iam.RolePolicy(
            f"{name}-task", role=self.task_role.id, policy=args.task_policy, opts=child
        )
        self.execution_role = aws.iam.Role(
            f"{name}-execution", assume_role_policy=assume, opts=child
        )
        execution_policy = pulumi.Output.all(
            args.repository_arn, args.log_group.arn, pulumi.Output.all(*args.secret_arns)
        ).apply(lambda a: json.dumps(iam.execution_policy([a[0]], [a[1]], a[2])))
        pull_policy = aws.iam.RolePolicy(
            f"{name}-execution", role=self.execution_role.id, policy=execution_policy, opts=child
        )
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        containers = pulumi.Output.all(
            image=args.image,
            log_group=args.log_group.name,
            region=region,
            env=pulumi.Output.all(**args.environment),
            secrets=pulumi.Output.all(**args.secrets) if args.secrets else {},
        ).apply(lambda a: json.dumps([self._container(name, args, a)]))
        self.task_definition = aws.ecs.TaskDefinition(
            f"{name}",
            family=name,
            cpu=str(args.cpu),
            memory=str(args.memory),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform={
                "operating_system_family": "LINUX",
                "cpu_architecture": args.cpu_architecture,
            },
            execution_role_arn=self.execution_role.arn,
            task_role_arn=self.task_role.arn,
            container_definitions=containers,
            volumes=[{"name": TMP_VOLUME}],
            # the roles' inline policies exist before a task can start: a task started first
            # would pull and call AWS with a role that has no permission yet (IAM is
            # eventually consistent too, but this removes the ordering race)
            opts=child.merge(pulumi.ResourceOptions(depends_on=[task_policy, pull_policy])),
        )
        load_balancers: list[aws.ecs.ServiceLoadBalancerArgsDict] = []
        if args.target_group_arn is not None:
            assert args.port is not None, "a service behind a load balancer listens on a port"
            load_balancers = [
                {
                    "target_group_arn": args.target_group_arn,
                    "container_name": name,
                    "container_port": args.port,
                }
            ]
        self.service = aws.ecs.Service(
            f"{name}",
            cluster=args.cluster_arn,
            task_definition=self.task_definition.arn,
            desired_count=args.min_tasks,
            launch_type="FARGATE",
            network_configuration={
                "subnets": args.subnet_ids,
                "assign_public_ip": False,
                "security_groups": [args.security_group_id],
            },
            deployment_circuit_breaker={"enable": True, "rollback": True},
            deployment_minimum_healthy_percent=0 if args.single_instance else 100,
            deployment_maximum_percent=100 if args.single_instance else 200,
            load_balancers=load_balancers,
            propagate_tags="SERVICE",
            health_check_grace_period_seconds=60 if load_balancers else None,
            # `pulumi up` fails when tasks crash-loop instead of reporting success (the
            # circuit breaker rolls back; this makes the deploy wait for it)
            wait_for_steady_state=True,
            opts=child.merge(
                pulumi.ResourceOptions(depends_on=args.depends_on, ignore_changes=["desired_count"])
            ),
        )
        self.scaling_target: aws.appautoscaling.Target | None = None
        if args.cpu_target_percent is not None:
            self.scaling_target = self._autoscale(name, args, child)
        self.register_outputs({"service": self.service.name})

    @staticmethod
    def _container(name: str, args: ServiceArgs, a: dict[str, Any]) -> dict[str, Any]:
        container: dict[str, Any] = {
            "name": name,
            "image": a["image"],
            "essential": True,
            "environment": [{"name": k, "value": str(v)} for k, v in sorted(a["env"].items())],
            "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(a["secrets"].items())],
            "stopTimeout": STOP_TIMEOUT_SECONDS,
            # Hardening. Fargate has no ``no-new-privileges`` (dockerSecurityOptions "isn't
            # valid for containers in tasks using the Fargate launch type", ECS API Reference,
            # ContainerDefinition), so escalation is closed this way: a non-root user, not
            # privileged, every capability dropped (KernelCapabilities: with drop ALL "the
            # container capabilities are the capabilities specified in the add request
            # parameter", here none), no setuid/setgid file in the images, and a read-only
            # root filesystem with one writable tmp volume.
            "user": RUN_AS,
            "privileged": False,
            "readonlyRootFilesystem": True,
            "mountPoints": [
                {"sourceVolume": TMP_VOLUME, "containerPath": TMP_PATH, "readOnly": False}
            ],
            "linuxParameters": {"capabilities": {"add": [], "drop": ["ALL"]}},
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": a["log_group"],
                    "awslogs-region": a["region"],
                    "awslogs-stream-prefix": name,
                    "mode": "non-blocking",
                    "max-buffer-size": "25m",
                },
            },
        }
        if args.port is not None:
            container["portMappings"] = [{"containerPort": args.port, "protocol": "tcp"}]
        if args.health_check is not None:
            container["healthCheck"] = {
                "command": args.health_check,
                "interval": 30,
                "timeout": 5,
                "retries": 3,
                "startPeriod": 120,
            }
        return container

    def _autoscale(
        self, name: str, args: ServiceArgs, child: pulumi.ResourceOptions
    ) -> aws.appautoscaling.Target:
        assert args.cpu_target_percent is not None  # called only for a service that scales
        resource_id = pulumi.Output.concat(
            "service/",
            pulumi.Output.from_input(args.cluster_arn).apply(lambda a: a.split("/")[-1]),
            "/",
            self.service.name,
        )
        target = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=resource_id,
            min_capacity=args.min_tasks,
            max_capacity=args.max_tasks,
            # created with max_tasks; then the scaler moves it with the open shard count
            opts=child.merge(pulumi.ResourceOptions(ignore_changes=["max_capacity"]))
            if args.max_tasks_followed
            else child,
        )

        def tracking(suffix: str, metric: TrackingConfig) -> None:
            aws.appautoscaling.Policy(
                f"{name}-{suffix}",
                policy_type="TargetTrackingScaling",
                service_namespace=target.service_namespace,
                resource_id=target.resource_id,
                scalable_dimension=target.scalable_dimension,
                target_tracking_scaling_policy_configuration={
                    **metric,
                    "scale_in_cooldown": 300,
                    "scale_out_cooldown": 60,
                },
                opts=child,
            )

        tracking(
            "cpu",
            {
                "target_value": args.cpu_target_percent,
                "predefined_metric_specification": {
                    "predefined_metric_type": "ECSServiceAverageCPUUtilization"
                },
            },
        )
        if args.lag_metric is not None:
            namespace, metric, dimensions, statistic = args.lag_metric
            tracking(
                "lag",
                {
                    "target_value": args.lag_target_ms,
                    "customized_metric_specification": {
                        "namespace": namespace,
                        "metric_name": metric,
                        "dimensions": [{"name": k, "value": v} for k, v in dimensions.items()],
                        "statistic": statistic,
                    },
                },
            )
        return target
