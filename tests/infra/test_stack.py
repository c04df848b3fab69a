"""The Pulumi program under mocks: the resource graph is asserted, not just built."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import iam
from infra.settings import ConfigError, config_keys, load
from tests.contract.iam import ALLOW, arn, authorizations, decide
from tests.infra.conftest import ACCOUNT, CONFIG, CONSUMER_CREATED, REGION, Built, build_stack

SERVICE_SETTINGS = {
    "producer": ("producer.config", "ProducerSettings", "PRODUCER_"),
    "consumer": ("consumer.config", "ConsumerSettings", "CONSUMER_"),
    "scaler": ("scaler.config", "ScalerSettings", "SCALER_"),
}


def _containers(built: Built) -> dict[str, dict[str, Any]]:
    found = {}
    for task in built.of("aws:ecs/taskDefinition:TaskDefinition"):
        (container,) = json.loads(task.inputs["containerDefinitions"])
        found[task.name.removeprefix("ingest-test-")] = container
    return found


def _statements(built: Built) -> list[tuple[str, dict[str, Any]]]:
    return [
        (policy.name, statement)
        for policy in built.of("aws:iam/rolePolicy:RolePolicy")
        for statement in json.loads(policy.inputs["policy"])["Statement"]
    ]


def _actions(built: Built, role: str) -> set[str]:
    return {a for s in built.policy(f"{role}-task")["Statement"] for a in s["Action"]}


def test_no_task_gets_a_public_ip_and_all_run_in_private_subnets(built: Built) -> None:
    services = built.of("aws:ecs/service:Service")
    assert len(services) == 3
    for service in services:
        network = service.inputs["networkConfiguration"]
        assert network["assignPublicIp"] is False
        assert network["subnets"] and all("private" in s for s in network["subnets"])
    for subnet in built.of("aws:ec2/subnet:Subnet"):
        assert subnet.inputs.get("mapPublicIpOnLaunch") is False


def test_only_the_configured_cidr_reaches_the_alb_and_only_the_alb_reaches_the_tasks(
    built: Built,
) -> None:
    alb = built.one("aws:ec2/securityGroup:SecurityGroup", "-alb")
    assert [(r["fromPort"], r["cidrBlocks"]) for r in alb.inputs["ingress"]] == [
        (80, [CONFIG["allowedCidr"]])
    ]
    producer = built.one("aws:ec2/securityGroup:SecurityGroup", "-producer")
    (rule,) = producer.inputs["ingress"]
    assert rule["securityGroups"] == ["ingest-test-alb-id"] and "cidrBlocks" not in rule
    workers = built.one("aws:ec2/securityGroup:SecurityGroup", "-workers")
    assert not workers.inputs.get("ingress")
    lb = built.one("aws:lb/loadBalancer:LoadBalancer", "alb")
    assert lb.inputs["internal"] is False and all("public" in s for s in lb.inputs["subnets"])


def test_https_when_a_certificate_is_configured_and_http_redirects() -> None:
    arn = "arn:aws:acm:eu-west-1:123456789012:certificate/abc"
    built = build_stack({**CONFIG, "certificateArn": arn})
    alb = built.one("aws:ec2/securityGroup:SecurityGroup", "-alb")
    assert sorted(r["fromPort"] for r in alb.inputs["ingress"]) == [80, 443]
    listeners = {r.inputs["port"]: r.inputs for r in built.of("aws:lb/listener:Listener")}
    assert listeners[443]["protocol"] == "HTTPS" and listeners[443]["certificateArn"] == arn
    assert listeners[80]["defaultActions"][0]["type"] == "redirect"
    assert built.outputs["url"].startswith("https://")


def test_no_wildcard_action_and_wildcard_resources_only_where_listed(built: Built) -> None:
    for policy, statement in _statements(built):
        assert statement["Effect"] == "Allow"
        assert not any("*" in action for action in statement["Action"]), (policy, statement)
        if "*" in statement["Resource"]:
            assert statement["Resource"] == ["*"]
            assert set(statement["Action"]) <= set(iam.WILDCARD_RESOURCES), (policy, statement)


def test_least_privilege_per_service(built: Built) -> None:
    producer, consumer, scaler = (_actions(built, s) for s in ("producer", "consumer", "scaler"))
    assert not any(a.startswith("dynamodb:") for a in producer)
    assert producer <= {
        "kinesis:PutRecords",
        "kinesis:PutRecord",
        "kinesis:ListShards",
        "kinesis:DescribeStreamSummary",
    }
    assert not {"kinesis:PutRecords", "kinesis:PutRecord"} & (consumer | scaler)
    assert {"kinesis:SubscribeToShard", "dynamodb:BatchWriteItem"} <= consumer
    # the scaler reads and writes its state item, nothing else in DynamoDB
    assert {a for a in scaler if a.startswith("dynamodb:")} == {"dynamodb:GetItem",
                                                               "dynamodb:PutItem"}  # fmt: skip
    assert {"kinesis:UpdateShardCount", "kinesis:SplitShard", "kinesis:MergeShards"} <= scaler
    # the KCL's tables and the fan-out consumer by name; the stream by ARN
    statements = built.policy("consumer-task")["Statement"]
    resources = {r for s in statements for r in s["Resource"]}
    kcl = "ingest-test-consumer"
    for table in (kcl, f"{kcl}-WorkerMetricStats", f"{kcl}-CoordinatorState"):
        assert any(r.endswith(f":table/{table}") for r in resources), table
    assert any(r.endswith(f":table/{kcl}/index/*") for r in resources)
    subscribe = next(s for s in statements if "kinesis:SubscribeToShard" in s["Action"])
    stream = "arn:aws:kinesis:eu-west-1:123456789012:stream/ingest-test-stream"
    assert sorted(subscribe["Resource"]) == [
        f"{stream}/consumer/{kcl}",  # looked up by stream ARN + name
        f"{stream}/consumer/{kcl}:{CONSUMER_CREATED}",  # the registered consumer's ARN
    ]


def test_stream_and_tables_are_encrypted_and_backed_up(built: Built) -> None:
    stream = built.one("aws:kinesis/stream:Stream", "stream").inputs
    assert (stream["encryptionType"], stream["shardCount"], stream["retentionPeriod"]) == (
        "KMS",
        5,
        168,  # a week: README, "Deploy to AWS" gives its cost
    )
    assert stream["enforceConsumerDeletion"] is True
    tables = {t.inputs["name"]: t.inputs for t in built.of("aws:dynamodb/table:Table")}
    assert all(t["serverSideEncryption"]["enabled"] for t in tables.values())
    assert all(t["billingMode"] == "PAY_PER_REQUEST" for t in tables.values())
    for name in ("ingest-test-records", "ingest-test-records-quarantine"):
        assert tables[name]["pointInTimeRecovery"]["enabled"] is True


def test_destroy_leaves_nothing_the_kcl_would_have_created(built: Built) -> None:
    # GIVEN the KCL creates its tables and fan-out consumer when they are missing
    tables = {t.inputs["name"]: t.inputs for t in built.of("aws:dynamodb/table:Table")}
    app = "ingest-test-consumer"
    lease = tables[app]
    assert lease["hashKey"] == "leaseKey"
    (index,) = lease["globalSecondaryIndexes"]
    assert (index["name"], index["hashKey"], index["rangeKey"]) == (
        "LeaseOwnerToLeaseKeyIndex",
        "leaseOwner",
        "leaseKey",
    )
    assert tables[f"{app}-WorkerMetricStats"]["hashKey"] == "wid"
    assert tables[f"{app}-CoordinatorState"]["hashKey"] == "key"
    assert built.one("aws:kinesis/streamConsumer:StreamConsumer", "efo").inputs["name"] == app
    assert all(r.inputs["forceDelete"] for r in built.of("aws:ecr/repository:Repository"))
    consumer_env = {e["name"]: e["value"] for e in _containers(built)["consumer"]["environment"]}
    assert consumer_env["CONSUMER_APPLICATION_NAME"] == app  # the KCL adopts what we created


def test_every_container_logs_to_its_own_group(built: Built) -> None:
    groups = {g.inputs["name"] for g in built.of("aws:cloudwatch/logGroup:LogGroup")}
    assert all(
        g.inputs["retentionInDays"] == 30 for g in built.of("aws:cloudwatch/logGroup:LogGroup")
    )
    for service, container in _containers(built).items():
        options = container["logConfiguration"]["options"]
        assert container["logConfiguration"]["logDriver"] == "awslogs"
        assert options["awslogs-group"] == f"/ecs/ingest-test/{service}" in groups


@pytest.mark.parametrize("service", SERVICE_SETTINGS)
def test_task_environment_is_exactly_what_the_service_reads(built: Built, service: str) -> None:
    module, cls, prefix = SERVICE_SETTINGS[service]
    settings_class = getattr(__import__(module, fromlist=[cls]), cls)
    env = {e["name"]: e["value"] for e in _containers(built)[service]["environment"]}
    fields = {prefix + name.upper(): f for name, f in settings_class.model_fields.items()}
    assert set(env) <= set(fields), set(env) - set(fields)
    required = {name for name, f in fields.items() if f.is_required()}
    assert required <= set(env)
    values = {name.removeprefix(prefix).lower(): value for name, value in env.items()}
    settings_class(**values)  # the service would start with this environment


def test_containers_have_health_checks_stop_timeouts_and_rollback(built: Built) -> None:
    containers = _containers(built)
    assert all(c["stopTimeout"] == 120 for c in containers.values())
    assert "/health" in " ".join(containers["producer"]["healthCheck"]["command"])
    assert containers["consumer"]["healthCheck"]["command"][-1] == "consumer.health"
    assert containers["scaler"]["healthCheck"]["command"][-1] == "scaler.health"
    for service in built.of("aws:ecs/service:Service"):
        assert service.inputs["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    shutdown = {e["name"]: e["value"] for e in containers["consumer"]["environment"]}
    assert int(shutdown["CONSUMER_SHUTDOWN_GRACE_MILLIS"]) < 120_000


def test_autoscaling_targets_cpu_within_the_configured_bounds() -> None:
    built = build_stack(
        {**CONFIG, "producerMaxTasks": "7", "consumerMaxTasks": "9", "cpuTargetPercent": "70"}
    )
    targets = {t.name: t.inputs for t in built.of("aws:appautoscaling/target:Target")}
    assert {n: (t["minCapacity"], t["maxCapacity"]) for n, t in targets.items()} == {
        "ingest-test-producer-scaling": (2, 7),
        "ingest-test-consumer-scaling": (2, 9),
    }
    cpu = [p for p in built.of("aws:appautoscaling/policy:Policy") if p.name.endswith("-cpu")]
    assert len(cpu) == 2
    for policy in cpu:
        config = policy.inputs["targetTrackingScalingPolicyConfiguration"]
        assert config["targetValue"] == 70
        assert config["predefinedMetricSpecification"]["predefinedMetricType"] == (
            "ECSServiceAverageCPUUtilization"
        )


def test_every_aws_resource_is_tagged_through_the_provider(built: Built) -> None:
    (provider,) = built.of("pulumi:providers:aws")
    assert json.loads(provider.inputs["defaultTags"])["tags"]["project"] == "kinesis-ingest"
    for resource in built.resources:
        if resource.type.startswith("aws:"):
            assert "ingest-test-aws" in resource.provider, resource.name


def test_outputs(built: Built) -> None:
    assert built.outputs["url"] == "http://ingest-test-alb.elb.example/"
    assert "#dashboards:name=ingest-test" in built.outputs["dashboard_url"]
    assert built.outputs["stream"] == "ingest-test-stream"
    assert built.outputs["records"] == "ingest-test-records"


def test_every_setting_is_declared_in_pulumi_yaml() -> None:
    from pathlib import Path

    declared = Path(__file__).resolve().parents[2].joinpath("infra", "Pulumi.yaml").read_text()
    for key in config_keys():
        assert f"kinesis-ingest:{key}:" in declared, key


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "allowedCidr: Field required"),
        ({"allowedCidr": "10.0.0.0/33"}, "allowedCidr is not a CIDR"),
        ({**CONFIG, "consumerMaxTasks": "80"}, "consumerMaxTasks is above maxShards"),
        ({**CONFIG, "shardCount": "0"}, "shardCount"),
        ({**CONFIG, "producerMinTasks": "5", "producerMaxTasks": "2"}, "producerMinTasks"),
        ({**CONFIG, "certificateArn": "my-cert"}, "certificateArn must be"),
        ({**CONFIG, "logRetentionDays": "31"}, "logRetentionDays must be one of"),
        ({**CONFIG, "shardCuont": "3"}, "shardCuont"),
    ],
)
def test_invalid_config_fails_with_a_clear_message(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(values)


def test_the_consumer_may_put_records_with_client_ids_conditionally(built: Built) -> None:
    # GIVEN the record processor's conditional TransactWriteItems (records with a client's id;
    # IAM authorizes each Put in it as dynamodb:PutItem on its table)
    policy = built.policy("consumer-task")

    def verdict(table: str) -> str:
        params = {"TransactItems": [("Put", table)]}
        (auth,) = authorizations("dynamodb", "TransactWriteItems", params)
        return decide(policy, auth.action, arn(auth.resource, REGION, ACCOUNT))

    # THEN the records table allows it, the quarantine table (written in batches) does not
    assert verdict("ingest-test-records") == ALLOW
    assert verdict("ingest-test-records-quarantine") != ALLOW


def test_the_log_groups_keep_their_deployed_identity_under_their_own_component(
    built: Built,
) -> None:
    # GIVEN the stack: the log groups have a component of their own (Logs), created before the
    # services; they were children of Observability, which now holds the dashboard and alarms
    groups = built.of("aws:cloudwatch/logGroup:LogGroup")
    assert {g.name for g in groups} == {
        "ingest-test-producer", "ingest-test-consumer", "ingest-test-scaler",
        "ingest-test-container-insights",
    }  # fmt: skip
    # WHEN a deployed stack is updated THEN each group is aliased to its former parent, so the
    # engine keeps it (and its logs) instead of replacing it
    former = "urn:pulumi:test::kinesis-ingest::kinesis-ingest:observability:Observability::"
    assert {tuple(g.alias_parents) for g in groups} == {(former + "ingest-test",)}


def test_each_alarm_has_its_specs_comparison_and_period(built: Built) -> None:
    # GIVEN the alarm specs (comparison and period are theirs, not fixed by the component)
    from infra.components.observability import alarm_specs

    specs = {s.key: s for s in alarm_specs("s", "app", "tg", "alb", "records")}
    # WHEN the stack is built THEN every alarm carries its spec's
    for key, spec in specs.items():
        alarm = built.named(f"ingest-test-{key}")
        assert alarm.inputs["comparisonOperator"] == spec.comparison
        assert (alarm.inputs["period"], alarm.inputs["evaluationPeriods"]) == (
            spec.period, spec.periods)  # fmt: skip
