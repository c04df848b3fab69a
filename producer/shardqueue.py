"""What waits for one shard: its sealed aggregates in order, then the aggregate still filling.

A shard's queue sends from its head only, one entry at a time (the collector keeps at most one
entry of a shard in flight), so records of a key reach Kinesis in the order they were taken.
Records that must go before everything queued (a misrouted aggregate's, after a reshard) are
put in front with ``prepend``; records past their deadline leave with ``expire`` without
costing the shard any of its rate limit.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from common.kinesis import RECORD_MAX_BYTES, Shard
from producer.aggregation import AggregateBuilder


class RecordNotAccepted(Exception):
    """Kinesis did not accept the record before its TTL ran out."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """Where Kinesis stored a record."""

    shard_id: str
    sequence_number: str


class Ticket:
    """The records of one request: ``wait`` returns (or the ``when_done`` callback runs) once
    each has an ``outcome``."""

    __slots__ = ("_callback", "_future", "pending")

    def __init__(self) -> None:
        self.pending = 0
        self._future: asyncio.Future[None] | None = None
        self._callback: Callable[[], None] | None = None

    async def wait(self) -> None:
        if self.pending:
            self._future = asyncio.get_running_loop().create_future()
            await self._future

    def when_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (which must not raise) once every record has its outcome: now
        when they all have one already, else from the collector, on the event loop."""
        if self.pending:
            self._callback = callback
        else:
            callback()

    def _done_one(self) -> None:
        self.pending -= 1
        if self.pending:
            return
        if self._future is not None and not self._future.done():
            self._future.set_result(None)
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()


@dataclass(slots=True)
class UserRecord:
    partition_key: str
    data: bytes
    ticket: Ticket
    deadline: float
    size: int  # data + partition key, in bytes: what Kinesis counts
    cost: int  # what it holds in memory until answered (``memory.record_cost``)
    outcome: Accepted | RecordNotAccepted | None = None


@dataclass(slots=True)
class Entry:
    """One Kinesis record (an aggregate, or a lone user record) on its way to PutRecords."""

    shard: Shard
    records: list[UserRecord]
    payload: bytes | bytearray  # an aggregate is the encoder's buffer, sent as it is
    partition_key: str
    size: int  # payload + partition key, in bytes
    deadline: float  # the earliest of its records'
    attempts: int = 0
    flushed: bool = False  # full, or its buffered time is up: send once its shard is free
    held: bool = False  # waited for its shard's rate limit at least once


def build_entry(shard: Shard, records: list[UserRecord], builder: AggregateBuilder) -> Entry:
    """The Kinesis record for ``records`` (all added to ``builder``)."""
    if len(records) == 1:  # a lone record goes as a plain Kinesis record
        only = records[0]
        payload: bytes | bytearray = only.data
        key = only.partition_key
        size = only.size
    else:
        payload, key = builder.encode(), builder.partition_key
        size = len(payload) + len(key.encode())
    return Entry(shard, records, payload, key, size, min(r.deadline for r in records))


@dataclass(slots=True)
class ShardQueue:
    shard: Shard
    new_builder: Callable[[], AggregateBuilder]
    entries: deque[Entry] = field(default_factory=deque)
    open_records: list[UserRecord] = field(default_factory=list)
    builder: AggregateBuilder | None = None
    sealed_bytes: int = 0
    busy: bool = False  # an entry of this shard is in flight
    blocked: bool = False  # the shard map may be stale here: wait for it to be reloaded
    oversize: list[UserRecord] = field(default_factory=list)  # sealed over 1 MiB: to refuse

    def add(self, record: UserRecord) -> Entry | None:
        """Append ``record``; the aggregate it filled up, sealed, if any."""
        full = None
        if self.builder is not None and not self.builder.add(record.partition_key, record.data):
            full = self.seal()
        if self.builder is None:
            self.builder = self.new_builder()
            self.builder.add(record.partition_key, record.data)
        self.open_records.append(record)
        if full is not None:
            full.flushed = True  # it cannot grow: it may go at once
        return full

    def seal(self) -> Entry | None:
        """Seal the aggregate being filled; the entry (None when nothing was open or it is over
        the 1 MiB record limit: then its records are left in ``oversize``)."""
        if self.builder is None:
            return None
        entry = build_entry(self.shard, self.open_records, self.builder)
        self.builder, self.open_records = None, []
        if entry.size > RECORD_MAX_BYTES:
            self.oversize = entry.records
            return None
        self.entries.append(entry)
        self.sealed_bytes += entry.size
        return entry

    def backlog(self) -> tuple[int, int]:
        """Kinesis records and bytes waiting here (the open aggregate counts as one)."""
        open_size = self.builder.size if self.builder is not None else 0
        return len(self.entries) + (self.builder is not None), self.sealed_bytes + open_size

    def pop(self) -> Entry:
        entry = self.entries.popleft()
        self.sealed_bytes -= entry.size
        return entry

    def records(self) -> Iterator[UserRecord]:
        """Every record waiting here, in order."""
        for entry in self.entries:
            yield from entry.records
        yield from self.open_records

    def prepend(self, records: list[UserRecord]) -> None:
        """Put ``records`` (in order) before everything waiting here, aggregated, ready to go."""
        entries: list[Entry] = []
        batch: list[UserRecord] = []
        builder = self.new_builder()
        for record in records:
            if batch and not builder.add(record.partition_key, record.data):
                entries.append(build_entry(self.shard, batch, builder))
                builder, batch = self.new_builder(), []
            if not batch:
                builder.add(record.partition_key, record.data)
            batch.append(record)
        if batch:
            entries.append(build_entry(self.shard, batch, builder))
        for entry in reversed(entries):
            entry.flushed = True
            self.entries.appendleft(entry)
            self.sealed_bytes += entry.size

    def expire(self, now: float, fail: Callable[[list[UserRecord]], None]) -> float:
        """Answer the records past their deadline (``fail``) and rebuild the entries they were
        in; the earliest deadline left (inf when none)."""
        kept: deque[Entry] = deque()
        earliest = float("inf")
        for entry in self.entries:
            if entry.deadline <= now:
                self.sealed_bytes -= entry.size
                rebuilt = self._without_expired(entry, now, fail)
                if rebuilt is None:
                    continue
                entry = rebuilt
                self.sealed_bytes += entry.size
            kept.append(entry)
            earliest = min(earliest, entry.deadline)
        self.entries = kept
        return earliest

    def _without_expired(
        self, entry: Entry, now: float, fail: Callable[[list[UserRecord]], None]
    ) -> Entry | None:
        fail([r for r in entry.records if r.deadline <= now])
        live = [r for r in entry.records if r.outcome is None]
        if not live:
            return None
        builder = self.new_builder()
        for record in live:
            builder.add(record.partition_key, record.data)
        rebuilt = build_entry(self.shard, live, builder)
        rebuilt.flushed, rebuilt.held, rebuilt.attempts = True, entry.held, entry.attempts
        return rebuilt
