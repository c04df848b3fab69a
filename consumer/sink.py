"""Idempotent writes to the records table: BatchWriteItem for ids the producer minted,
TransactWriteItems with a condition for ids a client chose (the copy with the latest stream
position wins), and items DynamoDB refuses isolated by bisection so that the rest is stored."""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from common.storable import size_of
from consumer.config import ConsumerSettings, get_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        TransactWriteItemTypeDef,
        WriteRequestOutputTypeDef,
        WriteRequestTypeDef,
    )
else:
    DynamoDBClient = Any

log = logging.getLogger(__name__)

# DynamoDB API reference: BatchWriteItem (25 puts, 16 MB a call) and TransactWriteItems (100
# actions, 4 MB of items a call; cancellation reasons per action, in request order)
BATCH_LIMIT = 25
TRANSACTION_LIMIT = 100
TRANSACTION_MAX_BYTES = 4 * 1024 * 1024
# Errors about an item, not the service: the write is split until the item is alone, and
# that item is refused (quarantined by the caller). A request-level ValidationException that
# is about no item splits down to items that all succeed. ItemCollectionSizeLimitExceeded
# concerns one partition key's items (local secondary indexes only).
ITEM_ERRORS = frozenset(
    {"ValidationException", "SerializationException", "ItemCollectionSizeLimitExceededException"}
)
# TransactWriteItems' cancellation reasons that are about the item (API reference,
# TransactWriteItems, TransactionCanceledException); other reasons (TransactionConflict,
# ThrottlingError, ProvisionedThroughputExceeded, ...) are retried.
ITEM_REASONS = frozenset({"ValidationError", "ItemCollectionSizeLimitExceeded"})
# Kinesis sequence numbers are decimal strings without leading zeros (the Kinesis API
# reference's SequenceNumber pattern: 0|([1-9]\d{0,128})), and those of one partition key
# increase over time (PutRecord: "generally increase over time"; the integration test checks
# it across a reshard on kinesis-mock). So the longer one is the later; of equal length, the
# string order is the number order. A copy is written unless the stored one is from a later
# position (the same position: written again, idempotently).
LATEST_COPY = (
    "attribute_not_exists(id) OR size(sequence_number) < :length OR "
    "(size(sequence_number) = :length AND (sequence_number < :sequence OR "
    "(sequence_number = :sequence AND sub_sequence_number <= :sub)))"
)
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",  # a put met a transaction on the same item
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

    Contract: ``write`` returns only when every item is in the table, refused by DynamoDB for
    its own sake (``WriteOutcome.refused``: bisected down to the single item, the rest
    written), or superseded (``WriteOutcome.superseded``: an item with ``client_id`` whose
    id already holds a copy from a later stream position). Otherwise it raises
    ``SinkWriteError`` (once ``deadline_seconds`` passed, or at once for an error retrying
    cannot fix and that is not about an item) and the caller must not checkpoint.

    Items with the same id within one call collapse to the last one (a batch may not carry a
    key twice). Items without ``client_id`` (ids the producer minted: every copy is the same
    record) go with BatchWriteItem in chunks of 25; items with it go with TransactWriteItems
    in chunks of up to 100 items and 4 MB, each put conditional on the stored copy's position
    (``LATEST_COPY``), the only way to make a write conditional in bulk. Chunks go at most
    ``max_in_flight`` at once, from worker threads (boto3 clients are thread-safe); ``write``
    waits for all of them. ``UnprocessedItems``, throttling, transaction conflicts, 5xx
    answers and connection errors are retried with exponential backoff and full jitter.
    ``client=None`` builds ``default_client(get_settings())``.
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
        self.retries = 0  # calls retried, for the metrics

    def write(self, items: list[dict[str, Any]]) -> WriteOutcome:
        """Put every item (low-level AttributeValue dicts with an ``id`` S) or raise."""
        unique = list({item["id"]["S"]: item for item in items}.values())
        deadline = self._clock() + self._deadline_seconds
        outcome = WriteOutcome()
        plain = [item for item in unique if "client_id" not in item]
        versioned = [item for item in unique if "client_id" in item]
        jobs = [partial(self._put, chunk) for chunk in _batches(plain)]
        jobs += [partial(self._transact, chunk) for chunk in _transactions(versioned)]
        if len(jobs) < 2 or self._max_in_flight < 2:
            for job in jobs:
                job(deadline, outcome)
            return outcome
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._max_in_flight, thread_name_prefix="sink")
        futures = [self._pool.submit(job, deadline, outcome) for job in jobs]
        wait(futures)
        for future in futures:
            future.result()  # the first SinkWriteError (or bug) is raised, once all ended
        return outcome

    def _put(self, chunk: list[dict[str, Any]], deadline: float, outcome: WriteOutcome) -> None:
        """BatchWriteItem ``chunk`` (up to 25 items) until every item is written or refused."""
        requests: Sequence[WriteRequestTypeDef | WriteRequestOutputTypeDef]
        requests = [{"PutRequest": {"Item": item}} for item in chunk]
        attempt = 0
        while True:
            try:
                answer = self._client.batch_write_item(RequestItems={self.table: requests})
            except ClientError as exc:
                if _code(exc) in ITEM_ERRORS:
                    # ours, or botocore's parse of UnprocessedItems: plain dicts either way
                    items = [
                        cast("dict[str, Any]", request["PutRequest"]["Item"])
                        for request in requests
                    ]
                    self._bisect(items, exc, deadline, outcome, self._put)
                    return
                problem = _retryable_problem(exc)
            except ParamValidationError as exc:  # a malformed request: retrying cannot help
                raise SinkWriteError(f"BatchWriteItem request invalid: {exc}") from exc
            except BotoCoreError as exc:  # connection trouble: retry like a 5xx
                problem = repr(exc)
            else:
                requests = answer.get("UnprocessedItems", {}).get(self.table, [])
                if not requests:
                    return
                problem = f"{len(requests)} unprocessed items"
            attempt += 1
            self._pause(attempt, "BatchWriteItem", problem, deadline)

    def _transact(
        self, chunk: list[dict[str, Any]], deadline: float, outcome: WriteOutcome
    ) -> None:
        """TransactWriteItems ``chunk`` with ``LATEST_COPY`` on each put, until every item is
        written, superseded or refused (a cancelled transaction wrote nothing: the items whose
        reason was ``None`` or transient go again)."""
        pending = chunk
        attempt = 0
        while pending:
            try:
                self._client.transact_write_items(
                    TransactItems=[self._latest_copy(item) for item in pending]
                )
                return
            except ClientError as exc:
                code = _code(exc)
                if code == "TransactionCanceledException":
                    pending, problem = _cancelled(pending, exc, outcome)
                    if problem is None:
                        continue  # only superseded or refused items: the rest goes at once
                elif code in ITEM_ERRORS:
                    self._bisect(pending, exc, deadline, outcome, self._transact)
                    return
                else:
                    problem = _retryable_problem(exc)
            except ParamValidationError as exc:
                raise SinkWriteError(f"TransactWriteItems request invalid: {exc}") from exc
            except BotoCoreError as exc:
                problem = repr(exc)
            if not pending:
                return
            attempt += 1
            self._pause(attempt, "TransactWriteItems", problem, deadline)

    def _latest_copy(self, item: dict[str, Any]) -> TransactWriteItemTypeDef:
        sequence = item["sequence_number"]["S"]
        values = {
            ":length": {"N": str(len(sequence))},
            ":sequence": {"S": sequence},
            ":sub": item["sub_sequence_number"],
        }
        return {
            "Put": {
                "TableName": self.table,
                "Item": item,
                "ConditionExpression": LATEST_COPY,
                "ExpressionAttributeValues": values,
            }
        }

    def _bisect(
        self,
        items: list[dict[str, Any]],
        exc: ClientError,
        deadline: float,
        outcome: WriteOutcome,
        write: Callable[[list[dict[str, Any]], float, WriteOutcome], None],
    ) -> None:
        """DynamoDB refused a write of ``items`` for an item's sake: write each half apart
        until the refused item is alone; that one is ``refused`` with DynamoDB's message."""
        if len(items) > 1:
            half = len(items) // 2
            write(items[:half], deadline, outcome)
            write(items[half:], deadline, outcome)
            return
        error = exc.response.get("Error", {})
        message = f"{error.get('Code', '')}: {error.get('Message', exc)}"
        log.warning("DynamoDB refused an item", extra={"id": items[0]["id"]["S"], "error": message})
        outcome.refused.append((items[0], message))

    def _pause(self, attempt: int, call: str, problem: str, deadline: float) -> None:
        """Back off before attempt ``attempt + 1``; ``SinkWriteError`` past the deadline."""
        pause = random.uniform(0, min(self._backoff_max, self._backoff_base * 2**attempt))
        if self._clock() + pause > deadline:
            raise SinkWriteError(f"gave up after {attempt} attempts: {problem}")
        log.warning(f"retrying {call}", extra={"attempt": attempt, "problem": problem})
        self.retries += 1
        self._sleep(pause)


@dataclass
class WriteOutcome:
    """What a ``write`` did not store, and why (everything else is in the table)."""

    refused: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (item, why)
    superseded: list[dict[str, Any]] = field(default_factory=list)  # a later copy is stored


def _batches(items: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), BATCH_LIMIT):
        yield items[start : start + BATCH_LIMIT]


def _transactions(items: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Chunks of at most ``TRANSACTION_LIMIT`` items and ``TRANSACTION_MAX_BYTES``."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for item in items:
        weight = size_of(item)  # measured once, when the item was built (to_item)
        if chunk and (len(chunk) == TRANSACTION_LIMIT or size + weight > TRANSACTION_MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += weight
    if chunk:
        yield chunk


def _cancelled(
    pending: list[dict[str, Any]], exc: ClientError, outcome: WriteOutcome
) -> tuple[list[dict[str, Any]], str | None]:
    """Sort a cancelled transaction's items by their reasons: superseded (its condition
    failed), refused, or to go again. The problem to back off for, or None when nothing
    transient cancelled it (then at least one item left the transaction)."""
    reasons = _reasons(exc)
    message = exc.response.get("Error", {}).get("Message", str(exc))
    if len(reasons) != len(pending):
        return pending, f"TransactionCanceledException: {message}"
    again, transient = [], set()
    for item, (code, why) in zip(pending, reasons, strict=True):
        if code == "None":
            again.append(item)
        elif code == "ConditionalCheckFailed":
            outcome.superseded.append(item)
        elif code in ITEM_REASONS:
            outcome.refused.append((item, f"{code}: {why}"))
        else:
            again.append(item)
            transient.add(code)
    if transient or len(again) == len(pending):
        return again, f"TransactionCanceledException: {', '.join(sorted(transient)) or message}"
    return again, None


_REASONS_IN_MESSAGE = re.compile(r"\[([A-Za-z, ]*)\]\s*$")


def _reasons(exc: ClientError) -> list[tuple[str, str]]:
    """(code, message) per action of a cancelled transaction, in request order: botocore
    puts the modeled ``CancellationReasons`` in the response; failing that, DynamoDB's
    message ends with the codes ("... specific reasons [None, ConditionalCheckFailed]")."""
    reasons = exc.response.get("CancellationReasons")
    if reasons:
        return [(r.get("Code") or "None", r.get("Message", "")) for r in reasons]
    found = _REASONS_IN_MESSAGE.search(exc.response.get("Error", {}).get("Message", ""))
    return [(code.strip(), "") for code in found.group(1).split(",")] if found else []


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _retryable_problem(exc: ClientError) -> str:
    """The code of a throttling or 5xx error; raises ``SinkWriteError`` for any other."""
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in THROTTLING_CODES or status >= 500:
        return f"{code} (HTTP {status})"
    raise SinkWriteError(
        f"{exc.operation_name} failed: {code}: {error.get('Message', exc)}"
    ) from exc
