"""The producer's API keys in AWS Secrets Manager: a secret the stack creates with one random
key, or one the operator supplies. Either way its value is JSON, ``{"keys": "k1,k2"}``: every
comma-separated key is valid at once, so a key rotates without downtime (README "API keys").

The task receives the ``keys`` field as an ECS ``secrets`` entry (never a plain environment
variable in the task definition, never a stack output): ECS reads it with the task's
execution role when the task starts.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

KEYS_FIELD = "keys"
KEYS_VARIABLE = "PRODUCER_API_KEYS"  # producer.config.ProducerSettings.api_keys


@dataclass
class ApiKeysArgs:
    secret_arn: str = ""  # a supplied secret's full ARN; "": create one


def value_from(secret_arn: str) -> str:
    """The ``valueFrom`` that hands one JSON field of the secret's current version to a
    container: ``<secret ARN>:<json-key>:<version-stage>:<version-id>``, stage and id empty for
    AWSCURRENT (ECS Developer Guide, "Pass Secrets Manager secrets through Amazon ECS
    environment variables": a specific JSON key needs Fargate platform version 1.4.0 or later,
    which LATEST is)."""
    return f"{secret_arn}:{KEYS_FIELD}::"


class ApiKeys(pulumi.ComponentResource):
    def __init__(self, name: str, args: ApiKeysArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kinesis-ingest:security:ApiKeys", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.ready: list[pulumi.Resource] = []
        if args.secret_arn:
            self.secret_arn: pulumi.Output[str] = pulumi.Output.from_input(args.secret_arn)
        else:
            secret = aws.secretsmanager.Secret(
                f"{name}-api-keys",
                # a prefix, not a name: a destroyed stack's secret waits out its recovery
                # window under its name, and a new stack must not collide with it
                name_prefix=f"{name}-api-keys-",
                description='X-Api-Key values the producer accepts: {"keys": "k1,k2"}',
                recovery_window_in_days=7,
                opts=child,
            )
            first = json.dumps({KEYS_FIELD: secrets.token_urlsafe(32)})
            version = aws.secretsmanager.SecretVersion(
                f"{name}-api-keys",
                secret_id=secret.id,
                secret_string=pulumi.Output.secret(first),
                # generated once: later `pulumi up`s keep what the operator rotated to
                opts=child.merge(
                    pulumi.ResourceOptions(ignore_changes=["secretString", "versionStages"])
                ),
            )
            self.secret_arn = secret.arn
            self.ready = [version]  # a task started earlier would find no AWSCURRENT value
        self.value_from = self.secret_arn.apply(value_from)
        self.register_outputs({"secret_arn": self.secret_arn})
