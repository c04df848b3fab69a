# A mixin whose methods take the collector as self (`self: KinesisCollector`), which mypy calls
# [misc] for a class that is not a supertype of it; the bodies are still checked against it.
# mypy: disable-error-code="misc"
"""Following reshards without breaking a key's order (the collector's shard map and queues).

The KCL drops a whole aggregate when any record inside hashes outside the shard it landed on,
so when an aggregate lands on another shard than the map said (a split, a merge or
UpdateShardCount since the map was read), its records are sent again; re-sending is safe
because the consumer writes idempotently by record id. Order per key holds because:

- when an entry comes back from another shard than its own, that shard's queue stops sending
  until the map is reloaded (ListShards): nothing later of its keys can overtake it;
- on adopting a new map, the misrouted records and then everything queued for a closed shard
  are routed again *in front* of the new shards' queues, in the order they were taken;
- the new shards whose ranges overlap a closed shard wait while an entry of that shard is
  still in flight (it may come back misrouted, and its records go first);
- an entry that has to be retried after its shard was closed is routed again the same way.

A misrouted aggregate whose records all lie in the shard it landed on is kept (the KCL keeps
it too); a lone record is always kept where Kinesis put it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import TYPE_CHECKING

from common.kinesis import Shard, hash_key
from producer.shardqueue import Accepted, Entry, ShardQueue, UserRecord
from producer.shards import ShardMap

if TYPE_CHECKING:
    from mypy_boto3_kinesis.type_defs import PutRecordsResultEntryTypeDef

    from producer.collector import KinesisCollector

log = logging.getLogger(__name__)


def _overlap(a: Shard, b: Shard) -> bool:
    return a.start <= b.end and b.start <= a.end


class Resharding:
    """Mixed into ``KinesisCollector``: the shard map, the queues by shard, and reshards."""

    def __init__(self: KinesisCollector, shard_map: ShardMap) -> None:
        self._map = shard_map
        self._queues: dict[str, ShardQueue] = {
            s.shard_id: self._new_queue(s) for s in shard_map.shards
        }
        self._stale_flying: dict[str, Shard] = {}  # closed shards with an entry in flight
        self._misrouted: list[tuple[Entry, Accepted]] = []  # waiting for the map's reload
        self._reload: asyncio.Task[None] | None = None
        self._reload_backoff = 0.0
        self._refresher: asyncio.Task[None] | None = None

    def _queue_for(self: KinesisCollector, partition_key: str) -> ShardQueue:
        return self._queues[self._map.shard_for(partition_key).shard_id]

    def _all_queues(self: KinesisCollector) -> list[ShardQueue]:
        return list(self._queues.values())

    def _drop_queues(self: KinesisCollector) -> None:
        self._queues = {s.shard_id: self._new_queue(s) for s in self._map.shards}

    def _resharding_busy(self: KinesisCollector) -> bool:
        return self._reload is not None or bool(self._misrouted)

    def _behind_stale(self: KinesisCollector, shard: Shard) -> bool:
        """A closed shard overlapping ``shard`` still has an entry in flight."""
        return any(_overlap(shard, s) for s in self._stale_flying.values())

    def _shard_free(self: KinesisCollector, shard: Shard) -> None:
        queue = self._queues.get(shard.shard_id)
        if queue is not None:
            queue.busy = False
        else:
            self._stale_flying.pop(shard.shard_id, None)
        self._wake.set()

    def _resend_here(self: KinesisCollector, entry: Entry, live: list[UserRecord]) -> bool:
        """Whether ``entry`` may be sent again to its shard; if the shard was closed, its
        records are routed again, in front of the queues they now belong to."""
        if entry.shard.shard_id in self._queues:
            return True
        self._route_front(live)
        return False

    def _landed_elsewhere(
        self: KinesisCollector, entry: Entry, result: PutRecordsResultEntryTypeDef
    ) -> None:
        accepted = Accepted(result["ShardId"], result["SequenceNumber"])
        stale_map = entry.shard.shard_id in self._queues
        if stale_map:
            self._suspect(entry.shard)
        if len(entry.records) == 1:
            self._accept(entry, accepted)  # a plain record: stored where its key belongs
            return
        self.metrics.count("Reroutes")
        self._landed(entry)
        if stale_map:
            self._misrouted.append((entry, accepted))
        else:
            fronts: dict[str, list[UserRecord]] = defaultdict(list)
            self._resolve(entry, accepted, fronts)
            self._prepend(fronts)

    def _suspect(self: KinesisCollector, shard: Shard) -> None:
        """The map is stale around ``shard``: hold its queue and reload the map."""
        for queue in self._queues.values():
            if _overlap(queue.shard, shard):
                queue.blocked = True
        if self._reload is None:
            log.warning("a record landed on another shard; reloading the shard map")
            self._reload = asyncio.get_running_loop().create_task(self._reload_map())

    async def _reload_map(self: KinesisCollector) -> None:
        try:
            if self._reload_backoff:
                await asyncio.sleep(self._reload_backoff)
            loaded = await self._call(ShardMap.load, self._client, self._config.stream_name)
        except Exception as exc:  # route again by the map we have; a misroute tries again
            log.warning("shard map reload failed", extra={"error": str(exc)})
            loaded = self._map
        unchanged = [s.shard_id for s in loaded.shards] == [s.shard_id for s in self._map.shards]
        self._reload_backoff = (
            min(self._config.backoff_max, max(self._config.backoff_base, self._reload_backoff * 2))
            if unchanged
            else 0.0
        )
        self._reload = None
        self._adopt(loaded)

    def _start_refresher(self: KinesisCollector) -> None:
        if self._config.shard_refresh_interval > 0:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_periodically())

    def _stop_refresher(self: KinesisCollector) -> None:
        if self._refresher is not None:
            self._refresher.cancel()

    async def _refresh_periodically(self: KinesisCollector) -> None:
        while True:
            await asyncio.sleep(self._config.shard_refresh_interval)
            try:
                loaded = await self._call(ShardMap.load, self._client, self._config.stream_name)
            except Exception as exc:  # the old map stays; misroutes are still repaired
                log.warning("shard map refresh failed", extra={"error": str(exc)})
                continue
            if [s.shard_id for s in loaded.shards] != [s.shard_id for s in self._map.shards]:
                log.info("the stream was resharded; routing by the new shard map")
                self._adopt(loaded)

    def _adopt(self: KinesisCollector, shard_map: ShardMap) -> None:
        """Route by ``shard_map`` from now on: the misrouted records first, then what waited
        for the shards it no longer has, each in front of its new queue, in order."""
        old = self._queues
        if [s.shard_id for s in shard_map.shards] != list(old):
            self.metrics.count("ShardMapRefreshes")
        self._map = shard_map
        self._queues = {
            s.shard_id: old.get(s.shard_id) or self._new_queue(s) for s in shard_map.shards
        }
        fronts: dict[str, list[UserRecord]] = defaultdict(list)
        misrouted, self._misrouted = self._misrouted, []
        for entry, accepted in misrouted:
            self._resolve(entry, accepted, fronts)
        for shard_id, queue in old.items():
            if shard_id in self._queues:
                continue
            for record in queue.records():
                if record.outcome is None:
                    fronts[self._map.shard_for(record.partition_key).shard_id].append(record)
            if queue.busy:
                self._stale_flying[shard_id] = queue.shard
        for queue in self._queues.values():
            queue.blocked = False
        self._prepend(fronts)
        self._limiter.retain(self._queues)
        self._wake.set()

    def _resolve(
        self: KinesisCollector,
        entry: Entry,
        accepted: Accepted,
        fronts: dict[str, list[UserRecord]],
    ) -> None:
        """Keep a misrouted aggregate whose records all lie in the shard it landed on, else
        collect its records (in order) to go in front of their queues."""
        landed = self._queues.get(accepted.shard_id)
        live = [r for r in entry.records if r.outcome is None]
        if landed is not None and all(landed.shard.owns(hash_key(r.partition_key)) for r in live):
            self._accept(entry, accepted)
            return
        for record in live:
            fronts[self._map.shard_for(record.partition_key).shard_id].append(record)

    def _route_front(self: KinesisCollector, records: list[UserRecord]) -> None:
        fronts: dict[str, list[UserRecord]] = defaultdict(list)
        for record in records:
            fronts[self._map.shard_for(record.partition_key).shard_id].append(record)
        self._prepend(fronts)

    def _prepend(self: KinesisCollector, fronts: dict[str, list[UserRecord]]) -> None:
        for shard_id, records in fronts.items():
            queue = self._queues[shard_id]
            queue.prepend(records)
            for entry in list(queue.entries)[: len(records)]:
                self._sealed(entry)
        if fronts:
            self._wake.set()
