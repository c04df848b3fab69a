"""The way in: an internet-facing ALB that admits only the configured CIDR, HTTPS when a
certificate is given (HTTP then redirects), a target group of type ip with the producer's
health check, and the security group that lets only the ALB reach the producer tasks."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

PRODUCER_PORT = 8080


@dataclass
class IngestArgs:
    vpc_id: pulumi.Input[str]
    public_subnet_ids: list[pulumi.Input[str]]
    allowed_cidr: str
    certificate_arn: str


class Ingest(pulumi.ComponentResource):
    def __init__(self, name: str, args: IngestArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kinesis-ingest:ingest:Ingest", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        https = bool(args.certificate_arn)
        ports = [80, 443] if https else [80]
        self.alb_sg = aws.ec2.SecurityGroup(
            f"{name}-alb",
            vpc_id=args.vpc_id,
            description="Clients in the allowed CIDR to the load balancer",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": p,
                    "to_port": p,
                    "cidr_blocks": [args.allowed_cidr],
                }
                for p in ports
            ],
            opts=child,
        )
        self.producer_sg = aws.ec2.SecurityGroup(
            f"{name}-producer",
            vpc_id=args.vpc_id,
            description="The load balancer to the producer tasks; tasks out to AWS APIs",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": PRODUCER_PORT,
                    "to_port": PRODUCER_PORT,
                    "security_groups": [self.alb_sg.id],
                }
            ],
            egress=[
                {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]}
            ],
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-alb-to-producer",
            security_group_id=self.alb_sg.id,
            ip_protocol="tcp",
            from_port=PRODUCER_PORT,
            to_port=PRODUCER_PORT,
            referenced_security_group_id=self.producer_sg.id,
            opts=child,
        )
        self.alb = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=False,
            subnets=args.public_subnet_ids,
            security_groups=[self.alb_sg.id],
            drop_invalid_header_fields=True,
            idle_timeout=60,
            opts=child,
        )
        self.target_group = aws.lb.TargetGroup(
            f"{name}-producer",
            port=PRODUCER_PORT,
            protocol="HTTP",
            target_type="ip",
            vpc_id=args.vpc_id,
            deregistration_delay=30,
            health_check={
                "path": "/ready",
                "matcher": "200",
                "interval": 10,
                "timeout": 5,
                "healthy_threshold": 2,
                "unhealthy_threshold": 2,
            },
            opts=child,
        )
        forward = [{"type": "forward", "target_group_arn": self.target_group.arn}]
        if https:
            self.listener = aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=self.alb.arn,
                port=443,
                protocol="HTTPS",
                ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06",
                certificate_arn=args.certificate_arn,
                default_actions=forward,
                opts=child,
            )
            aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=self.alb.arn,
                port=80,
                protocol="HTTP",
                default_actions=[
                    {
                        "type": "redirect",
                        "redirect": {"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"},
                    }
                ],
                opts=child,
            )
        else:
            self.listener = aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=self.alb.arn,
                port=80,
                protocol="HTTP",
                default_actions=forward,
                opts=child,
            )
        scheme = "https" if https else "http"
        self.url = pulumi.Output.concat(scheme, "://", self.alb.dns_name, "/")
        self.register_outputs({"url": self.url})
