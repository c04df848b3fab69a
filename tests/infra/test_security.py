"""The deployed stack's security policy under mocks: API keys from Secrets Manager, nothing
internal behind the load balancer, hardened tasks, the optional WAF rate limit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.settings import SECRET_ARN, ConfigError, load
from producer.config import ProducerSettings
from tests.infra.conftest import ACCOUNT, CONFIG, REGION, SECRET_SUFFIX, Built, build_stack
from tests.infra.dockerfile import parse
from tests.infra.test_stack import _containers

ROOT = Path(__file__).resolve().parents[2]
SUPPLIED = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:team/ingest-keys-Zz9Yx8"
SECRET_ACTIONS = ("secretsmanager:", "kms:")
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # how Pulumi marks a secret value on the wire


def _secret_actions(built: Built, role_part: str) -> list[tuple[list[str], list[str]]]:
    """(actions, resources) of every statement of the role's policy touching secrets."""
    return [
        (s["Action"], s["Resource"])
        for s in built.policy(role_part)["Statement"]
        if any(a.startswith(SECRET_ACTIONS) for a in s["Action"])
    ]


def test_the_producer_gets_its_keys_from_a_secret_the_stack_creates(built: Built) -> None:
    # GIVEN the default stack (requireApiKey true, no secret supplied)
    (secret,) = built.of("aws:secretsmanager/secret:Secret")
    arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{secret.name}-{SECRET_SUFFIX}"
    assert SECRET_ARN.fullmatch(arn)
    (version,) = built.of("aws:secretsmanager/secretVersion:SecretVersion")
    # THEN it holds one random key under "keys", generated once (later ups keep rotations)
    value = version.inputs["secretString"]
    assert isinstance(value, dict) and set(value) == {SECRET_SIG, "value"}  # marked secret
    keys = json.loads(value["value"])["keys"].split(",")
    assert len(keys) == 1 and len(keys[0]) >= 40
    assert version.inputs["secretId"] == f"{secret.name}-id"
    # AND the producer's container reads that field as an ECS secret, never as plain env
    producer = _containers(built)["producer"]
    assert producer["secrets"] == [{"name": "PRODUCER_API_KEYS", "valueFrom": f"{arn}:keys::"}]
    env = json.dumps(producer["environment"])
    assert "API_KEY" not in env and keys[0] not in env
    assert all(not c["secrets"] for n, c in _containers(built).items() if n != "producer")
    # AND the variable is the one the producer reads (a comma-separated list of keys)
    conf = ProducerSettings(stream_name="s", api_keys=f"{keys[0]},older")
    assert conf.keys == (keys[0].encode(), b"older")
    # AND the key is no stack output (the secret's ARN is: README "API keys")
    assert keys[0] not in json.dumps(built.outputs)
    # AND the task starts only once the secret has a value
    task = built.one("aws:ecs/taskDefinition:TaskDefinition", "producer")
    service = built.one("aws:ecs/service:Service", "producer")
    assert version.name in task.depends_on | service.depends_on


def test_only_the_producers_execution_role_may_read_the_secret_and_only_that_one(
    built: Built,
) -> None:
    (secret,) = built.of("aws:secretsmanager/secret:Secret")
    arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{secret.name}-{SECRET_SUFFIX}"
    assert _secret_actions(built, "producer-execution") == [
        (["secretsmanager:GetSecretValue"], [arn])
    ]
    for role in ("producer-task", "consumer-task", "scaler-task"):
        assert _secret_actions(built, role) == [], role
    for role in ("consumer-execution", "scaler-execution"):
        assert _secret_actions(built, role) == [], role


def test_a_supplied_secret_is_used_as_is() -> None:
    built = build_stack({**CONFIG, "apiKeySecretArn": SUPPLIED})
    assert not built.of("aws:secretsmanager/secret:Secret")
    assert not built.of("aws:secretsmanager/secretVersion:SecretVersion")
    producer = _containers(built)["producer"]
    assert producer["secrets"] == [{"name": "PRODUCER_API_KEYS", "valueFrom": f"{SUPPLIED}:keys::"}]
    assert _secret_actions(built, "producer-execution") == [
        (["secretsmanager:GetSecretValue"], [SUPPLIED])
    ]


def test_without_a_key_nothing_reads_secrets() -> None:
    built = build_stack({**CONFIG, "requireApiKey": "false"})
    assert not built.of("aws:secretsmanager/secret:Secret")
    assert all(not c["secrets"] for c in _containers(built).values())
    assert _secret_actions(built, "producer-execution") == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"apiKeySecretArn": "ingest-keys"}, "apiKeySecretArn must be the full ARN"),
        # the name without its six-character suffix: IAM would not match GetSecretValue
        ({"apiKeySecretArn": SUPPLIED[:-7]}, "apiKeySecretArn must be the full ARN"),
        ({"apiKeySecretArn": SUPPLIED, "requireApiKey": "false"}, "requireApiKey is false"),
        ({"wafRateLimit": "9"}, "wafRateLimit must be 0"),
        ({"wafRateLimit": "2000000001"}, "wafRateLimit"),
    ],
)
def test_security_config_mistakes_are_refused(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load({**CONFIG, **values})


def _metrics_rule(built: Built) -> dict[str, Any]:
    (rule,) = built.of("aws:lb/listenerRule:ListenerRule")
    return rule.inputs


@pytest.mark.parametrize("https", [False, True])
def test_metrics_are_not_reachable_through_the_load_balancer(https: bool) -> None:
    arn = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/abc"
    built = build_stack({**CONFIG, "certificateArn": arn} if https else CONFIG)
    rule = _metrics_rule(built)
    # THEN the listener that forwards to the producer answers /metrics itself, first
    forwarding = [
        r
        for r in built.of("aws:lb/listener:Listener")
        if r.inputs["defaultActions"][0]["type"] == "forward"
    ]
    (listener,) = forwarding
    assert rule["listenerArn"].endswith(f":{listener.name}")
    assert rule["priority"] == 1
    assert rule["conditions"] == [{"pathPattern": {"values": ["/metrics", "/metrics/*"]}}]
    (action,) = rule["actions"]
    assert action["type"] == "fixed-response"
    assert action["fixedResponse"]["statusCode"] == "404"
    assert json.loads(action["fixedResponse"]["messageBody"])["error"] == "not_found"


def test_no_web_acl_unless_configured(built: Built) -> None:
    assert not built.of("aws:wafv2/webAcl:WebAcl")


def test_a_configured_rate_limit_puts_a_per_ip_web_acl_on_the_alb() -> None:
    built = build_stack({**CONFIG, "wafRateLimit": "2000"})
    (acl,) = built.of("aws:wafv2/webAcl:WebAcl")
    assert acl.inputs["scope"] == "REGIONAL"
    assert acl.inputs["defaultAction"] == {"allow": {}}
    (rule,) = acl.inputs["rules"]
    assert rule["action"] == {"block": {}}
    statement = rule["statement"]["rateBasedStatement"]
    assert (statement["limit"], statement["aggregateKeyType"]) == (2000, "IP")
    assert statement["evaluationWindowSec"] in (60, 120, 300, 600)
    (association,) = built.of("aws:wafv2/webAclAssociation:WebAclAssociation")
    alb = built.one("aws:lb/loadBalancer:LoadBalancer", "alb")
    assert association.inputs["resourceArn"].endswith(f":{alb.name}")
    assert association.inputs["webAclArn"].endswith(f":{acl.name}")


def test_every_task_is_hardened(built: Built) -> None:
    for task in built.of("aws:ecs/taskDefinition:TaskDefinition"):
        (container,) = json.loads(task.inputs["containerDefinitions"])
        name = task.name
        # read-only root filesystem, one writable volume at /tmp on the task's ephemeral
        # storage (a bind mount: a volume without host or EFS configuration)
        assert container["readonlyRootFilesystem"] is True, name
        assert container["mountPoints"] == [
            {"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}
        ], name
        assert task.inputs["volumes"] == [{"name": "tmp"}], name
        # every capability dropped, none added; not privileged; a non-root user
        assert container["linuxParameters"]["capabilities"] == {"add": [], "drop": ["ALL"]}
        assert container["privileged"] is False
        uid, gid = container["user"].split(":")
        assert int(uid) != 0 and int(gid) != 0


def test_what_the_services_write_is_on_the_writable_volume(built: Built) -> None:
    from consumer.config import ConsumerSettings
    from scaler.config import ScalerSettings

    containers = _containers(built)
    consumer_env = {e["name"]: e["value"] for e in containers["consumer"]["environment"]}
    consumer = ConsumerSettings(stream_name="s")
    written = [
        consumer_env["CONSUMER_PROPERTIES_PATH"],
        consumer.heartbeat_dir,
        ScalerSettings(stream_name="s").heartbeat_path,
    ]
    assert all(path.startswith("/tmp/") for path in written), written


@pytest.mark.parametrize("service", ["producer", "consumer", "scaler"])
def test_images_declare_the_tmp_volume_and_strip_setuid_programs(service: str) -> None:
    final = parse(ROOT / "docker" / f"{service}.Dockerfile")[-1]
    assert final.all("VOLUME") == ['["/tmp"]']
    runs = " ".join(final.all("RUN"))
    assert "-perm /6000" in runs and "chmod a-s" in runs
    (user,) = final.all("USER")
    # the task definition's user is the image's (files it owns stay readable)
    assert user == "10001"
