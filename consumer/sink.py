"""Idempotent writes to the records table with BatchWriteItem."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

log = logging.getLogger(__name__)

BATCH_LIMIT = 25
RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


class SinkWriteError(Exception):
    """The items could not all be written before the deadline."""


class DynamoDBSink:
    """Upserts items keyed by ``id``: writing a record twice leaves one item (idempotent).

    Contract: ``write`` returns only when every item is in the table; otherwise it raises
    ``SinkWriteError`` once ``deadline_seconds`` passed, and the caller must not checkpoint.
    Items with the same id within one call collapse to the last one (a batch may not carry a
    key twice).  ``UnprocessedItems``, throttling and 5xx answers are retried with exponential
    backoff and full jitter.
    """

    def __init__(
        self,
        table: str,
        client: DynamoDBClient,
        deadline_seconds: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        backoff_base: float = 0.05,
        backoff_max: float = 2.0,
    ) -> None:
        self.table = table
        self._client = client
        self._deadline_seconds = deadline_seconds
        self._sleep = sleep
        self._clock = clock
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max

    def write(self, items: list[dict[str, Any]]) -> None:
        unique = list({item["id"]["S"]: item for item in items}.values())
        deadline = self._clock() + self._deadline_seconds
        for start in range(0, len(unique), BATCH_LIMIT):
            self._write_chunk(unique[start : start + BATCH_LIMIT], deadline)

    def _write_chunk(self, chunk: list[dict[str, Any]], deadline: float) -> None:
        requests = [{"PutRequest": {"Item": item}} for item in chunk]
        attempt = 0
        while requests:
            try:
                answer = self._client.batch_write_item(RequestItems={self.table: requests})
                requests = answer.get("UnprocessedItems", {}).get(self.table, [])
                problem = f"{len(requests)} unprocessed items"
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in RETRYABLE_CODES:
                    raise SinkWriteError(f"BatchWriteItem failed: {code}: {exc}") from exc
                problem = code
            except BotoCoreError as exc:  # connection trouble: retry like a 5xx
                problem = str(exc)
            if not requests:
                return
            attempt += 1
            pause = random.uniform(0, min(self._backoff_max, self._backoff_base * 2**attempt))
            if self._clock() + pause > deadline:
                raise SinkWriteError(f"gave up after {attempt} attempts: {problem}")
            log.warning("retrying BatchWriteItem", extra={"attempt": attempt, "problem": problem})
            self._sleep(pause)
