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
    depends_on: set[str] = field(default_factory=set)  # names of the resources it waits for
    ignore_changes: list[str] = field(default_factory=list)  # properties `pulumi up` leaves
    alias_parents: list[str] = field(default_factory=list)  # the parents it was a child of


SECRET_SUFFIX = "Ab12Cd"
CONSUMER_CREATED = 1_700_000_000  # the creation timestamp in a registered consumer's ARN


def _arn(typ: str, name: str, inputs: dict[str, Any]) -> str:
    """The ARN AWS gives a resource of this type (the shapes IAM policies are matched to)."""
    shapes = {
        "aws:kinesis/stream:Stream": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}",
        "aws:dynamodb/table:Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
        "aws:ecr/repository:Repository": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{name}",
        "aws:cloudwatch/logGroup:LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}",
        "aws:iam/role:Role": f"arn:aws:iam::{ACCOUNT}:role/{name}",
        "aws:ecs/cluster:Cluster": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{name}",
        "aws:sns/topic:Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}",
        # a scalable target's ARN ends in an id AWS draws, not in its resource id
        "aws:appautoscaling/target:Target": (
            f"arn:aws:application-autoscaling:{REGION}:{ACCOUNT}:scalable-target/{name}"
        ),
        "aws:kms/key:Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{name}",
        # Secrets Manager appends a hyphen and six random characters to the name
        "aws:secretsmanager/secret:Secret": (
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-{SECRET_SUFFIX}"
        ),
    }
    if typ == "aws:kinesis/streamConsumer:StreamConsumer":
        return f"{inputs['streamArn']}/consumer/{name}:{CONSUMER_CREATED}"
    kind = typ.split(":")[1].split("/")[0]
    return shapes.get(typ, f"arn:aws:{kind}:{REGION}:{ACCOUNT}:{name}")


class DependencyMonitor(pulumi.runtime.mocks.MockMonitor):  # type: ignore[misc, name-defined]  # pulumi: importorskip gives Any
    """The mock monitor, noting each resource's dependencies (explicit ``depends_on`` and
    those of its inputs) as the engine would receive them."""

    def __init__(self, mocks: Any) -> None:
        super().__init__(mocks)
        self.dependencies: dict[tuple[str, str], set[str]] = {}
        self.ignored: dict[tuple[str, str], list[str]] = {}
        self.alias_parents: dict[tuple[str, str], list[str]] = {}

    def RegisterResource(self, request: Any) -> Any:
        names = {urn.split("::")[-1] for urn in request.dependencies}
        self.dependencies[(request.type, request.name)] = names
        self.ignored[(request.type, request.name)] = list(request.ignoreChanges)
        self.alias_parents[(request.type, request.name)] = [
            a.spec.parentUrn for a in request.aliases if a.HasField("spec")
        ]
        return super().RegisterResource(request)


@dataclass
class Recorder(pulumi.runtime.Mocks):  # type: ignore[misc, name-defined]  # pulumi: importorskip gives Any
    resources: list[Recorded] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        self.resources.append(Recorded(args.typ, args.name, dict(args.inputs), args.provider or ""))
        outputs = dict(args.inputs)
        outputs.setdefault("name", args.inputs.get("name", args.name))
        outputs.setdefault("arn", _arn(args.typ, outputs["name"], args.inputs))
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
        answers: dict[str, dict[str, Any]] = {
            "aws:index/getRegion:getRegion": {"name": REGION, "region": REGION, "id": REGION},
            "aws:index/getAvailabilityZones:getAvailabilityZones": {
                "names": [f"{REGION}{z}" for z in "abc"],
                "zoneIds": ["1", "2", "3"],
            },
            "aws:index/getCallerIdentity:getCallerIdentity": {
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/deployer",
                "userId": "AIDEXAMPLE",
                "id": ACCOUNT,
            },
            "aws:ecr/getAuthorizationToken:getAuthorizationToken": {
                "userName": "AWS",
                "password": "token",
                "proxyEndpoint": "https://ecr",
            },
        }
        return answers.get(args.token, {})


@dataclass
class Built:
    resources: list[Recorded]
    outputs: dict[str, Any]

    def of(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> Recorded:
        (found,) = [r for r in self.resources if r.name == name]
        return found

    def one(self, type_: str, name_part: str) -> Recorded:
        (found,) = [r for r in self.of(type_) if name_part in r.name]
        return found

    def policy(self, role_part: str) -> dict[str, Any]:
        policy = self.one("aws:iam/rolePolicy:RolePolicy", role_part).inputs["policy"]
        return json.loads(policy)


CONFIG = {"allowedCidr": "203.0.113.0/24"}
_LOOPS: list[asyncio.AbstractEventLoop] = []


def build_stack(values: dict[str, str], region: str = REGION) -> Built:
    """The program built from stack config ``values`` (and ``aws:region``) as ``pulumi up``
    runs it (``infra.program.from_config`` + ``export``), under mocks."""
    from infra.program import export, from_config

    recorder = Recorder()
    # Pulumi's test runner drives the current event loop (earlier asyncio.run calls leave
    # none); it stays current until the next build, which closes it.
    if _LOOPS:
        _LOOPS.pop().close()
    _LOOPS.append(asyncio.new_event_loop())
    asyncio.set_event_loop(_LOOPS[-1])
    monitor = DependencyMonitor(recorder)
    pulumi.runtime.set_mocks(
        recorder, project="kinesis-ingest", stack="test", preview=False, monitor=monitor
    )
    config = {f"kinesis-ingest:{k}": v for k, v in values.items()}
    if region:
        config["aws:region"] = region
    pulumi.runtime.set_all_config(config)
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> Any:
        stack = from_config()
        export(stack)
        names = ("url", "dashboard_url", "stream", "records", "quarantine", "alarm_names",
                 "scaling_topic_arn", "rebuild_application")  # fmt: skip
        exported = (
            stack.url,
            stack.dashboard_url,
            stack.stream_name,
            stack.records_table,
            stack.quarantine_table,
            stack.alarm_names,
            stack.scaling_topic_arn,
            stack.rebuild_application,
        )
        return pulumi.Output.all(*exported).apply(
            lambda a: outputs.update(zip(names, a, strict=True))
        )

    # Pulumi's runtime leaves event loops and sockets of its own behind; a garbage collection
    # may find them while the program runs (more resources, an earlier collection): their
    # ResourceWarnings are known noise there too, not a failure of whichever test builds.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            program()
        finally:
            pulumi.runtime.set_all_config({})
    for resource in recorder.resources:
        resource.depends_on = monitor.dependencies.get((resource.type, resource.name), set())
        resource.ignore_changes = monitor.ignored.get((resource.type, resource.name), [])
        resource.alias_parents = monitor.alias_parents.get((resource.type, resource.name), [])
    # Pulumi's runtime leaves event loops and sockets of its own behind; collect them here,
    # where their ResourceWarnings are known noise, not in whichever test runs next.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    return Built(recorder.resources, outputs)


@pytest.fixture(scope="session")
def built() -> Built:
    return build_stack(CONFIG)
