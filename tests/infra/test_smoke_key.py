"""``python -m infra.smoke`` after ``pulumi up`` finds the producer's key itself (the deployed
producer requires one by default): the first key of the stack's secret, read like the task
reads it, against moto's Secrets Manager."""

from __future__ import annotations

import json

import boto3
from moto import mock_aws

from infra.smoke import api_key_for


@mock_aws
def test_the_smoke_check_reads_the_first_key_of_the_stacks_secret() -> None:
    # GIVEN a stack whose secret holds two keys (a rotation under way)
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    arn = client.create_secret(
        Name="ingest-dev-api-keys-x", SecretString=json.dumps({"keys": "new-key, old-key"})
    )["ARN"]
    outputs = {"region": "eu-west-1", "api_key_secret_arn": arn}
    # WHEN no key is given THEN it sends the first; a given key wins; no secret, no key
    assert api_key_for(outputs, None) == "new-key"
    assert api_key_for(outputs, "mine") == "mine"
    assert api_key_for({"region": "eu-west-1"}, None) is None
