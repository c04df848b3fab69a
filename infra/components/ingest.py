"""The way in: an internet-facing ALB that admits only the configured CIDR, HTTPS when a
certificate is given (HTTP then redirects), a target group of type ip with the producer's
health check, and the security group that lets only the ALB reach the producer tasks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from producer.config import ProducerSettings

PRODUCER_PORT = 8080
# The ALB closes a connection idle this long; the producer's keep-alive must be longer, or the
# producer may close a connection the ALB is just reusing: a 502 ("HTTP 502 ... the target
# closed the connection", ALB User Guide, "Troubleshoot your Application Load Balancers";
# "Connection idle timeout": configure the application's keep-alive greater than the ALB's).
ALB_IDLE_TIMEOUT_SECONDS = 60
# A request may wait for Kinesis up to the record TTL before it is answered (503 then): the
# target group keeps routing nothing new but lets requests in flight finish for longer than
# that before ECS stops the task (ECS waits for the deregistration delay before SIGTERM).
RECORD_TTL_SECONDS = math.ceil(ProducerSettings.model_fields["record_ttl_ms"].default / 1000)
DEREGISTRATION_DELAY_SECONDS = RECORD_TTL_SECONDS + 15
INTERNAL_PATHS = ("/metrics", "/metrics/*")
# AWS WAF Developer Guide, "Rate-based rule high-level settings": the evaluation window is
# 60, 120, 300 or 600 s (300 by default); aggregated per client IP (aggregate key IP).
WAF_WINDOW_SECONDS = 300


@dataclass
class LoadBalancerArgs:
    vpc_id: pulumi.Input[str]
    public_subnet_ids: list[pulumi.Input[str]]
    allowed_cidr: str
    certificate_arn: str
    waf_rate_limit: int = 0  # requests per client IP in 5 minutes; 0: no web ACL
    # the internet gateway and the public routes: an internet-facing ALB needs them first
    depends_on: list[pulumi.Resource] = field(default_factory=list)


class LoadBalancer(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None
    ):
        # the type token predates the class's name (the API's ``Ingest`` is the other one):
        # changing it would change every child's URN, i.e. replace the deployed load balancer
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
            idle_timeout=ALB_IDLE_TIMEOUT_SECONDS,
            opts=child.merge(pulumi.ResourceOptions(depends_on=args.depends_on)),
        )
        self.target_group = aws.lb.TargetGroup(
            f"{name}-producer",
            port=PRODUCER_PORT,
            protocol="HTTP",
            target_type="ip",
            vpc_id=args.vpc_id,
            deregistration_delay=DEREGISTRATION_DELAY_SECONDS,
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
        redirect = {"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}
        # HTTP forwards, or with a certificate redirects to HTTPS, which forwards
        http = [{"type": "redirect", "redirect": redirect}] if https else forward
        self.listener = self._listener(f"{name}-http", 80, http, child)
        if https:
            self.listener = self._listener(
                f"{name}-https", 443, forward, child,
                ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06",
                certificate_arn=args.certificate_arn,
            )  # fmt: skip
        # /metrics is for the inside (the local dashboard, scrapers in the VPC), never the
        # internet: the listener answers it itself. A path pattern is compared case-sensitively
        # with the path only, not the query string (CloudFormation reference, ListenerRule
        # PathPatternConfig; ALB User Guide, "Condition types for listener rules"); the producer
        # serves /metrics only for exactly that raw path, so an encoded or differently cased
        # path the ALB forwards is a 404 there too (producer/api/gate.py).
        aws.lb.ListenerRule(
            f"{name}-no-metrics",
            listener_arn=self.listener.arn,
            priority=1,
            conditions=[{"path_pattern": {"values": list(INTERNAL_PATHS)}}],
            actions=[
                {
                    "type": "fixed-response",
                    "fixed_response": {
                        "content_type": "application/json",
                        "status_code": "404",
                        "message_body": '{"error":"not_found","detail":"Not Found"}',
                    },
                }
            ],
            opts=child,
        )
        if args.waf_rate_limit:
            self._rate_limit(name, args.waf_rate_limit, child)
        scheme = "https" if https else "http"
        self.url = pulumi.Output.concat(scheme, "://", self.alb.dns_name, "/")
        self.register_outputs({"url": self.url})

    def _listener(
        self, name: str, port: int, actions: list[Any], opts: pulumi.ResourceOptions, **tls: Any
    ) -> aws.lb.Listener:
        """A listener of the load balancer; ``tls``: its certificate and policy (HTTPS)."""
        return aws.lb.Listener(
            name,
            load_balancer_arn=self.alb.arn,
            port=port,
            protocol="HTTPS" if tls else "HTTP",
            default_actions=actions,
            opts=opts,
            **tls,
        )

    def _rate_limit(self, name: str, limit: int, child: pulumi.ResourceOptions) -> None:
        """A regional web ACL on the ALB blocking a client IP over ``limit`` requests in
        ``WAF_WINDOW_SECONDS`` (then 403 from the ALB until its rate falls back)."""

        def visibility(metric: str) -> aws.wafv2.WebAclVisibilityConfigArgsDict:
            return {
                "cloudwatch_metrics_enabled": True,
                "metric_name": metric,
                "sampled_requests_enabled": True,
            }

        acl = aws.wafv2.WebAcl(
            f"{name}-waf",
            scope="REGIONAL",  # an ALB's web ACL is regional (CLOUDFRONT is for distributions)
            default_action={"allow": {}},
            rules=[
                {
                    "name": "per-ip-rate",
                    "priority": 0,
                    "action": {"block": {}},
                    "statement": {
                        "rate_based_statement": {
                            "limit": limit,
                            "aggregate_key_type": "IP",
                            "evaluation_window_sec": WAF_WINDOW_SECONDS,
                        }
                    },
                    "visibility_config": visibility(f"{name}-per-ip-rate"),
                }
            ],
            visibility_config=visibility(f"{name}-waf"),
            opts=child,
        )
        aws.wafv2.WebAclAssociation(
            f"{name}-waf", resource_arn=self.alb.arn, web_acl_arn=acl.arn, opts=child
        )
