"""How many of the acknowledged records are in the records table (also what the integration
tests use to wait for records and read them back)."""

from __future__ import annotations

import time
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

LOCAL_CREDENTIALS: dict[str, Any] = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


def count_stored(
    ids: list[str], table: str, endpoint: str | None, region: str, wait: float
) -> tuple[int | None, str]:
    """(how many of ``ids`` are stored, a note); polls until all are or ``wait`` seconds passed.
    ``(None, reason)`` when the table cannot be read."""
    credentials = LOCAL_CREDENTIALS if endpoint else {}
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=region, **credentials)
    started = time.monotonic()
    try:
        missing = missing_after(ddb, table, ids, wait)
    except (BotoCoreError, ClientError) as exc:
        return None, f"table {table!r} not readable: {exc}"
    waited = time.monotonic() - started
    note = (
        f"(all, within {waited:.0f} s)"
        if not missing
        else f"({len(missing):,} missing after {waited:.0f} s)"
    )
    return len(ids) - len(missing), note


def missing_after(ddb: Any, table: str, ids: list[str], wait: float) -> set[str]:
    """The ids of ``ids`` still not in ``table`` once all are or ``wait`` seconds passed
    (read again every second)."""
    missing = set(ids)
    started = time.monotonic()
    while True:
        found = stored_items(ddb, table, list(missing), projection="id")
        missing -= {item["id"]["S"] for item in found}
        if not missing or time.monotonic() - started > wait:
            return missing
        time.sleep(1)


def stored_items(
    ddb: Any, table: str, ids: list[str], projection: str | None = None, consistent: bool = False
) -> list[dict[str, Any]]:
    """The items of ``ids`` that are in ``table`` (BatchGetItem, 100 keys a call, unprocessed
    keys asked again); ``projection`` limits the attributes read."""
    items: list[dict[str, Any]] = []
    for start in range(0, len(ids), 100):
        keys = [{"id": {"S": i}} for i in ids[start : start + 100]]
        ask: dict[str, Any] = {"Keys": keys, "ConsistentRead": consistent}
        if projection:
            ask["ProjectionExpression"] = projection
        request: dict[str, Any] = {table: ask}
        while request:
            answer = ddb.batch_get_item(RequestItems=request)
            items.extend(answer["Responses"].get(table, []))
            request = answer.get("UnprocessedKeys") or {}
    return items
