"""Collects user records into per-shard aggregates and puts them to Kinesis with PutRecords.

``put`` returns only once Kinesis has accepted the aggregate that holds the record (durable
acknowledgement); ``take`` does the same for many records under one ``Ticket`` (one wake-up
per request, not per record).  Aggregates are sealed when full or after
``max_buffered_time``; PutRecords calls carry at most 500 records / 5 MiB and run in worker
threads (boto3 is blocking), at most ``max_in_flight`` at once.  Failed entries are retried
with backoff and jitter until the record TTL, then their records' outcome is
``RecordNotAccepted``.  Each shard gets at most ``rate_limit_percent`` of its write limits
(``ratelimit.py``); what waits for its shard stays buffered and counts against the
back-pressure bounds.

The shard map is reloaded every ``shard_refresh_interval`` (a reshard changed the open
shards) and at once when an aggregate lands on another shard than the map said; then the
aggregates not yet sealed are routed again against the new map, and a misrouted aggregate's
records are routed and sent again: the KCL would drop the sub-records outside the receiving
shard, and re-sending is safe because the consumer writes idempotently by record id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from producer.aggregation import KINESIS_MAX_RECORD_BYTES, AggregateBuilder
from producer.metrics import ProducerMetrics
from producer.ratelimit import ShardRateLimiter
from producer.shards import KinesisClient, Shard, ShardMap

log = logging.getLogger(__name__)

PUT_RECORDS_MAX_COUNT = 500
PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024


class RecordNotAccepted(Exception):
    """Kinesis did not accept the record before its TTL ran out."""


class Overloaded(Exception):
    """The buffer bound is reached: the caller should retry later (back-pressure)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """Where Kinesis stored a record."""

    shard_id: str
    sequence_number: str


class Ticket:
    """The records of one request: ``wait`` returns once each has an ``outcome``."""

    __slots__ = ("_future", "pending")

    def __init__(self) -> None:
        self.pending = 0
        self._future: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        if self.pending:
            self._future = asyncio.get_running_loop().create_future()
            await self._future

    def _done_one(self) -> None:
        self.pending -= 1
        if not self.pending and self._future is not None and not self._future.done():
            self._future.set_result(None)


@dataclass(slots=True)
class UserRecord:
    partition_key: str
    data: bytes
    ticket: Ticket
    deadline: float
    size: int
    outcome: Accepted | RecordNotAccepted | None = None


@dataclass(slots=True)
class _Entry:
    """One Kinesis record (an aggregate) on its way to PutRecords."""

    shard: Shard
    records: list[UserRecord]
    payload: bytes
    partition_key: str
    attempts: int = 0
    flushed: bool = False  # full, or its buffered time is up: send once its shard is free
    held: bool = False  # waited for its shard's rate limit at least once

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.partition_key)


@dataclass(slots=True)
class _Open:
    shard: Shard
    builder: AggregateBuilder
    records: list[UserRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    stream_name: str
    aggregation_max_bytes: int = 51_200
    aggregation_max_count: int = 4_294_967_295
    max_buffered_time: float = 0.1
    record_ttl: float = 30.0
    max_in_flight: int = 8
    max_buffered_bytes: int = 64 * 1024 * 1024
    max_buffered_records: int = 200_000
    rate_limit_percent: float = 150.0
    shard_refresh_interval: float = 60.0  # seconds; 0: only when a record lands elsewhere
    backoff_base: float = 0.1
    backoff_max: float = 5.0


class KinesisCollector:
    """Shard-aware aggregation and PutRecords batching; see the module docstring."""

    def __init__(
        self,
        client: KinesisClient,
        config: CollectorConfig,
        shard_map: ShardMap,
        metrics: ProducerMetrics | None = None,
    ):
        self.metrics = metrics or ProducerMetrics()
        self._client = client
        self._config = config
        self._map = shard_map
        self._open: dict[str, _Open] = {}
        self._sealed: list[_Entry] = []
        self._sealed_bytes = 0
        self._oldest: float | None = None
        self._wake = asyncio.Event()
        self._in_flight = asyncio.Semaphore(config.max_in_flight)
        self._sends: set[asyncio.Task[None]] = set()
        self._busy: set[str] = set()  # shards with an entry in flight: one at a time keeps order
        self._limiter = ShardRateLimiter(config.rate_limit_percent)
        self._limit_timer: asyncio.Handle | None = None  # pending rate-limit wake-up
        self._limit_at = 0.0  # loop time it fires at
        self._refresher: asyncio.Task[None] | None = None
        self._closing = False
        self._runner: asyncio.Task[None] | None = None
        self.broken: BaseException | None = None  # the dispatch loop died: nothing is taken
        self.buffered_records = 0  # taken, not yet answered
        self.buffered_bytes = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._runner = loop.create_task(self._run_or_fail())
        if self._config.shard_refresh_interval > 0:
            self._refresher = loop.create_task(self._refresh_periodically())

    async def close(self) -> None:
        """Flush everything buffered and wait until every record was answered."""
        self._closing = True
        self._wake.set()
        if self._refresher is not None:
            self._refresher.cancel()
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

        Raises ``Overloaded`` at once (nothing taken) when the records not yet accepted would
        pass ``max_buffered_bytes`` or ``max_buffered_records``: memory stays bounded and the
        caller answers 503 instead.
        """
        if self._closing:
            raise RecordNotAccepted("the producer is shutting down")
        if self.broken is not None:
            raise RecordNotAccepted(f"the producer's collector stopped: {self.broken!r}")
        size = len(data) + len(partition_key)
        if (
            self.buffered_records >= self._config.max_buffered_records
            or self.buffered_bytes + size > self._config.max_buffered_bytes
        ):
            self.metrics.count("UserRecordsOverloaded")
            raise Overloaded(
                f"{self.buffered_records} records / {self.buffered_bytes} bytes awaiting Kinesis"
            )
        self.metrics.counters["UserRecordsReceived"] += 1
        self.buffered_records += 1
        self.buffered_bytes += size
        ticket.pending += 1
        record = UserRecord(
            partition_key, data, ticket, time.monotonic() + self._config.record_ttl, size
        )
        self._route(record)
        return record

    def _settle_record(self, record: UserRecord, outcome: Accepted | RecordNotAccepted) -> None:
        if record.outcome is None:
            record.outcome = outcome
            self.buffered_records -= 1
            self.buffered_bytes -= record.size
            record.ticket._done_one()

    def _route(self, record: UserRecord) -> None:
        shard = self._map.shard_for(record.partition_key)
        current = self._open.get(shard.shard_id)
        if current is None or not current.builder.add(record.partition_key, record.data):
            if current is not None:  # full: it cannot grow, so it may go at once
                self._seal(current, ripe=True)
                self._wake.set()
            config = self._config
            builder = AggregateBuilder(config.aggregation_max_bytes, config.aggregation_max_count)
            current = _Open(shard, builder)
            current.builder.add(record.partition_key, record.data)
            self._open[shard.shard_id] = current
        current.records.append(record)
        if self._oldest is None:
            self._oldest = time.monotonic()
            self._wake.set()

    def _seal(self, current: _Open, ripe: bool = False) -> None:
        shard = current.shard
        del self._open[shard.shard_id]
        builder = current.builder
        if builder.count == 1:  # a lone record goes as a plain Kinesis record
            only = current.records[0]
            entry = _Entry(shard, current.records, only.data, only.partition_key)
        else:
            entry = _Entry(shard, current.records, builder.encode(), builder.partition_key)
        entry.flushed = ripe
        if entry.size > KINESIS_MAX_RECORD_BYTES:
            self._fail(current.records, "record exceeds the 1 MiB Kinesis record limit")
            return
        self._sealed.append(entry)
        self._sealed_bytes += entry.size

    async def _run_or_fail(self) -> None:
        """The dispatch loop; should it ever fail, every record it holds is answered
        ``RecordNotAccepted`` (503, send again) and nothing more is taken: a caller never waits
        for a record nobody will send, and ``/health`` turns 503 so the task is replaced."""
        try:
            await self._run()
        except Exception as exc:
            log.critical("the collector's dispatch loop failed", exc_info=True)
            self.broken = exc
            stranded = [r for o in self._open.values() for r in o.records]
            stranded += [r for e in self._sealed for r in e.records]
            self._open.clear()
            self._sealed.clear()
            self._fail(stranded, f"the producer's collector stopped: {exc!r}")
            if self._sends:
                await asyncio.wait(set(self._sends))

    async def _run(self) -> None:
        while True:
            timeout = None
            if self._oldest is not None:
                timeout = max(0.0, self._oldest + self._config.max_buffered_time - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            due = self._oldest is not None and (
                time.monotonic() >= self._oldest + self._config.max_buffered_time
            )
            if due or self._closing:
                for current in list(self._open.values()):
                    self._seal(current)
                self._oldest = None
            await self._dispatch(flush=due or self._closing)
            if self._closing and not self._open and not self._sealed and not self._sends:
                return
            if self._closing and self._sends:
                await asyncio.wait(set(self._sends))

    async def _dispatch(self, flush: bool) -> None:
        """Send sealed entries: at most one entry per shard in flight, so that a retried entry
        is never overtaken by a later one of its shard (per-key order survives retries).

        Entries go once flushed (a full aggregate, or its buffered time is up), or when a
        PutRecords call's worth (500 entries or 5 MiB) is waiting.
        """
        if flush:
            for entry in self._sealed:
                entry.flushed = True
        limiter = self._limiter
        while True:
            batch: list[_Entry] = []
            keep: list[_Entry] = []
            shards: set[str] = set()  # in this batch, or held by the rate limit: later ones wait
            size, overflow, wait = 0, False, 0.0
            for entry in self._sealed:
                shard_id = entry.shard.shard_id
                if shard_id in self._busy or shard_id in shards:
                    keep.append(entry)
                elif delay := limiter.delay(shard_id, entry.size):
                    keep.append(entry)
                    shards.add(shard_id)
                    wait = delay if not wait else min(wait, delay)
                    if not entry.held:
                        entry.held = True
                        self.metrics.count("KinesisRecordsRateLimited")
                elif (
                    len(batch) == PUT_RECORDS_MAX_COUNT or size + entry.size > PUT_RECORDS_MAX_BYTES
                ):
                    keep.append(entry)
                    overflow = True
                else:
                    batch.append(entry)
                    shards.add(shard_id)
                    size += entry.size
            if wait:
                self._wake_in(wait)
            if not batch or not (overflow or any(e.flushed for e in batch)):
                return
            self._sealed = keep
            self._sealed_bytes -= size
            for entry in batch:
                limiter.take(entry.shard.shard_id, entry.size)
                self._busy.add(entry.shard.shard_id)
            await self._in_flight.acquire()
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    def _wake_in(self, delay: float) -> None:
        """Run the dispatch again in ``delay`` seconds (a shard's rate limit lets it go)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        if self._limit_timer is not None:  # pending: it clears itself when it fires
            if self._limit_at <= when:
                return  # a wake-up that comes sooner is set already
            self._limit_timer.cancel()
        self._limit_at = when
        self._limit_timer = loop.call_at(when, self._limit_timer_fired)

    def _limit_timer_fired(self) -> None:
        # uvloop's clock has millisecond steps and is read once per loop iteration: comparing
        # times cannot tell whether a timer already fired, this can
        self._limit_timer = None
        self._wake.set()

    async def _send(self, batch: list[_Entry]) -> None:
        try:
            await self._send_until_done(batch)
        except Exception as exc:  # never leave a caller waiting forever
            log.exception("PutRecords failed unexpectedly")
            for entry in batch:
                self._fail(entry.records, f"internal error: {exc}")
                self._busy.discard(entry.shard.shard_id)
        finally:
            self._in_flight.release()
            self._wake.set()

    async def _send_until_done(self, batch: list[_Entry]) -> None:
        while batch:
            batch = [e for e in batch if not self._expired(e)]
            if not batch:
                return
            try:
                response = await asyncio.to_thread(self._put_records, batch)
            except Exception as exc:  # transport or service error: retry the whole call
                log.warning("PutRecords call failed, retrying", extra={"error": str(exc)})
                self.metrics.error(type(exc).__name__)
                self.metrics.count("Retries", len(batch))
                await self._backoff(batch)
                continue
            batch, misrouted = self._settle(batch, response["Records"])
            if misrouted:
                await self._reroute(misrouted)
            if batch:
                await self._backoff(batch)

    def _put_records(self, batch: list[_Entry]) -> dict[str, Any]:
        self.metrics.count("PutRecordsCalls")
        return self._client.put_records(
            StreamName=self._config.stream_name,
            Records=[{"Data": e.payload, "PartitionKey": e.partition_key} for e in batch],
        )

    def _settle(
        self, batch: list[_Entry], results: list[dict[str, Any]]
    ) -> tuple[list[_Entry], list[UserRecord]]:
        """Answer accepted entries; return the entries to retry and the records to re-route."""
        retry: list[_Entry] = []
        misrouted: list[UserRecord] = []
        metrics, now, ttl = self.metrics, time.monotonic(), self._config.record_ttl
        for entry, result in zip(batch, results, strict=True):
            if "ErrorCode" in result:
                log.warning("record not accepted", extra={"code": result["ErrorCode"]})
                metrics.error(result["ErrorCode"])
                if result["ErrorCode"] == "ProvisionedThroughputExceededException":
                    metrics.shard_throttled[entry.shard.shard_id] += 1
                metrics.count("Retries")
                retry.append(entry)
            elif result["ShardId"] != entry.shard.shard_id and len(entry.records) > 1:
                metrics.count("Reroutes")
                misrouted.extend(entry.records)
                self._busy.discard(entry.shard.shard_id)
            else:
                self._busy.discard(entry.shard.shard_id)
                accepted = Accepted(result["ShardId"], result["SequenceNumber"])
                deadlines = 0.0
                for record in entry.records:
                    self._settle_record(record, accepted)
                    deadlines += record.deadline  # taken at deadline - ttl
                count = len(entry.records)
                longest = now + ttl - min(r.deadline for r in entry.records)
                waited = (now + ttl) * count - deadlines
                metrics.observe_total("BufferingTime", waited * 1000, count, longest * 1000)
                metrics.count("KinesisRecordsPut")
                metrics.shard_put(result["ShardId"], entry.size)
                metrics.count("UserRecordsPut", len(entry.records))
                metrics.observe("UserRecordsPerKinesisRecord", len(entry.records))
        return retry, misrouted

    async def _reroute(self, records: list[UserRecord]) -> None:
        log.warning("aggregate landed on another shard; reloading the shard map")
        self._adopt(await asyncio.to_thread(ShardMap.load, self._client, self._config.stream_name))
        self._route_again(records)

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._config.shard_refresh_interval)
            try:
                loaded = await asyncio.to_thread(
                    ShardMap.load, self._client, self._config.stream_name
                )
            except Exception as exc:  # the old map stays; misroutes are still repaired
                log.warning("shard map refresh failed", extra={"error": str(exc)})
                continue
            if [s.shard_id for s in loaded.shards] != [s.shard_id for s in self._map.shards]:
                log.info("the stream was resharded; routing by the new shard map")
                self._adopt(loaded)
                self._route_again([])

    def _adopt(self, shard_map: ShardMap) -> None:
        self.metrics.count("ShardMapRefreshes")
        self._map = shard_map
        self._limiter.retain(s.shard_id for s in shard_map.shards)

    def _route_again(self, records: list[UserRecord]) -> None:
        """Route ``records`` and every aggregate not yet sealed against the current map."""
        for shard_id in list(self._open):
            records.extend(self._open.pop(shard_id).records)
        if records:
            self._oldest = None
        for record in records:
            self._route(record)
        self._wake.set()

    def _expired(self, entry: _Entry) -> bool:
        if min(r.deadline for r in entry.records) > time.monotonic():
            return False
        self._fail(entry.records, "not accepted by Kinesis within the record TTL")
        self._busy.discard(entry.shard.shard_id)
        return True

    async def _backoff(self, batch: list[_Entry]) -> None:
        attempts = max(e.attempts for e in batch)
        for entry in batch:
            entry.attempts += 1
        cap = min(self._config.backoff_max, self._config.backoff_base * 2**attempts)
        await asyncio.sleep(random.uniform(0, cap))

    def _fail(self, records: list[UserRecord], reason: str) -> None:
        for record in records:
            if record.outcome is None:
                self._settle_record(record, RecordNotAccepted(reason))
                self.metrics.count("UserRecordsNotAccepted")
