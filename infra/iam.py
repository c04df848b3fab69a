"""Least-privilege policy documents for the three task roles, as pure functions of ARNs.

Every ``"*"`` resource is listed in ``WILDCARD_RESOURCES`` with the reason AWS leaves no
choice; the infra tests fail on any other.
"""

from __future__ import annotations

from typing import Any

Statement = dict[str, Any]

WILDCARD_RESOURCES = {
    "cloudwatch:PutMetricData": "has no resource-level permissions (scoped by the namespace "
    "condition instead)",
    "cloudwatch:GetMetricData": "has no resource-level permissions",
    "ecr:GetAuthorizationToken": "has no resource-level permissions (execution role)",
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
    """Put records to its stream and read its shard map; nothing else."""
    return document(
        _allow(
            [
                "kinesis:PutRecords",
                "kinesis:PutRecord",
                "kinesis:ListShards",
                "kinesis:DescribeStreamSummary",
            ],
            [stream_arn],
        ),
    )


def consumer_policy(
    stream_arn: str,
    efo_consumer_arn: str,
    kcl_table_arns: list[str],
    data_table_arns: list[str],
    application_name: str,
) -> dict[str, Any]:
    """What KCL 3 needs (FACTS.md) plus writing the records and quarantine tables."""
    kcl_indexes = [f"{arn}/index/*" for arn in kcl_table_arns]
    return document(
        _allow(
            [
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:ListShards",
                "kinesis:RegisterStreamConsumer",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListStreamConsumers",
            ],
            [stream_arn],
        ),
        _allow(["kinesis:SubscribeToShard", "kinesis:DescribeStreamConsumer"], [efo_consumer_arn]),
        _allow(
            [
                "dynamodb:CreateTable",
                "dynamodb:DescribeTable",
                "dynamodb:UpdateTable",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:Scan",
                "dynamodb:Query",
                "dynamodb:TransactWriteItems",
                "dynamodb:DescribeContinuousBackups",
                "dynamodb:UpdateContinuousBackups",
                "dynamodb:TagResource",
            ],
            kcl_table_arns,
        ),
        _allow(["dynamodb:Query"], kcl_indexes),
        _allow(
            ["dynamodb:BatchWriteItem", "dynamodb:PutItem", "dynamodb:DescribeTable"],
            data_table_arns,
        ),
        _put_metrics(application_name),  # the KCL's own metrics; ours go out as EMF log lines
    )


def scaler_policy(stream_arn: str) -> dict[str, Any]:
    """Read the stream and reshard it; read its metrics (its own go out as EMF log lines)."""
    return document(
        _allow(
            [
                "kinesis:DescribeStreamSummary",
                "kinesis:ListShards",
                "kinesis:UpdateShardCount",
                "kinesis:SplitShard",
                "kinesis:MergeShards",
            ],
            [stream_arn],
        ),
        _allow(["cloudwatch:GetMetricData"], ["*"]),
    )


def execution_policy(repository_arns: list[str], log_group_arns: list[str]) -> dict[str, Any]:
    """ECS's own role for a task: pull its image, write its log stream."""
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
    )


def assume_role(service: str = "ecs-tasks.amazonaws.com") -> dict[str, Any]:
    return document(
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    )
