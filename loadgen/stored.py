"""How many of the acknowledged records are in the records table."""

from __future__ import annotations

import time

import boto3
from botocore.exceptions import BotoCoreError, ClientError

LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


def count_stored(
    ids: list[str], table: str, endpoint: str | None, region: str, wait: float
) -> tuple[int | None, str]:
    """(how many of ``ids`` are stored, a note); polls until all are or ``wait`` seconds passed.
    ``(None, reason)`` when the table cannot be read."""
    credentials = LOCAL_CREDENTIALS if endpoint else {}
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=region, **credentials)
    missing = set(ids)
    started = time.monotonic()
    try:
        while True:
            pending = list(missing)
            for start in range(0, len(pending), 100):
                missing -= _found(ddb, table, pending[start : start + 100])
            if not missing or time.monotonic() - started > wait:
                break
            time.sleep(1)
    except (BotoCoreError, ClientError) as exc:
        return None, f"table {table!r} not readable: {exc}"
    waited = time.monotonic() - started
    note = (
        f"(all, within {waited:.0f} s)"
        if not missing
        else f"({len(missing):,} missing after {waited:.0f} s)"
    )
    return len(ids) - len(missing), note


def _found(ddb: object, table: str, ids: list[str]) -> set[str]:
    request = {table: {"Keys": [{"id": {"S": i}} for i in ids], "ProjectionExpression": "id"}}
    found: set[str] = set()
    while request:
        answer = ddb.batch_get_item(RequestItems=request)  # type: ignore[attr-defined]
        found |= {item["id"]["S"] for item in answer["Responses"].get(table, [])}
        request = answer.get("UnprocessedKeys") or {}
    return found
