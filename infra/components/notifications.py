"""The SNS topics people subscribe to: the scaler's decisions, and (with ``alarmEmail``) the
alarms.

- ``scaling``: every resharding operation the shard scaler starts, every refusal and every
  dry-run decision (``scaler.notify``), whenever the stack has a scaler. Encrypted with the AWS
  managed key for SNS, whose key policy lets principals of the account use it through SNS: the
  scaler's task role needs only ``sns:Publish``. ``scalingEmail`` subscribes an address; any
  other subscriber (a queue, a chat hook) can subscribe to the ``scaling_topic_arn`` output.
- ``alarms``: encrypted with a key of our own. CloudWatch alarms cannot publish to a topic
  encrypted with the AWS managed key (its key policy, which nobody can edit, does not let
  ``cloudwatch.amazonaws.com`` use it: AWS re:Post knowledge center, "configure a CloudWatch
  alarm with an encrypted SNS topic"); our key's policy does, for this account's alarms.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass
class NotificationsArgs:
    alarm_email: str = ""
    scaling: bool = True  # the stack has a shard scaler
    scaling_email: str = ""


def alarm_key_policy(account: str, partition: str = "aws") -> dict[str, object]:
    """The alarm topic's key: the account administers it (IAM policies may grant its use),
    CloudWatch alarms of this account may encrypt for and read through the topic."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Account",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchAlarms",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": account}},
            },
        ],
    }


class Notifications(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: NotificationsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("kinesis-ingest:notifications:Notifications", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.scaling_topic: aws.sns.Topic | None = None
        if args.scaling:
            self.scaling_topic = aws.sns.Topic(
                f"{name}-scaling",
                name=f"{name}-scaling",
                kms_master_key_id="alias/aws/sns",
                opts=child,
            )
            self._email(f"{name}-scaling-email", self.scaling_topic, args.scaling_email, child)
        self.alarm_topic: aws.sns.Topic | None = None
        if args.alarm_email:
            identity = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
            key = aws.kms.Key(
                f"{name}-alarms",
                description=f"{name}: the alarm topic (CloudWatch alarms may use it)",
                enable_key_rotation=True,
                policy=identity.apply(
                    lambda i: json.dumps(alarm_key_policy(i.account_id, i.arn.split(":")[1]))
                ),
                opts=child,
            )
            self.alarm_topic = aws.sns.Topic(
                f"{name}-alarms", name=f"{name}-alarms", kms_master_key_id=key.arn, opts=child
            )
            self._email(f"{name}-alarms-email", self.alarm_topic, args.alarm_email, child)
        self.register_outputs({})

    @staticmethod
    def _email(
        name: str, topic: aws.sns.Topic, address: str, child: pulumi.ResourceOptions
    ) -> None:
        if address:
            aws.sns.TopicSubscription(
                name, topic=topic.arn, protocol="email", endpoint=address, opts=child
            )
