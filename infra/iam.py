"""Least-privilege policy documents for the three task roles, as pure functions of ARNs.

Every ``"*"`` resource is listed in ``WILDCARD_RESOURCES`` with the reason AWS leaves no
choice; the infra tests fail on any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Statement = dict[str, Any]

WILDCARD_RESOURCES = {
    "cloudwatch:PutMetricData": "has no resource-level permissions (scoped by the namespace "
    "condition instead)",
    "cloudwatch:GetMetricData": "has no resource-level permissions",
    "kinesis:UpdateShardCount": "has no resource-level permissions in the Service "
    "Authorization Reference (its resource is *; a statement naming the stream would not "
    "match it: the scaler would be denied)",
    "ecr:GetAuthorizationToken": "has no resource-level permissions (execution role)",
}

# Granted though the service never calls them itself: AWS checks them on the caller when it
# serves another call. Application Auto Scaling validates that whoever calls
# RegisterScalableTarget may act on the target resource (Application Auto Scaling User Guide,
# "Permissions validation for API calls on target resources" and "Permissions required for API
# actions on target services": ECS services need ecs:DescribeServices and ecs:UpdateService).
# The IAM call contract, which sees only the services' own calls, lists them as such.
VALIDATED_BY_AWS = {
    "scaler": {
        "ecs:DescribeServices": "application-autoscaling:RegisterScalableTarget",
        "ecs:UpdateService": "application-autoscaling:RegisterScalableTarget",
    },
}


def _allow(actions: list[str], resources: list[Any], **condition: Any) -> Statement:
    statement: Statement = {"Effect": "Allow", "Action": sorted(actions), "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def document(*statements: Statement) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _put_metrics(*namespaces: str) -> Statement:
    return _allow(
        ["cloudwatch:PutMetricData"], ["*"], StringEquals={"cloudwatch:namespace": list(namespaces)}
    )


def producer_policy(stream_arn: str) -> dict[str, Any]:
    """Put records to its stream (PutRecords only) and read its shard map; nothing else."""
    return document(_allow(["kinesis:PutRecords", "kinesis:ListShards"], [stream_arn]))


def efo_consumer_arns(stream_arn: str, consumer_arn: str, consumer_name: str) -> list[str]:
    """The enhanced fan-out consumer as IAM sees it, both ways the KCL names it.

    The KCL first looks its consumer up by stream ARN + consumer name
    (``FanOutConsumerRegistration.describeStreamConsumer``, KCL 3.1.3), which IAM authorizes
    against ``<stream ARN>/consumer/<name>`` *without* the creation timestamp; afterwards it
    uses the consumer ARN, ``<stream ARN>/consumer/<name>:<creation timestamp>``, for
    DescribeStreamConsumer and SubscribeToShard (the Service Authorization Reference's
    ``consumer`` resource). Granting only the latter leaves the consumer denied forever
    (amazon-kinesis-client-python#96, aws-cdk#22184).
    """
    return [consumer_arn, f"{stream_arn}/consumer/{consumer_name}"]


def consumer_policy(
    stream_arn: str,
    efo_consumer_arn: str | None,
    kcl_table_arns: list[str],
    data_table_arns: list[str],
    application_name: str,
) -> dict[str, Any]:
    """What the KCL 3 MultiLangDaemon and our record processor call, and nothing more: the
    IAM contract test (tests/integration/test_aws_call_contract.py) records every call they
    make on the local stack and evaluates it against this document.

    ``data_table_arns``: the records table, then the quarantine table. ``efo_consumer_arn``
    None: the consumer polls (GetRecords) instead of enhanced fan-out.
    The KCL's tables and fan-out consumer are created by the stack (infra/components/data.py),
    so the KCL never needs CreateTable, UpdateTable or RegisterStreamConsumer.
    """
    reading = (
        _allow(
            ["kinesis:SubscribeToShard", "kinesis:DescribeStreamConsumer"],
            efo_consumer_arns(stream_arn, efo_consumer_arn, application_name),
        )
        if efo_consumer_arn is not None
        else _allow(["kinesis:GetRecords", "kinesis:GetShardIterator"], [stream_arn])
    )
    kcl_indexes = [f"{arn}/index/*" for arn in kcl_table_arns]
    return document(
        _allow(["kinesis:DescribeStreamSummary", "kinesis:ListShards"], [stream_arn]),
        reading,
        # TransactWriteItems (the coordinator state) is authorized as the PutItem, UpdateItem,
        # DeleteItem and ConditionCheckItem it contains: there is no
        # dynamodb:TransactWriteItems action (DynamoDB Developer Guide, "Using IAM with
        # DynamoDB transactions"; Service Authorization Reference for DynamoDB).
        _allow(
            [
                "dynamodb:DescribeTable",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:Scan",
            ],
            kcl_table_arns,
        ),
        _allow(["dynamodb:Query"], kcl_indexes),  # leases by owner (LeaseOwnerToLeaseKeyIndex)
        # the record processor writes records and quarantined ones in batches (BatchWriteItem);
        # records with a client's id in conditional TransactWriteItems, authorized as the
        # PutItem each holds (see above): on the records table only, the first of the two
        _allow(["dynamodb:BatchWriteItem"], data_table_arns),
        _allow(["dynamodb:PutItem"], data_table_arns[:1]),
        _put_metrics(application_name),  # the KCL's own metrics; ours go out as EMF log lines
    )


def scaler_policy(
    stream_arn: str,
    state_table_arn: str,
    topic_arn: str,
    consumer_target_arn: str | None = None,
    consumer_service_arn: str | None = None,
) -> dict[str, Any]:
    """Read the stream and reshard it; read its metrics (its own go out as EMF log lines);
    read and write its state item; publish its decisions; set the consumer's maximum task
    count on the consumer's scalable target (None: the consumer does not autoscale)."""
    statements = [
        _allow(
            [
                "kinesis:DescribeStreamSummary",
                "kinesis:ListShards",
                "kinesis:SplitShard",
                "kinesis:MergeShards",
            ],
            [stream_arn],
        ),
        _allow(["kinesis:UpdateShardCount", "cloudwatch:GetMetricData"], ["*"]),
        _allow(["dynamodb:GetItem", "dynamodb:PutItem"], [state_table_arn]),
        _allow(["sns:Publish"], [topic_arn]),
    ]
    if consumer_target_arn and consumer_service_arn:
        # the scalable target's own ARN (scalable-target/<id>, Service Authorization
        # Reference), only for the consumer service's desired count
        statements.append(
            _allow(
                ["application-autoscaling:RegisterScalableTarget"],
                [consumer_target_arn],
                StringEquals={
                    "application-autoscaling:service-namespace": "ecs",
                    "application-autoscaling:scalable-dimension": "ecs:service:DesiredCount",
                },
            )
        )
        statements.append(
            _allow(sorted(VALIDATED_BY_AWS["scaler"]), [consumer_service_arn])
        )  # see VALIDATED_BY_AWS
    return document(*statements)


def execution_policy(
    repository_arns: list[str], log_group_arns: list[str], secret_arns: Sequence[str] = ()
) -> dict[str, Any]:
    """ECS's own role for a task: pull its image, write its log stream, and read the secrets
    its container definition names (ECS Developer Guide, "Amazon ECS task execution IAM role",
    Secrets Manager: ``secretsmanager:GetSecretValue`` on the secret; ``kms:Decrypt`` only for
    a secret encrypted with a customer managed key, which the stack's own secret is not)."""
    secrets = [_allow(["secretsmanager:GetSecretValue"], list(secret_arns))] if secret_arns else []
    return document(
        _allow(["ecr:GetAuthorizationToken"], ["*"]),
        _allow(
            ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
            repository_arns,
        ),
        _allow(
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [f"{arn}:log-stream:*" for arn in log_group_arns],
        ),
        *secrets,
    )


def assume_role(service: str = "ecs-tasks.amazonaws.com") -> dict[str, Any]:
    return document(
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    )
