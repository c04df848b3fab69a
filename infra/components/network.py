"""VPC with public and private subnets in N AZs, NAT for the tasks, VPC endpoints."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

GATEWAY_ENDPOINTS = ("dynamodb", "s3")  # free; DynamoDB and ECR's image layers (S3)
# Paid per AZ-hour: worth it for the traffic that would cross the NAT otherwise (every
# record twice through Kinesis, image pulls, logs, metrics).
INTERFACE_ENDPOINTS = ("kinesis-streams", "ecr.api", "ecr.dkr", "logs", "monitoring")


@dataclass
class NetworkArgs:
    cidr: str
    az_count: int
    single_nat_gateway: bool
    interface_endpoints: bool


class Network(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kinesis-ingest:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        zones = aws.get_availability_zones_output(
            state="available", opts=pulumi.InvokeOutputOptions(parent=self)
        ).names
        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{name}-vpc"},
            opts=child,
        )
        # public subnets from the lower half of the VPC's /24s, private from the upper half
        # (index 128 + i in a /16, 8 + i in a /20: a /20 has only 16)
        subnets = list(ipaddress.ip_network(args.cidr).subnets(new_prefix=24))
        half = len(subnets) // 2
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, opts=child)
        # Whatever needs the internet gateway attached waits for it: an EIP for a NAT gateway,
        # the NAT gateway, and (through ``public_ready``) the internet-facing ALB. Otherwise
        # the first deploy can race: "InvalidSubnet ... has no Internet gateway attached"
        # (terraform-provider-aws docs for aws_eip and aws_nat_gateway recommend depends_on
        # the internet gateway).
        after_igw = child.merge(pulumi.ResourceOptions(depends_on=[igw]))
        public_rt = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=self.vpc.id,
            opts=child,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
        )
        self.public_subnets: list[aws.ec2.Subnet] = []
        self.private_subnets: list[aws.ec2.Subnet] = []
        private_rts: list[aws.ec2.RouteTable] = []
        nats: list[aws.ec2.NatGateway] = []
        public_routes: list[aws.ec2.RouteTableAssociation] = []
        for i in range(args.az_count):
            public = self._subnet(f"{name}-public-{i}", subnets[i], zones[i], child)
            public_routes.append(
                aws.ec2.RouteTableAssociation(
                    f"{name}-public-{i}",
                    subnet_id=public.id,
                    route_table_id=public_rt.id,
                    opts=child,
                )
            )
            private = self._subnet(f"{name}-private-{i}", subnets[half + i], zones[i], child)
            if i == 0 or not args.single_nat_gateway:
                eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", opts=after_igw)
                nats.append(
                    aws.ec2.NatGateway(
                        f"{name}-nat-{i}",
                        subnet_id=public.id,
                        allocation_id=eip.id,
                        opts=after_igw,
                    )
                )
            rt = aws.ec2.RouteTable(
                f"{name}-private-{i}",
                vpc_id=self.vpc.id,
                opts=child,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nats[-1].id}],
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}", subnet_id=private.id, route_table_id=rt.id, opts=child
            )
            self.public_subnets.append(public)
            self.private_subnets.append(private)
            private_rts.append(rt)
        for service in GATEWAY_ENDPOINTS:
            aws.ec2.VpcEndpoint(
                f"{name}-{service}",
                vpc_id=self.vpc.id,
                service_name=pulumi.Output.concat("com.amazonaws.", region, f".{service}"),
                vpc_endpoint_type="Gateway",
                route_table_ids=[rt.id for rt in private_rts],
                opts=child,
            )
        if args.interface_endpoints:
            endpoint_sg = aws.ec2.SecurityGroup(
                f"{name}-endpoints",
                vpc_id=self.vpc.id,
                description="HTTPS from inside the VPC to the AWS service endpoints",
                ingress=[
                    {
                        "protocol": "tcp",
                        "from_port": 443,
                        "to_port": 443,
                        "cidr_blocks": [args.cidr],
                    }
                ],
                egress=[],
                opts=child,
            )
            for service in INTERFACE_ENDPOINTS:
                aws.ec2.VpcEndpoint(
                    f"{name}-{service.replace('.', '-')}",
                    vpc_id=self.vpc.id,
                    service_name=pulumi.Output.concat("com.amazonaws.", region, f".{service}"),
                    vpc_endpoint_type="Interface",
                    private_dns_enabled=True,
                    subnet_ids=[s.id for s in self.private_subnets],
                    security_group_ids=[endpoint_sg.id],
                    opts=child,
                )
        self.vpc_id = self.vpc.id
        # what an internet-facing load balancer in the public subnets must wait for
        self.public_ready: list[pulumi.Resource] = [igw, public_rt, *public_routes]
        self.register_outputs({"vpc_id": self.vpc.id})

    def _subnet(
        self, name: str, cidr: Any, zone: pulumi.Input[str], opts: pulumi.ResourceOptions
    ) -> aws.ec2.Subnet:
        """A subnet of the VPC in ``zone``; no instance in it gets a public IP by default."""
        return aws.ec2.Subnet(
            name,
            vpc_id=self.vpc.id,
            cidr_block=str(cidr),
            availability_zone=zone,
            map_public_ip_on_launch=False,
            opts=opts,
        )
