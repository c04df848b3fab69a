"""Telling people, and following the stream with the consumer service.

- ``SnsNotifier``: every resharding operation the scaler starts, every one AWS refuses and every
  change the load calls for that a limit forbids is published to an SNS topic (as Kinesis
  Scaling Utils notifies), a JSON message with a one-line subject. Dry-run decisions too,
  marked as such. A failed publish is logged, never allowed to stop the scaling.
- ``ConsumerCapacity``: the consumer service's maximum task count follows the open shard count
  (a KCL worker without a lease idles and costs money), through Application Auto Scaling's
  RegisterScalableTarget on the target the stack created, within the configured bounds.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from scaler.model import Action, Decision

log = logging.getLogger("scaler")

SUBJECT_MAX = 100  # SNS: subjects are at most 100 printable ASCII characters


class Notifier(Protocol):
    def publish(self, subject: str, message: dict[str, Any]) -> None: ...


def message(
    stream: str, decision: Decision, outcome: str, at: float, **details: Any
) -> tuple[str, dict[str, Any]]:
    """The subject and body of one notification. ``outcome``: applied, dry_run, refused (AWS
    refused the call) or held (a limit forbids what the load calls for)."""
    change = (
        f"{decision.current} -> {decision.target}"
        if decision.action is not Action.HOLD
        else f"at {decision.current}"
    )
    subject = f"{stream}: {decision.action} {change} ({outcome})"
    body = {
        "stream": stream,
        "at": datetime.fromtimestamp(at, UTC).isoformat(),
        "outcome": outcome,
        "action": str(decision.action),
        "reason": decision.reason,
        "current": decision.current,
        "target": decision.target,
        "shards": list(decision.shards),
        **details,
    }
    printable = "".join(c if " " <= c <= "~" else "?" for c in subject)
    return printable[:SUBJECT_MAX], body


class SnsNotifier:
    def __init__(self, client: Any, topic_arn: str) -> None:
        self._client, self.topic_arn = client, topic_arn

    def publish(self, subject: str, message: dict[str, Any]) -> None:
        try:
            self._client.publish(
                TopicArn=self.topic_arn, Subject=subject, Message=json.dumps(message)
            )
        except (BotoCoreError, ClientError) as exc:
            log.error(
                "cannot publish the scaling notification",
                extra={"topic": self.topic_arn, "error": str(exc), "subject": subject},
            )


class ConsumerCapacity:
    """The consumer service's scalable target (``service/<cluster>/<service>``)."""

    def __init__(self, client: Any, resource_id: str, min_tasks: int, max_tasks: int) -> None:
        self._client, self.resource_id = client, resource_id
        self.min_tasks, self.max_tasks = min_tasks, max_tasks

    def wanted(self, open_shards: int) -> int:
        """One task per open shard at most, within the configured bounds."""
        return max(self.min_tasks, min(self.max_tasks, open_shards))

    def set_max(self, tasks: int) -> None:
        """RegisterScalableTarget with only MaxCapacity updates an existing target (Application
        Auto Scaling API reference: MinCapacity and MaxCapacity are optional when updating);
        a desired count above it is lowered to it."""
        self._client.register_scalable_target(
            ServiceNamespace="ecs",
            ResourceId=self.resource_id,
            ScalableDimension="ecs:service:DesiredCount",
            MaxCapacity=tasks,
        )
