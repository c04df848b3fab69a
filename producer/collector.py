"""Collects user records into per-shard aggregates and puts them to Kinesis with PutRecords.

``put`` returns only once Kinesis has accepted the aggregate that holds the record (durable
acknowledgement); ``take`` does the same for many records under one ``Ticket`` (one wake-up
per request, not per record). Each shard has a queue (``shardqueue.py``): aggregates are
sealed when full or after ``max_buffered_time`` and sent from the queue's head, at most one
entry of a shard in flight, so a key's records reach Kinesis in the order they were taken,
through retries and reshards. PutRecords calls carry at most 500 records / 5 MiB (counted in
bytes, partition keys included) and run off the loop (``call``), at most ``max_in_flight`` at
once; failed entries are retried with backoff and jitter.

Bounds, each answered at once with ``Overloaded`` (503, Retry-After) instead of growing:
everything held in memory (``MemoryBudget``, shared with the HTTP layer), the records
awaiting Kinesis, and per shard what its rate limit (``ratelimit.py``, the KPL's RateLimit)
can send within ``shard_queue_seconds`` (at most half the TTL): a hot shard keeps putting at
its limit for as long as the overload lasts, its excess is refused rather than queued past
its TTL, and it cannot fill the buffer that the other shards need.

Every record is answered by its deadline (``record_ttl``) plus at most one buffering
interval: expired records leave their queue without spending the shard's rate limit, and a
record whose PutRecords call has not come back by then is answered ``RecordNotAccepted`` too
(it may still be stored: the client sends it again; the consumer writes idempotently).

Reshards (``resharding.py``): the shard map is reloaded every ``shard_refresh_interval`` and
at once when a record lands on another shard than the map said.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.kinesis import PUT_RECORDS_MAX_BYTES, PUT_RECORDS_MAX_COUNT, KinesisClient, Shard
from producer.aggregation import AggregateBuilder
from producer.memory import MemoryBudget, record_cost
from producer.metrics import ProducerMetrics
from producer.ratelimit import ShardRateLimiter
from producer.resharding import Resharding
from producer.shardqueue import (
    Accepted,
    Entry,
    RecordNotAccepted,
    ShardQueue,
    Ticket,
    UserRecord,
)
from producer.shards import ShardMap

if TYPE_CHECKING:
    from mypy_boto3_kinesis.type_defs import PutRecordsOutputTypeDef, PutRecordsResultEntryTypeDef

__all__ = [
    "Accepted",
    "CollectorConfig",
    "KinesisCollector",
    "Overloaded",
    "RecordNotAccepted",
    "Ticket",
    "UserRecord",
]

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """A bound is reached: the caller should retry later (back-pressure)."""


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    stream_name: str
    aggregation_max_bytes: int = 51_200
    aggregation_max_count: int = 4_294_967_295
    max_buffered_time: float = 0.1
    record_ttl: float = 30.0
    max_in_flight: int = 8
    max_buffered_bytes: int = 64 * 1024 * 1024  # the memory bound, unless a budget is given
    max_buffered_records: int = 200_000
    rate_limit_percent: float = 150.0
    shard_queue_seconds: float = 5.0  # of the shard's rate limit; at most half the TTL
    shard_refresh_interval: float = 60.0  # seconds; 0: only when a record lands elsewhere
    backoff_base: float = 0.1
    backoff_max: float = 5.0


class KinesisCollector(Resharding):
    """Shard-aware aggregation and PutRecords batching; see the module docstring."""

    def __init__(
        self,
        client: KinesisClient,
        config: CollectorConfig,
        shard_map: ShardMap,
        metrics: ProducerMetrics | None = None,
        *,
        budget: MemoryBudget | None = None,
        call: Callable[..., Awaitable[Any]] | None = None,
        rng: random.Random | None = None,
    ):
        self.metrics = metrics or ProducerMetrics()
        self.budget = budget or MemoryBudget(config.max_buffered_bytes)
        self._client = client
        self._config = config
        self._call = call or asyncio.to_thread  # runs a blocking client call off the loop
        self._rng = rng or random.Random()
        self._clock: Callable[[], float] = time.monotonic  # the loop's clock once started
        self._limiter = ShardRateLimiter(config.rate_limit_percent, lambda: self._clock())
        self._horizon = min(config.shard_queue_seconds, config.record_ttl / 2)
        self._wake = asyncio.Event()
        self._sends: set[asyncio.Task[None]] = set()
        self._calls = 0  # sends not finished: counted down before they wake the loop
        self._flying: dict[int, Entry] = {}  # by id(): entries whose call has not come back
        self._oldest: float | None = None  # when the oldest aggregate still filling was begun
        self._next_expiry = float("inf")
        self._limit_at = float("inf")  # a shard's rate limit lets an entry go then
        self._closing = False
        self._runner: asyncio.Task[None] | None = None
        self.broken: BaseException | None = None  # the dispatch loop died: nothing is taken
        self.buffered_records = 0  # taken, not yet answered
        Resharding.__init__(self, shard_map)

    def _new_queue(self, shard: Shard) -> ShardQueue:
        config = self._config
        return ShardQueue(
            shard,
            lambda: AggregateBuilder(config.aggregation_max_bytes, config.aggregation_max_count),
        )

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        self._runner = loop.create_task(self._run_or_fail())
        self._start_refresher()

    async def close(self) -> None:
        """Flush everything buffered and wait until every record was answered."""
        self._closing = True
        self._wake.set()
        self._stop_refresher()
        if self._runner is not None:
            await self._runner

    async def put(self, partition_key: str, data: bytes) -> Accepted:
        """Buffer one user record; returns once Kinesis accepted it (or raises)."""
        ticket = Ticket()
        record = self.take(partition_key, data, ticket)
        await ticket.wait()
        if isinstance(record.outcome, Accepted):
            return record.outcome
        assert record.outcome is not None
        raise record.outcome

    def take(self, partition_key: str, data: bytes, ticket: Ticket) -> UserRecord:
        """Take one user record for ``ticket``; its ``outcome`` is set (Accepted, or
        RecordNotAccepted after the TTL) before ``ticket.wait()`` returns.

        Raises ``Overloaded`` at once (nothing taken) when a bound would be passed: the
        records awaiting Kinesis, the memory bound, or what the record's shard can send
        within its queue horizon.
        """
        if self._closing:
            raise RecordNotAccepted("the producer is shutting down")
        if self.broken is not None:
            raise RecordNotAccepted("the producer's collector stopped (see its log)")
        key_bytes = len(partition_key) if partition_key.isascii() else len(partition_key.encode())
        queue = self._queue_for(partition_key)
        self._admit(queue, len(data), key_bytes)
        cost = record_cost(len(data), key_bytes)
        if not self.budget.reserve(cost):
            self.metrics.count("UserRecordsOverloaded")
            raise Overloaded(f"{self.budget.used} of {self.budget.limit} bytes held")
        self.metrics.counters["UserRecordsReceived"] += 1
        self.buffered_records += 1
        ticket.pending += 1
        deadline = self._clock() + self._config.record_ttl
        record = UserRecord(partition_key, data, ticket, deadline, len(data) + key_bytes, cost)
        self._append(queue, record)
        return record

    def _admit(self, queue: ShardQueue, data_bytes: int, key_bytes: int) -> None:
        if self.buffered_records >= self._config.max_buffered_records:
            self.metrics.count("UserRecordsOverloaded")
            raise Overloaded(f"{self.buffered_records} records awaiting Kinesis")
        entries, size = queue.backlog()
        limiter = self._limiter
        backlog = max(entries / limiter.records_rate, (size + data_bytes) / limiter.bytes_rate)
        if backlog > self._horizon:
            self.metrics.count("UserRecordsOverloaded")
            shard = queue.shard.shard_id
            raise Overloaded(f"shard {shard} has {backlog:.1f} s of records waiting at its limit")

    def _append(self, queue: ShardQueue, record: UserRecord) -> None:
        full = queue.add(record)
        if full is not None:
            self._sealed(full)
            self._wake.set()
        self._refuse_oversize(queue)
        if self._oldest is None:
            self._oldest = self._clock()
            self._wake.set()

    def _sealed(self, entry: Entry) -> None:
        self._next_expiry = min(self._next_expiry, entry.deadline)

    def _refuse_oversize(self, queue: ShardQueue) -> None:
        if queue.oversize:
            records, queue.oversize = queue.oversize, []
            self._fail(records, "record exceeds the 1 MiB Kinesis record limit")

    def _settle_record(self, record: UserRecord, outcome: Accepted | RecordNotAccepted) -> None:
        if record.outcome is None:
            record.outcome = outcome
            self.buffered_records -= 1
            self.budget.release(record.cost)
            record.ticket._done_one()

    def _fail(self, records: list[UserRecord], reason: str) -> None:
        for record in records:
            if record.outcome is None:
                self._settle_record(record, RecordNotAccepted(reason))
                self.metrics.count("UserRecordsNotAccepted")

    # --- the dispatch loop ----------------------------------------------------------------
    async def _run_or_fail(self) -> None:
        """The dispatch loop; should it ever fail, every record it holds is answered
        ``RecordNotAccepted`` (503, send again) and nothing more is taken: a caller never waits
        for a record nobody will send, and ``/health`` turns 503 so the task is replaced."""
        try:
            await self._run()
        except Exception as exc:
            log.critical("the collector's dispatch loop failed", exc_info=True)
            self.broken = exc
            stranded = [r for q in self._all_queues() for r in q.records()]
            self._fail(stranded, "the producer's collector stopped (see its log)")
            self._drop_queues()
            if self._sends:
                await asyncio.wait(set(self._sends))

    def _idle(self) -> bool:
        """Nothing left to send or to wait for (checked by the loop before it exits)."""
        return (
            not self._calls
            and not self._resharding_busy()
            and not any(q.entries or q.builder is not None for q in self._all_queues())
        )

    async def _run(self) -> None:
        interval = self._config.max_buffered_time
        while True:
            now = self._clock()
            at = min(self._next_expiry, self._limit_at)
            if self._oldest is not None:
                at = min(at, self._oldest + interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), None if at == float("inf") else at - now)
            self._wake.clear()
            now = self._clock()
            due = self._oldest is not None and now >= self._oldest + interval
            if due or self._closing:
                for queue in self._all_queues():
                    entry = queue.seal()
                    if entry is not None:  # its buffered time is up: it goes when it can
                        entry.flushed = True
                        self._sealed(entry)
                    self._refuse_oversize(queue)
                self._oldest = None
            if now >= self._next_expiry:
                self._expire(now)
            await self._dispatch(flush=due or self._closing)
            # the exit check reads counters updated before every wake-up (never a task's
            # done-callback, which may run after this loop woke: a lost wake-up)
            if self._closing and self._idle():
                return

    def _expire(self, now: float) -> None:
        """Answer every record past its deadline, queued or in flight; the next check comes
        at the earliest deadline left, but not sooner than a quarter interval from now."""
        fail = self._expired
        earliest = min((q.expire(now, fail) for q in self._all_queues()), default=float("inf"))
        waiting = [*self._flying.values(), *(entry for entry, _ in self._misrouted)]
        for entry in waiting:
            if entry.deadline <= now:
                fail([r for r in entry.records if r.deadline <= now])
            live = [r.deadline for r in entry.records if r.outcome is None]
            if live:
                earliest = min(earliest, *live)
        self._next_expiry = max(earliest, now + self._config.max_buffered_time / 4)

    def _expired(self, records: list[UserRecord]) -> None:
        self._fail(records, "not accepted by Kinesis within the record TTL")

    async def _dispatch(self, flush: bool) -> None:  # async: a test replaces it
        """Send the heads of the shards' queues: at most one entry per shard in flight, so that
        a retried entry is never overtaken by a later one of its shard.

        Entries go once flushed (a full aggregate, or its buffered time is up), or when a
        PutRecords call's worth (500 entries or 5 MiB) is waiting.
        """
        limiter = self._limiter
        self._limit_at = float("inf")
        while self._calls < self._config.max_in_flight:  # else a send's end wakes the loop
            batch: list[tuple[ShardQueue, Entry]] = []
            size, overflow, wait = 0, False, float("inf")
            for queue in self._sendable_queues():
                entry = queue.entries[0]
                if flush:
                    entry.flushed = True
                shard_id = queue.shard.shard_id
                if delay := limiter.delay(shard_id, entry.size):
                    wait = min(wait, delay)
                    if not entry.held:
                        entry.held = True
                        self.metrics.count("KinesisRecordsRateLimited")
                elif (
                    len(batch) == PUT_RECORDS_MAX_COUNT or size + entry.size > PUT_RECORDS_MAX_BYTES
                ):
                    overflow = True
                else:
                    batch.append((queue, entry))
                    size += entry.size
            self._limit_at = self._clock() + wait
            if not batch or not (overflow or any(e.flushed for _, e in batch)):
                return
            entries = []
            for queue, entry in batch:
                queue.pop()
                queue.busy = True
                limiter.take(queue.shard.shard_id, entry.size)
                entries.append(entry)
            self._calls += 1
            task = asyncio.get_running_loop().create_task(self._send(entries))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    def _sendable_queues(self) -> list[ShardQueue]:
        return [
            q
            for q in self._queues.values()
            if q.entries and not q.busy and not q.blocked and not self._behind_stale(q.shard)
        ]

    # --- PutRecords -----------------------------------------------------------------------
    async def _send(self, batch: list[Entry]) -> None:
        self._flying.update((id(e), e) for e in batch)
        try:
            await self._send_until_done(batch)
        except Exception:  # never leave a caller waiting forever
            log.exception("PutRecords failed unexpectedly")
            for entry in batch:
                self._fail(entry.records, "internal error (see the producer's log)")
                self._landed(entry)
        finally:
            self._calls -= 1
            self._wake.set()

    async def _send_until_done(self, batch: list[Entry]) -> None:
        while batch:
            batch = [e for e in batch if self._still_wanted(e)]
            if not batch:
                return
            try:
                response = await self._call(self._put_records, batch)
            except Exception as exc:  # transport or service error: retry the whole call
                log.warning("PutRecords call failed, retrying", extra={"error": str(exc)})
                self.metrics.error(type(exc).__name__)
                self.metrics.count("Retries", len(batch))
                await self._backoff(batch)
                continue
            batch = self._settle(batch, response["Records"])
            if batch:
                await self._backoff(batch)

    def _still_wanted(self, entry: Entry) -> bool:
        """Before an attempt: drop the records already answered (past their TTL); an entry
        whose shard a reshard closed goes back to be routed again instead."""
        live = [r for r in entry.records if r.outcome is None]
        if not live or not self._resend_here(entry, live):
            self._landed(entry)
            return False
        if len(live) < len(entry.records):
            self._rebuild(entry, live)
        return True

    def _rebuild(self, entry: Entry, live: list[UserRecord]) -> None:
        queue = self._new_queue(entry.shard)
        queue.prepend(live)
        fresh = queue.entries[0]
        entry.records, entry.payload, entry.partition_key = live, fresh.payload, fresh.partition_key
        entry.size, entry.deadline = fresh.size, fresh.deadline

    def _landed(self, entry: Entry) -> None:
        """``entry`` is no longer in flight: its shard may send again."""
        self._flying.pop(id(entry), None)
        self._shard_free(entry.shard)

    def _put_records(self, batch: list[Entry]) -> PutRecordsOutputTypeDef:
        self.metrics.count("PutRecordsCalls")
        return self._client.put_records(
            StreamName=self._config.stream_name,
            # botocore takes a bytearray as a blob (its validator allows bytes, bytearray, file)
            Records=[{"Data": e.payload, "PartitionKey": e.partition_key} for e in batch],  # type: ignore[typeddict-item]  # bytearray
        )

    def _settle(
        self, batch: list[Entry], results: list[PutRecordsResultEntryTypeDef]
    ) -> list[Entry]:
        """Answer accepted entries; return the entries to retry."""
        retry: list[Entry] = []
        for entry, result in zip(batch, results, strict=True):
            if "ErrorCode" in result:
                log.warning("record not accepted", extra={"code": result["ErrorCode"]})
                self.metrics.error(result["ErrorCode"])
                if result["ErrorCode"] == "ProvisionedThroughputExceededException":
                    self.metrics.shard_throttled[entry.shard.shard_id] += 1
                self.metrics.count("Retries")
                retry.append(entry)
            elif result["ShardId"] != entry.shard.shard_id:
                self._landed_elsewhere(entry, result)
            else:
                self._accept(entry, Accepted(result["ShardId"], result["SequenceNumber"]))
        return retry

    def _accept(self, entry: Entry, accepted: Accepted) -> None:
        self._landed(entry)
        metrics, now, ttl = self.metrics, self._clock(), self._config.record_ttl
        count = len(entry.records)
        deadlines = 0.0
        for record in entry.records:
            self._settle_record(record, accepted)
            deadlines += record.deadline  # taken at deadline - ttl
        longest = now + ttl - min(r.deadline for r in entry.records)
        waited = (now + ttl) * count - deadlines
        metrics.observe_total("BufferingTime", waited * 1000, count, longest * 1000)
        metrics.count("KinesisRecordsPut")
        metrics.shard_put(accepted.shard_id, entry.size)
        metrics.count("UserRecordsPut", count)
        metrics.observe("UserRecordsPerKinesisRecord", count)

    async def _backoff(self, batch: list[Entry]) -> None:
        """Wait before the next attempt, with jitter; never past the batch's last deadline
        (its records would be answered meanwhile anyway)."""
        attempts = max(e.attempts for e in batch)
        for entry in batch:
            entry.attempts += 1
        cap = min(self._config.backoff_max, self._config.backoff_base * 2**attempts)
        last = max(r.deadline for e in batch for r in e.records)
        await asyncio.sleep(min(self._rng.uniform(0, cap), max(0.0, last - self._clock())))
