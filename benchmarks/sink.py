"""Consumer sink benchmark: records written to DynamoDB Local per CPU-second of the writing
process, the consumer's path (``to_item`` + ``DynamoDBSink``) vs a naive loop over boto3's
``Table.batch_writer`` (``json.loads`` and ``put_item`` per record), on the same records.

Both write the same attributes to their own table of one DynamoDB Local (in memory, started
here on 127.0.0.1 and stopped at the end). Contenders alternate round by round; the table
gives medians. CPU seconds are the process's (all its threads), so the Java emulator's work
is not counted for either: what is compared is what a consumer core spends per record.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import boto3

from consumer.config import ConsumerSettings
from consumer.records import KinesisRecord, to_item
from consumer.sink import DynamoDBSink, default_client
from local_stack.processes import ManagedProcess, port_open, wait_until
from local_stack.stack import HOST, LOCAL_CREDENTIALS, ROOT, dynamodb_local_argv

PORT = 18011
SHARD = "shardId-000000000001"
KCL_BATCH = 500  # records per processRecords call the consumer writes at once


def make_records(count: int) -> list[KinesisRecord]:
    """Envelopes as the producer writes them, ~150 bytes, with a nested object and a float."""
    records = []
    for i in range(count):
        data = {"order": i, "item": "x" * 48, "price": i / 7, "tags": ["a", "b"]}
        body = {"id": f"bench-{i}", "ts": 1_700_000_000_000 + i, "data": data}
        raw = json.dumps(body, separators=(",", ":")).encode()
        records.append(
            KinesisRecord(raw, f"pk-{i % 97}", f"{49_000_000 + i}", 0, 1_700_000_000_000)
        )
    return records


def ours(records: list[KinesisRecord], sink: DynamoDBSink) -> None:
    for start in range(0, len(records), KCL_BATCH):
        sink.write([to_item(r, SHARD) for r in records[start : start + KCL_BATCH]])


def naive(records: list[KinesisRecord], table: object) -> None:
    with table.batch_writer(overwrite_by_pkeys=["id"]) as writer:  # type: ignore[attr-defined]
        for r in records:
            body = json.loads(r.data, parse_float=Decimal)
            writer.put_item(
                Item={
                    "id": body["id"], "data": body["data"], "partition_key": r.partition_key,
                    "shard_id": SHARD, "sequence_number": r.sequence_number,
                    "sub_sequence_number": r.sub_sequence_number,
                    "arrival_time": r.approximate_arrival_timestamp,
                    "ingested_at": body["ts"], "stored_at": int(time.time() * 1000),
                }
            )  # fmt: skip


def _create_table(client: object, name: str) -> None:
    client.create_table(  # type: ignore[attr-defined]
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if port_open(HOST, PORT):
        sys.exit(f"port {PORT} is in use: another benchmark running?")
    endpoint = f"http://{HOST}:{PORT}"
    os.environ.update(LOCAL_CREDENTIALS)  # DynamoDB Local takes any key
    settings = ConsumerSettings(stream_name="bench", dynamodb_endpoint=endpoint)  # type: ignore[call-arg]
    with tempfile.TemporaryDirectory() as tmp:
        emulator = ManagedProcess("dynamodb-local", dynamodb_local_argv(PORT), os.environ,
                                  Path(tmp) / "dynamodb.log")  # fmt: skip
        emulator.start(cwd=ROOT)
        try:
            wait_until("DynamoDB Local", lambda: port_open(HOST, PORT), 60, emulator)
            session = boto3.Session(region_name="us-east-1")
            low = default_client(settings)
            for name in ("bench-ours", "bench-naive"):
                _create_table(low, name)
            sink = DynamoDBSink("bench-ours", low, max_in_flight=settings.max_writes_in_flight)
            table = session.resource("dynamodb", endpoint_url=endpoint).Table("bench-naive")
            records = make_records(args.records)
            contenders: dict[str, Callable[[], None]] = {
                "consumer sink": lambda: ours(records, sink),
                "naive batch_writer": lambda: naive(records, table),
            }
            cpu: dict[str, list[float]] = {name: [] for name in contenders}
            wall: dict[str, list[float]] = {name: [] for name in contenders}
            for run in contenders.values():  # warm-up: connections, the items' first writes
                run()
            for _ in range(args.rounds):
                for name, run in contenders.items():
                    c0, w0 = time.process_time(), time.perf_counter()
                    run()
                    cpu[name].append(args.records / (time.process_time() - c0))
                    wall[name].append(args.records / (time.perf_counter() - w0))
            pages = low.get_paginator("scan")
            stored = {
                name: sum(p["Count"] for p in pages.paginate(TableName=name, Select="COUNT"))
                for name in ("bench-ours", "bench-naive")
            }
        finally:
            emulator.stop()
    title = f"Consumer sink, {args.records:,} records a round, DynamoDB Local"
    print(f"{title} (median of {args.rounds})")  # noqa: T201
    print(f"  {'':<22} {'records/CPU-s':>14} {'records/s':>10}")  # noqa: T201
    for name in contenders:
        print(f"  {name:<22} {statistics.median(cpu[name]):>14,.0f} "  # noqa: T201
              f"{statistics.median(wall[name]):>10,.0f}")  # fmt: skip
    ratio = statistics.median(cpu["consumer sink"]) / statistics.median(cpu["naive batch_writer"])
    print(f"  per core, sink vs batch_writer: {ratio:.1f}x  (goal >= 1.5x)")  # noqa: T201
    print(f"  items in the tables: {stored}")  # noqa: T201


if __name__ == "__main__":
    main()
