"""``python -m consumer.replay``: put quarantined records back into the stream.

For after a fix: a consumer that quarantined records it could not store (a bug, a limit since
raised) gets them again through the same path as any record. Each quarantined item's raw bytes
go back to the stream with PutRecord under their original partition key (so they keep their
key's shard and order among new records); only once Kinesis accepted one is its quarantine
item deleted. A record that is still poison comes back to the quarantine under its new
sequence number; a record that was stored meanwhile is overwritten by the same id (the
consumer's writes are idempotent). A record longer than one quarantine item holds is joined
from its parts first (length and SHA-256 checked); one whose parts are not all there, or
whose bytes an older version cut (``data_truncated``), is left and said so.

Reads the consumer's settings (``CONSUMER_*``: stream, quarantine table, region, endpoints), or
with ``--local`` the local stack's (the one running from ``--state-dir``, default
``.local/stack``, found through its endpoints file); ``--reason`` replays only the items whose
reason contains the text; ``--dry-run`` lists.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from common import settings as cli
from consumer.config import ConsumerSettings, get_settings


@dataclass
class Outcome:
    replayed: int = 0
    skipped: int = 0  # the bytes are not all there (parts missing, or cut by an old version)
    failed: int = 0  # PutRecord refused: left in the quarantine
    listed: int = 0  # --dry-run


def scan_all(ddb: Any, table: str) -> Iterator[dict[str, Any]]:
    """Every item of ``table``, page after page (consistent reads)."""
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = ddb.scan(**kwargs)
        yield from page["Items"]
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def replay(
    kinesis: Any,
    ddb: Any,
    stream: str,
    table: str,
    reason: str = "",
    dry_run: bool = False,
    say: Any = None,
) -> Outcome:
    """Replay every quarantined item of ``table`` (whose reason contains ``reason``)."""
    say = say or _say
    outcome = Outcome()
    for item in scan_all(ddb, table):
        if "part_of" in item:
            continue  # read with its head item
        key, why = item["id"]["S"], item.get("reason", {}).get("S", "")
        if reason not in why:
            continue
        if dry_run:
            outcome.listed += 1
            say(f"would replay {key}: {why}")
            continue
        raw, parts = whole(ddb, table, item)
        if raw is None:
            outcome.skipped += 1
            say(f"skipped {key}: {parts}")
            continue
        try:
            put = kinesis.put_record(
                StreamName=stream,
                Data=raw,
                PartitionKey=item.get("partition_key", {}).get("S") or key[:256],
            )
        except (BotoCoreError, ClientError) as exc:
            outcome.failed += 1
            say(f"failed {key}: {exc} (left in the quarantine)")
            continue
        for part_key in [key, *parts]:  # the head first: parts without it are never read
            ddb.delete_item(TableName=table, Key={"id": {"S": part_key}})
        outcome.replayed += 1
        say(f"replayed {key} ({len(raw):,} bytes) -> {put['ShardId']} {put['SequenceNumber']}")
    return outcome


def whole(ddb: Any, table: str, head: dict[str, Any]) -> tuple[bytes | None, Any]:
    """The quarantined record's bytes joined from ``head`` and its parts, and the parts'
    keys; or ``(None, why not)`` when they are not all there."""
    if head.get("data_truncated", {}).get("BOOL"):
        return None, "its bytes were truncated in the quarantine (by an older version)"
    key = head["id"]["S"]
    count = int(head.get("parts", {}).get("N", "1"))
    keys = [f"{key}#{n}" for n in range(1, count)]
    chunks = [head["data"]["B"]]
    for part_key in keys:
        part = ddb.get_item(TableName=table, Key={"id": {"S": part_key}}, ConsistentRead=True)
        if "Item" not in part:
            return None, f"part {part_key} is missing"
        chunks.append(part["Item"]["data"]["B"])
    raw = b"".join(chunks)
    expected = int(head.get("data_bytes", {}).get("N", len(raw)))
    digest = head.get("data_sha256", {}).get("S")
    if len(raw) != expected or (digest and hashlib.sha256(raw).hexdigest() != digest):
        return None, f"its parts do not add up ({len(raw):,} of {expected:,} bytes, or digest)"
    return raw, keys


def _say(text: str) -> None:
    """A line on stdout: this is a command-line tool, not the record processor."""
    sys.stdout.write(text + "\n")


def main(argv: list[str] | None = None) -> int:
    prog = "python -m consumer.replay"
    parser = cli.parser(ConsumerSettings, prog, __doc__)
    parser.add_argument("--reason", default="", help="only items whose reason contains this")
    parser.add_argument("--dry-run", action="store_true", help="list what would be replayed")
    parser.add_argument("--kinesis-ca-bundle", help="PEM to verify a local Kinesis endpoint")
    parser.add_argument(
        "--local", action="store_true", help="the local stack's stream and tables, not CONSUMER_*"
    )
    parser.add_argument("--state-dir", type=Path, help="with --local (default .local/stack)")
    args = parser.parse_args(argv)
    if args.local:
        from local_stack import endpoints  # not in the consumer's image: --local is for a laptop

        found = endpoints.find(args.state_dir)
        if found is None:
            parser.error(endpoints.none_running(args.state_dir))
        kinesis, ddb = found.client("kinesis"), found.client("dynamodb")
        stream, table = found.stream, found.quarantine_table
    else:
        settings = cli.settings_or_exit(ConsumerSettings, prog, get_settings)
        kinesis, ddb = settings.tool_clients(args.kinesis_ca_bundle)
        stream, table = settings.stream_name, settings.quarantine_table
    outcome = replay(kinesis, ddb, stream, table, args.reason, args.dry_run)
    _say(
        f"replayed {outcome.replayed}, skipped {outcome.skipped}, failed {outcome.failed}"
        + (f", would replay {outcome.listed}" if args.dry_run else "")
    )
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    sys.exit(main())
