"""What the scaler remembers across restarts, in one DynamoDB item per stream.

- the resharding operations it started in the last 24 h: the UpdateShardCount budget is a
  rolling 24 h count (Kinesis API Reference, UpdateShardCount: at most ten scalings per
  rolling 24 h per stream), and the cool-offs count
  from the last scale-up and the last scale-down;
- when AWS last refused UpdateShardCount (LimitExceeded: split and merge until a day passed);
- the last decision and when it was taken, and the consumer's maximum task count last set.

The policy counts time in samples (a minute with CloudWatch, one check interval with the
producer source); the item keeps epoch seconds, so a restarted scaler with another interval
reads the same history. ``python -m scaler.state`` prints the item (``SCALER_*`` settings).

Writes are conditional on the version read (``StateConflict`` when another writer got in
between): the scaler deploys one task at a time, and this keeps a second one that overlaps
from acting on a history it has not seen.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from botocore.exceptions import ClientError

from scaler.model import Action, Decision
from scaler.policy import Operation

MAX_OPERATIONS = 500  # ~100 KB of JSON, far under DynamoDB's 400 KB item


class StateConflict(Exception):
    """The item changed since it was read: another scaler wrote it."""


@dataclass(frozen=True)
class ScalerState:
    """Times in samples (``Operation.minute``, ``updates_refused_at``); ``checked_at`` and
    ``version`` as stored."""

    operations: tuple[Operation, ...] = ()
    updates_refused_at: int | None = None
    last_decision: Decision | None = None
    checked_at: float | None = None  # epoch seconds of the last check
    consumer_max: int | None = None
    version: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def pruned(self, now: int, keep: int) -> ScalerState:
        """Without the operations older than ``keep`` samples (and at most MAX_OPERATIONS)."""
        recent = [op for op in self.operations if now - op.minute < keep]
        return replace(self, operations=tuple(recent[-MAX_OPERATIONS:]))


def decision_to_json(decision: Decision) -> dict[str, Any]:
    return {"action": str(decision.action), "reason": decision.reason,
            "current": decision.current, "target": decision.target,
            "shards": list(decision.shards), "split_at": decision.split_at,
            "refused": decision.refused}  # fmt: skip


def decision_from_json(data: dict[str, Any]) -> Decision:
    split_at = data.get("split_at")
    return Decision(Action(data["action"]), str(data["reason"]), int(data["current"]),
                    int(data["target"]), tuple(data.get("shards", ())),
                    int(split_at) if split_at is not None else None,
                    bool(data.get("refused", False)))  # fmt: skip


def to_item(stream: str, state: ScalerState, sample_seconds: float) -> dict[str, Any]:
    """The DynamoDB item (low-level attribute values), times in epoch seconds."""
    operations = [{"at": op.minute * sample_seconds, **decision_to_json(op.decision)}
                  for op in state.operations]  # fmt: skip
    item: dict[str, Any] = {
        "stream": {"S": stream},
        "version": {"N": str(state.version)},
        "operations": {"S": json.dumps(operations, separators=(",", ":"))},
    }
    if state.updates_refused_at is not None:
        item["updates_refused_at"] = {"N": repr(state.updates_refused_at * sample_seconds)}
    if state.last_decision is not None:
        item["last_decision"] = {"S": json.dumps(decision_to_json(state.last_decision))}
    if state.checked_at is not None:
        item["checked_at"] = {"N": repr(round(state.checked_at, 3))}
    if state.consumer_max is not None:
        item["consumer_max"] = {"N": str(state.consumer_max)}
    return item


def from_item(item: dict[str, Any], sample_seconds: float) -> ScalerState:
    """The state an item holds, times converted to samples of ``sample_seconds``."""

    def number(name: str) -> float | None:
        return float(item[name]["N"]) if name in item else None

    operations = tuple(
        Operation(int(float(op["at"]) // sample_seconds), decision_from_json(op))
        for op in json.loads(item.get("operations", {}).get("S", "[]"))
    )
    refused = number("updates_refused_at")
    last = item.get("last_decision", {}).get("S")
    consumer_max = number("consumer_max")
    return ScalerState(
        operations=operations,
        updates_refused_at=int(refused // sample_seconds) if refused is not None else None,
        last_decision=decision_from_json(json.loads(last)) if last else None,
        checked_at=number("checked_at"),
        consumer_max=int(consumer_max) if consumer_max is not None else None,
        version=int(item.get("version", {}).get("N", "0")),
    )


class StateStore(Protocol):
    def load(self) -> ScalerState:
        """The stored state (an empty one when there is none yet)."""
        ...

    def save(self, state: ScalerState) -> ScalerState:
        """Store ``state`` if the item is still at ``state.version``; returns it with the new
        version. Raises ``StateConflict`` otherwise."""
        ...


class MemoryStateStore:
    """A store that lives as long as the process (tests, the simulation): ``item`` is what
    DynamoDB would hold, so a 'restart' that keeps the store reads the item back."""

    def __init__(self, stream: str = "stream", sample_seconds: float = 60.0) -> None:
        self.stream, self.sample_seconds = stream, sample_seconds
        self.item: dict[str, Any] | None = None
        self.saves = 0

    def load(self) -> ScalerState:
        return from_item(self.item, self.sample_seconds) if self.item else ScalerState()

    def save(self, state: ScalerState) -> ScalerState:
        stored = int(self.item["version"]["N"]) if self.item else 0
        if stored != state.version:
            raise StateConflict(f"version {stored} stored, {state.version} read")
        saved = replace(state, version=state.version + 1)
        self.item = to_item(self.stream, saved, self.sample_seconds)
        self.saves += 1
        return saved


class DynamoDBStateStore:
    """The state item in a DynamoDB table keyed by ``stream`` (GetItem and PutItem only)."""

    def __init__(self, client: Any, table: str, stream: str, sample_seconds: float) -> None:
        self._client, self.table = client, table
        self.stream, self.sample_seconds = stream, sample_seconds

    def load(self) -> ScalerState:
        found = self._client.get_item(
            TableName=self.table, Key={"stream": {"S": self.stream}}, ConsistentRead=True
        )
        item = found.get("Item")
        return from_item(item, self.sample_seconds) if item else ScalerState()

    def save(self, state: ScalerState) -> ScalerState:
        saved = replace(state, version=state.version + 1)
        condition = (
            {"ConditionExpression": "#v = :v",
             "ExpressionAttributeValues": {":v": {"N": str(state.version)}}}
            if state.version
            else {"ConditionExpression": "attribute_not_exists(#v)"}
        )  # fmt: skip
        try:
            self._client.put_item(
                TableName=self.table,
                Item=to_item(self.stream, saved, self.sample_seconds),
                ExpressionAttributeNames={"#v": "version"},
                **condition,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            raise StateConflict(f"the scaler state of {self.stream} changed since read") from exc
        return saved


def describe(state: ScalerState, sample_seconds: float) -> dict[str, Any]:
    """The state for people: epoch seconds, the decisions as JSON."""
    return {
        "version": state.version,
        "checked_at": state.checked_at,
        "last_decision": decision_to_json(state.last_decision) if state.last_decision else None,
        "consumer_max": state.consumer_max,
        "updates_refused_at": (state.updates_refused_at * sample_seconds
                               if state.updates_refused_at is not None else None),
        "operations": [{"at": op.minute * sample_seconds, **decision_to_json(op.decision)}
                       for op in state.operations],
    }  # fmt: skip


def main() -> int:
    """Print the scaler's stored state for its stream (``SCALER_*`` settings)."""
    import boto3

    from scaler.config import get_settings

    settings = get_settings()
    if not settings.state_table:
        sys.stderr.write("SCALER_STATE_TABLE is not set: the scaler keeps no state\n")
        return 1
    client = boto3.client("dynamodb", region_name=settings.region,
                          endpoint_url=settings.dynamodb_endpoint)  # fmt: skip
    store = DynamoDBStateStore(client, settings.state_table, settings.stream_name,
                               settings.sample_seconds)  # fmt: skip
    sys.stdout.write(json.dumps(describe(store.load(), settings.sample_seconds), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
