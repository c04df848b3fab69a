"""Rebuilding the records table from the stream: a second KCL application that starts at a
moment (AT_TIMESTAMP) and writes into the same table.

After a bad deploy, or a table deleted or restored to an older point, every record still in
the stream (its retention) can be read again from a timestamp. The consumer's own application
keeps its checkpoints and goes on; a *rebuild* application, named
``<application>-rebuild-<YYYYMMDDTHHMMSSZ>`` (its own lease, worker-metrics and coordinator
tables and, with enhanced fan-out, its own registered consumer), has no checkpoints, so the KCL
starts every shard at the timestamp. Its writes are the consumer's idempotent upserts by record
id: a record already in the table is overwritten with the same item, none is duplicated.

In AWS the stack runs it (``pulumi config set rebuildFrom 2026-11-30T10:00:00Z``, see
README "Operating it"); locally ``python -m local_stack.rebuild --from ...`` does. Either way
``progress`` tells when it has caught up: ``python -m consumer.rebuild --from ...`` (with the
consumer's ``CONSUMER_*`` settings) prints it per shard and exits 0 once every shard is read
up to ``--until`` (default: a minute ago).

Caught up, per shard: its lease in the rebuild's lease table is at SHARD_END, or the first
record after its checkpoint (after the timestamp when it has none yet) arrived at or after
``until``, or there is none. A shard not leased yet counts as caught up only when it holds
nothing in [since, until). A checkpoint covers its whole Kinesis record: the processor
checkpoints at a batch's last record and the KCL hands over whole KPL aggregates.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from common.kinesis import is_open, list_shards

SENTINELS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
MAX_EMPTY_READS = 20  # GetRecords answers may be empty before the first record of a shard


def rebuild_application(application: str, since: datetime) -> str:
    """The rebuild's KCL application name: the consumer's and the moment, to the second (a
    new moment is a new application, with fresh tables and no checkpoints)."""
    return f"{application}-rebuild-{since.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def rebuild_environment(application: str, since: datetime) -> dict[str, str]:
    """What the rebuild's task changes in the consumer's environment."""
    return {
        "CONSUMER_APPLICATION_NAME": rebuild_application(application, since),
        "CONSUMER_INITIAL_POSITION": "AT_TIMESTAMP",
        "CONSUMER_INITIAL_TIMESTAMP": since.astimezone(UTC).isoformat(),
    }


def parse_moment(text: str) -> datetime:
    """ISO 8601 with a zone, or epoch seconds."""
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add Z or an offset")
    return moment


@dataclass(frozen=True)
class ShardProgress:
    shard_id: str
    open: bool
    checkpoint: str  # the lease's checkpoint; "" when the shard has no lease yet
    done: bool
    detail: str


def _leases(ddb: Any, table: str) -> dict[str, str]:
    leases, kwargs = {}, {"TableName": table, "ConsistentRead": True}
    while True:
        page = ddb.scan(**kwargs)
        for item in page["Items"]:
            leases[item["leaseKey"]["S"]] = item.get("checkpoint", {}).get("S", "")
        if "LastEvaluatedKey" not in page:
            return leases
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _next_arrival(kinesis: Any, stream: str, shard_id: str, **position: Any) -> datetime | None:
    """When the first record at ``position`` arrived; None when the shard has none there."""
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, **position)[
        "ShardIterator"
    ]
    for _ in range(MAX_EMPTY_READS):
        answer = kinesis.get_records(ShardIterator=iterator, Limit=1)
        if answer["Records"]:
            arrived: datetime = answer["Records"][0]["ApproximateArrivalTimestamp"]
            return arrived
        iterator = answer.get("NextShardIterator")
        if not iterator or not answer.get("MillisBehindLatest"):
            return None  # the end of a closed shard, or the tip of an open one
    raise RuntimeError(f"{shard_id}: no record found after {MAX_EMPTY_READS} reads")


def progress(
    kinesis: Any, ddb: Any, stream: str, application: str, since: datetime, until: datetime
) -> list[ShardProgress]:
    """Each shard of ``stream``: whether the rebuild application has read it up to ``until``."""
    leases = _leases(ddb, application)
    found = []
    for shard in list_shards(kinesis, stream):
        shard_id, still_open = shard["ShardId"], is_open(shard)
        checkpoint = leases.get(shard_id, "")
        if checkpoint == "SHARD_END":
            found.append(ShardProgress(shard_id, still_open, checkpoint, True, "read to its end"))
            continue
        if checkpoint and checkpoint not in SENTINELS:
            position: dict[str, Any] = {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "StartingSequenceNumber": checkpoint,
            }
        else:
            position = {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": since}
        arrival = _next_arrival(kinesis, stream, shard_id, **position)
        done = arrival is None or arrival >= until
        detail = (
            "nothing left before until"
            if done
            else f"next record unread arrived {arrival:%Y-%m-%d %H:%M:%S}"
        )
        if not checkpoint:
            detail += "; not leased yet"
        found.append(ShardProgress(shard_id, still_open, checkpoint, done, detail))
    return found


def caught_up(shards: list[ShardProgress]) -> bool:
    return bool(shards) and all(s.done for s in shards)


def main(argv: list[str] | None = None) -> int:
    from consumer.config import get_settings

    parser = argparse.ArgumentParser(
        prog="python -m consumer.rebuild",
        description="Whether the rebuild from a moment has read every shard (exit 0) or not "
        "(exit 1). Reads the consumer's CONSUMER_* settings.",
    )
    parser.add_argument(
        "--from",
        dest="since",
        required=True,
        type=parse_moment,
        help="the rebuild's start (rebuildFrom): ISO 8601 with a zone",
    )
    parser.add_argument(
        "--until", type=parse_moment, default=None, help="read up to here (default: a minute ago)"
    )
    parser.add_argument("--kinesis-ca-bundle", help="PEM to verify a local Kinesis endpoint")
    args = parser.parse_args(argv)
    settings = get_settings()
    kinesis, ddb = settings.tool_clients(args.kinesis_ca_bundle)
    until = args.until or datetime.now(UTC) - timedelta(minutes=1)
    application = rebuild_application(settings.application_name, args.since)
    shards = progress(kinesis, ddb, settings.stream_name, application, args.since, until)
    for shard in shards:
        sys.stdout.write(
            f"{shard.shard_id} {'done' if shard.done else 'reading'}: {shard.detail}\n"
        )
    verdict = "caught up" if caught_up(shards) else "not caught up"
    sys.stdout.write(f"{application}: {verdict} to {until.isoformat()}\n")
    return 0 if caught_up(shards) else 1


def wait(
    kinesis: Any,
    ddb: Any,
    stream: str,
    application: str,
    since: datetime,
    until: datetime,
    timeout: float,
    every: float = 5.0,
    say: Any = None,
) -> list[ShardProgress]:
    """``progress`` every ``every`` seconds until caught up or ``timeout``; the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            shards = progress(kinesis, ddb, stream, application, since, until)
        except Exception as exc:  # the lease table not there yet, a throttled read
            if say:
                say(f"progress not known yet: {exc}")
            shards = []
        if caught_up(shards) or time.monotonic() > deadline:
            return shards
        if say and shards:
            say(f"{sum(s.done for s in shards)}/{len(shards)} shards caught up")
        time.sleep(every)


if __name__ == "__main__":
    sys.exit(main())
