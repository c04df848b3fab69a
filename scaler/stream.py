"""The stream's side: its status and open shards, and the three resharding calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from common.kinesis import Shard, open_shards
from scaler.model import Action, Decision


class StreamNotActive(Exception):
    """The stream did not come back to ACTIVE in time after a resharding operation."""


class StreamAdmin:
    def __init__(
        self,
        client: Any,
        stream_name: str,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.stream_name = stream_name
        self._sleep = sleep
        self._clock = clock

    def status(self) -> str:
        summary = self._client.describe_stream_summary(StreamName=self.stream_name)
        return str(summary["StreamDescriptionSummary"]["StreamStatus"])

    def open_shards(self) -> list[Shard]:
        """Shards without an ending sequence number, sorted by hash range."""
        return open_shards(self._client, self.stream_name)

    def apply(self, decision: Decision) -> None:
        """Start the decision's operation (the stream turns UPDATING)."""
        name = self.stream_name
        if decision.action is Action.UPDATE_SHARD_COUNT:
            self._client.update_shard_count(
                StreamName=name, TargetShardCount=decision.target, ScalingType="UNIFORM_SCALING"
            )
        elif decision.action is Action.SPLIT:
            self._client.split_shard(
                StreamName=name,
                ShardToSplit=decision.shards[0],
                NewStartingHashKey=str(decision.split_at),
            )
        elif decision.action is Action.MERGE:
            lower, upper = decision.shards
            self._client.merge_shards(
                StreamName=name, ShardToMerge=lower, AdjacentShardToMerge=upper
            )
        else:
            raise ValueError(f"nothing to apply for {decision.action}")

    def wait_active(self, timeout: float, poll: float = 1.0) -> None:
        deadline = self._clock() + timeout
        while self.status() != "ACTIVE":
            if self._clock() > deadline:
                raise StreamNotActive(f"{self.stream_name} not ACTIVE after {timeout:.0f} s")
            self._sleep(poll)
