"""The leases the local stack writes ahead are the KCL's own first leases, each put once."""

from __future__ import annotations

from typing import Any

import pytest

from local_stack.leases import create_leases, lease_item
from tests.fakes import even_shards

SHARDS = even_shards(2)


def test_a_lease_is_what_the_kcl_writes_for_a_new_shard() -> None:
    # GIVEN the first shard of a new stream WHEN its lease is made
    item = lease_item(SHARDS[0], "TRIM_HORIZON")
    # THEN it has the attributes of KCL 3.1.3's DynamoDBLeaseSerializer for a new lease
    # (the KCL logged it: leaseOwner=null, leaseCounter=0, checkpoint={TRIM_HORIZON, 0},
    # ownerSwitchesSinceCheckpoint=0, parentShardIds=[], hashKeyRangeForLease=(start, end))
    assert item == {
        "leaseKey": {"S": "shardId-000000000000"},
        "leaseCounter": {"N": "0"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "checkpoint": {"S": "TRIM_HORIZON"},
        "checkpointSubSequenceNumber": {"N": "0"},
        "startingHashKey": {"S": "0"},
        "endingHashKey": {"S": str(2**127 - 1)},
    }
    assert "leaseOwner" not in item  # the leader assigns it


class FakeTable:
    class exceptions:
        class ConditionalCheckFailedException(Exception):
            pass

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def put_item(self, TableName: str, Item: dict[str, Any], ConditionExpression: str) -> None:
        assert ConditionExpression == "attribute_not_exists(leaseKey)"
        if Item["leaseKey"]["S"] in self.items:
            raise self.exceptions.ConditionalCheckFailedException()
        self.items[Item["leaseKey"]["S"]] = Item


@pytest.mark.parametrize("position", ["TRIM_HORIZON", "LATEST"])
def test_each_shard_gets_one_lease_and_existing_ones_are_left(position: str) -> None:
    table = FakeTable()
    table.items["shardId-000000000001"] = {"leaseKey": {"S": "shardId-000000000001"}, "x": 1}
    assert create_leases(table, "app", SHARDS, position) == 1
    assert create_leases(table, "app", SHARDS, position) == 0
    assert table.items["shardId-000000000000"]["checkpoint"] == {"S": position}
    assert table.items["shardId-000000000001"]["x"] == 1  # the KCL's own, untouched
