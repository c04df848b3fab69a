"""The KCL's first leases, written by the local stack before the KCL starts (local only).

A KCL worker that finds its lease table empty waits a random 1 to 30 s, checking every 3 s,
before it creates the leases itself, so that workers starting together do not all sync shards
(KCL 3.1.3 ``Scheduler.shouldInitiateLeaseSync``: ``MIN_WAIT_TIME_FOR_LEASE_TABLE_CHECK_MILLIS``
1000, ``MAX_...`` 30000, not configurable). The local stack's DynamoDB Local is new at every
start, so every ``make run`` paid that wait. Writing the leases first lets the worker skip it;
the KCL then assigns and serves them as if it had created them.

The items are what the KCL's own first shard sync writes for a shard of a new stream
(``HierarchicalShardSyncer.newKCLLease``, serialized by ``DynamoDBLeaseSerializer
.toDynamoRecord``): ``leaseKey`` = the shard id, ``leaseCounter`` 0, no ``leaseOwner`` (the
leader assigns it), ``ownerSwitchesSinceCheckpoint`` 0, ``checkpoint`` = the initial position
(``TRIM_HORIZON`` or ``LATEST``) with ``checkpointSubSequenceNumber`` 0, and the shard's
``startingHashKey``/``endingHashKey`` (a new stream's shards have no parents, so no
``parentShardId``). Each is put only if absent (as the KCL's ``createLeaseIfNotExists``). In
AWS nothing of this runs: the KCL creates its leases on the first deployment, once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from common.kinesis import Shard


def lease_item(shard: Shard, initial_position: str) -> dict[str, dict[str, str]]:
    """The lease table item for one shard of a new stream, as the KCL writes it."""
    return {
        "leaseKey": {"S": shard.shard_id},
        "leaseCounter": {"N": "0"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "checkpoint": {"S": initial_position},
        "checkpointSubSequenceNumber": {"N": "0"},
        "startingHashKey": {"S": str(shard.start)},
        "endingHashKey": {"S": str(shard.end)},
    }


def create_leases(ddb: Any, table: str, shards: Iterable[Shard], initial_position: str) -> int:
    """Put a lease for each shard that has none; returns how many were put."""
    put = 0
    for shard in shards:
        try:
            ddb.put_item(
                TableName=table,
                Item=lease_item(shard, initial_position),
                ConditionExpression="attribute_not_exists(leaseKey)",
            )
            put += 1
        except ddb.exceptions.ConditionalCheckFailedException:
            continue  # the KCL (or an earlier call) was first
    return put
