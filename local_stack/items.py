"""``python -m local_stack.items [ID ...]``: print stored records from DynamoDB Local as JSON.

Without ids it prints the whole table (up to ``--limit`` items).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer

from local_stack.stack import StackConfig


def main() -> int:
    defaults = StackConfig()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("ids", nargs="*")
    parser.add_argument("--table", default=defaults.records_table)
    parser.add_argument("--endpoint", default=defaults.dynamodb_url)
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args()
    ddb = boto3.client(
        "dynamodb",
        endpoint_url=args.endpoint,
        region_name=defaults.region,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    if args.ids:
        found = [
            ddb.get_item(TableName=args.table, Key={"id": {"S": i}}).get("Item") for i in args.ids
        ]
        items = [i for i in found if i]
    else:
        items = ddb.scan(TableName=args.table, Limit=args.limit)["Items"]
    plain = TypeDeserializer()
    for item in items:
        row: dict[str, Any] = {k: plain.deserialize(v) for k, v in item.items()}
        sys.stdout.write(json.dumps(row, default=str, sort_keys=True) + "\n")
    return 0 if items or not args.ids else 1


if __name__ == "__main__":
    sys.exit(main())
