"""Idempotent writes to the records table with BatchWriteItem."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from consumer.config import ConsumerSettings, get_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

log = logging.getLogger(__name__)

BATCH_LIMIT = 25
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


class SinkWriteError(Exception):
    """The items could not all be written (before the deadline, or at all)."""


def default_client(settings: ConsumerSettings) -> DynamoDBClient:
    """A low-level DynamoDB client for ``settings``' region and endpoint (None: AWS)."""
    return boto3.client(
        "dynamodb",
        region_name=settings.region,
        endpoint_url=settings.dynamodb_endpoint,
        config=Config(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=5,
            read_timeout=20,
            max_pool_connections=settings.max_writes_in_flight + 2,
            # items are built by records.attribute, never by hand: validating every nested
            # AttributeValue again cost more than serializing the request (make bench)
            parameter_validation=False,
        ),
    )


class DynamoDBSink:
    """Upserts items keyed by ``id``: writing a record twice leaves one item (idempotent).

    Contract: ``write`` returns only when every item is in the table; otherwise it raises
    ``SinkWriteError`` (once ``deadline_seconds`` passed, or at once for an error retrying
    cannot fix) and the caller must not checkpoint. Items with the same id within one call
    collapse to the last one (a batch may not carry a key twice). Chunks of 25 go at most
    ``max_in_flight`` at once, from worker threads (boto3 clients are thread-safe); ``write``
    waits for all of them. ``UnprocessedItems``,
    throttling, 5xx answers and connection errors are retried with exponential backoff and
    full jitter. ``client=None`` builds ``default_client(get_settings())``.
    """

    def __init__(
        self,
        table: str,
        client: DynamoDBClient | None = None,
        deadline_seconds: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        backoff_base: float = 0.05,
        backoff_max: float = 2.0,
        max_in_flight: int = 4,
    ) -> None:
        self.table = table
        self._client = client if client is not None else default_client(get_settings())
        self._deadline_seconds = deadline_seconds
        self._sleep = sleep
        self._clock = clock
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._max_in_flight = max_in_flight
        self._pool: ThreadPoolExecutor | None = None
        self.retries = 0  # BatchWriteItem calls retried, for the metrics

    def write(self, items: list[dict[str, Any]]) -> None:
        """Put every item (low-level AttributeValue dicts with an ``id`` S) or raise."""
        unique = list({item["id"]["S"]: item for item in items}.values())
        deadline = self._clock() + self._deadline_seconds
        chunks = [unique[i : i + BATCH_LIMIT] for i in range(0, len(unique), BATCH_LIMIT)]
        if len(chunks) < 2 or self._max_in_flight < 2:
            for chunk in chunks:
                self._write_chunk(chunk, deadline)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._max_in_flight, thread_name_prefix="sink")
        futures = [self._pool.submit(self._write_chunk, chunk, deadline) for chunk in chunks]
        wait(futures)
        for future in futures:
            future.result()  # the first SinkWriteError (or bug) is raised, once all ended

    def _write_chunk(self, chunk: list[dict[str, Any]], deadline: float) -> None:
        requests = [{"PutRequest": {"Item": item}} for item in chunk]
        attempt = 0
        while requests:
            try:
                answer = self._client.batch_write_item(RequestItems={self.table: requests})
                requests = answer.get("UnprocessedItems", {}).get(self.table, [])
                problem = f"{len(requests)} unprocessed items"
            except ClientError as exc:
                problem = _retryable_problem(exc)
            except ParamValidationError as exc:  # a malformed request: retrying cannot help
                raise SinkWriteError(f"BatchWriteItem request invalid: {exc}") from exc
            except BotoCoreError as exc:  # connection trouble: retry like a 5xx
                problem = repr(exc)
            if not requests:
                return
            attempt += 1
            pause = random.uniform(0, min(self._backoff_max, self._backoff_base * 2**attempt))
            if self._clock() + pause > deadline:
                raise SinkWriteError(f"gave up after {attempt} attempts: {problem}")
            log.warning("retrying BatchWriteItem", extra={"attempt": attempt, "problem": problem})
            self.retries += 1
            self._sleep(pause)


def _retryable_problem(exc: ClientError) -> str:
    """The code of a throttling or 5xx error; raises ``SinkWriteError`` for any other."""
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in THROTTLING_CODES or status >= 500:
        return f"{code} (HTTP {status})"
    raise SinkWriteError(f"BatchWriteItem failed: {code}: {error.get('Message', exc)}") from exc
