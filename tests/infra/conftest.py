"""Build the Pulumi program once under mocks and record every resource it declares."""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest

pulumi = pytest.importorskip("pulumi")

ACCOUNT = "123456789012"
REGION = "eu-west-1"


@dataclass
class Recorded:
    type: str
    name: str
    inputs: dict[str, Any]
    provider: str = ""


@dataclass
class Recorder(pulumi.runtime.Mocks):  # type: ignore[misc]
    resources: list[Recorded] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        self.resources.append(Recorded(args.typ, args.name, dict(args.inputs), args.provider or ""))
        outputs = dict(args.inputs)
        kind = args.typ.split(":")[1].split("/")[0]
        outputs.setdefault("arn", f"arn:aws:{kind}:{REGION}:{ACCOUNT}:{args.name}")
        outputs.setdefault("name", args.inputs.get("name", args.name))
        extra = {
            "aws:lb/loadBalancer:LoadBalancer": {
                "dnsName": f"{args.name}.elb.example",
                "arnSuffix": f"app/{args.name}/1",
            },
            "aws:lb/targetGroup:TargetGroup": {"arnSuffix": f"targetgroup/{args.name}/1"},
            "aws:ecr/repository:Repository": {
                "repositoryUrl": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{args.name}"
            },
            "docker-build:index:Image": {"digest": "sha256:" + "0" * 64},
            "aws:cloudwatch/dashboard:Dashboard": {
                "dashboardName": args.inputs.get("dashboardName", args.name)
            },
        }.get(args.typ, {})
        outputs.update(extra)
        return f"{args.name}-id", outputs

    def call(self, args: Any) -> dict[str, Any]:
        self.calls.append(args.token)
        return {
            "aws:index/getRegion:getRegion": {"name": REGION, "region": REGION, "id": REGION},
            "aws:index/getAvailabilityZones:getAvailabilityZones": {
                "names": [f"{REGION}{z}" for z in "abc"],
                "zoneIds": ["1", "2", "3"],
            },
            "aws:ecr/getAuthorizationToken:getAuthorizationToken": {
                "userName": "AWS",
                "password": "token",
                "proxyEndpoint": "https://ecr",
            },
        }.get(args.token, {})


@dataclass
class Built:
    resources: list[Recorded]
    outputs: dict[str, Any]

    def of(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name_part: str) -> Recorded:
        (found,) = [r for r in self.of(type_) if name_part in r.name]
        return found

    def policy(self, role_part: str) -> dict[str, Any]:
        policy = self.one("aws:iam/rolePolicy:RolePolicy", role_part).inputs["policy"]
        return json.loads(policy)


CONFIG = {"allowedCidr": "203.0.113.0/24"}
_LOOPS: list[asyncio.AbstractEventLoop] = []


def build_stack(values: dict[str, str]) -> Built:
    from infra import settings
    from infra.program import build

    recorder = Recorder()
    # Pulumi's test runner drives the current event loop (earlier asyncio.run calls leave
    # none); it stays current until the next build, which closes it.
    if _LOOPS:
        _LOOPS.pop().close()
    _LOOPS.append(asyncio.new_event_loop())
    asyncio.set_event_loop(_LOOPS[-1])
    pulumi.runtime.set_mocks(recorder, project="kinesis-ingest", stack="test", preview=False)
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> Any:
        stack = build(settings.load(values), "ingest-test", "v1")
        names = ("url", "dashboard_url", "stream", "records", "quarantine")
        exported = (
            stack.url,
            stack.dashboard_url,
            stack.stream_name,
            stack.records_table,
            stack.quarantine_table,
        )
        return pulumi.Output.all(*exported).apply(
            lambda a: outputs.update(zip(names, a, strict=True))
        )

    program()
    # Pulumi's runtime leaves event loops and sockets of its own behind; collect them here,
    # where their ResourceWarnings are known noise, not in whichever test runs next.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    return Built(recorder.resources, outputs)


@pytest.fixture(scope="session")
def built() -> Built:
    return build_stack(CONFIG)
