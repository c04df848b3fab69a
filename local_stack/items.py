"""``python -m local_stack.items [ID ...]``: print stored records from DynamoDB Local as JSON,
one a line: the records with these ids, or without ids the first ``--limit`` of the table.

It reads the local stack running from ``--state-dir`` (default ``.local/stack``, where ``make
run`` keeps it): its DynamoDB endpoint and records table, from its endpoints file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer

from local_stack import endpoints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local_stack.items",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("ids", nargs="*")
    parser.add_argument("--state-dir", type=Path, help="the running stack's (default .local/stack)")
    parser.add_argument("--table", help="default: the running stack's records table")
    parser.add_argument("--endpoint", help="DynamoDB endpoint (default: the running stack's)")
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args(argv)
    found = endpoints.find(args.state_dir)
    if found is None and args.endpoint is None:
        parser.error(endpoints.none_running(args.state_dir) + "; or give --endpoint URL")
    table = args.table or (found.records_table if found else "records")
    ddb = boto3.client(
        "dynamodb",
        endpoint_url=args.endpoint or (found.dynamodb if found else None),
        region_name=found.region if found else "us-east-1",
        **endpoints.LOCAL_CREDENTIALS,
    )
    if args.ids:
        got = [ddb.get_item(TableName=table, Key={"id": {"S": i}}).get("Item") for i in args.ids]
        items = [i for i in got if i]
    else:
        items = ddb.scan(TableName=table, Limit=args.limit)["Items"]
    plain = TypeDeserializer()
    for item in items:
        row: dict[str, Any] = {k: plain.deserialize(v) for k, v in item.items()}
        sys.stdout.write(json.dumps(row, default=str, sort_keys=True) + "\n")
    return 0 if items or not args.ids else 1


if __name__ == "__main__":
    sys.exit(main())
