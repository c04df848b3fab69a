"""Consumer sink benchmark: records written to DynamoDB Local per CPU-second of the writing
process, the consumer's path (``to_item`` + ``DynamoDBSink``) vs a naive loop over boto3's
``Table.batch_writer`` (``json.loads`` and ``put_item`` per record), on the same records.

The consumer's path runs twice: with ids the producer minted (BatchWriteItem, the common
path) and with ids a client chose (TransactWriteItems with the latest-copy condition on every
put). Each writes the same attributes to its own table of one DynamoDB Local (in memory,
started here on a free port on 127.0.0.1 and stopped at the end). Contenders alternate round
by round; the table gives medians. CPU seconds are the process's (all its threads), so the
Java emulator's work is not counted: what is compared is what a consumer core spends per
record.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

import boto3

from common import envelope
from consumer.config import ConsumerSettings
from consumer.records import KinesisRecord, to_item
from consumer.sink import DynamoDBSink, default_client
from local_stack.ephemeral import EphemeralDynamoDB
from local_stack.stack import LOCAL_CREDENTIALS

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

SHARD = "shardId-000000000001"
KCL_BATCH = 500  # records per processRecords call the consumer writes at once


def make_records(count: int, client_ids: bool = False) -> list[KinesisRecord]:
    """Envelopes as the producer writes them, ~150 bytes, with a nested object and a float;
    ``client_ids``: marked as ids the client chose."""
    records = []
    for i in range(count):
        data = {"order": i, "item": "x" * 48, "price": i / 7, "tags": ["a", "b"]}
        raw = envelope.dump(f"bench-{i}", data, client_ids, now_ms=1_700_000_000_000 + i)
        records.append(
            KinesisRecord(raw, f"pk-{i % 97}", f"{49_000_000 + i}", 0, 1_700_000_000_000)
        )
    return records


def ours(records: list[KinesisRecord], sink: DynamoDBSink) -> None:
    for start in range(0, len(records), KCL_BATCH):
        sink.write([to_item(r, SHARD) for r in records[start : start + KCL_BATCH]])


def naive(records: list[KinesisRecord], table: Table) -> None:
    with table.batch_writer(overwrite_by_pkeys=["id"]) as writer:
        for r in records:
            body = json.loads(r.data, parse_float=Decimal)
            writer.put_item(
                Item={
                    "id": body["id"],
                    "data": body["data"],
                    "partition_key": r.partition_key,
                    "shard_id": SHARD,
                    "sequence_number": r.sequence_number,
                    "sub_sequence_number": r.sub_sequence_number,
                    "arrival_time": r.approximate_arrival_timestamp,
                    "ingested_at": body["ts"],
                    "stored_at": int(time.time() * 1000),
                }
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.update(LOCAL_CREDENTIALS)  # DynamoDB Local takes any key
    names = {
        "consumer sink": "bench-ours",
        "sink, client ids": "bench-client-ids",
        "naive batch_writer": "bench-naive",
    }
    with EphemeralDynamoDB() as server:
        settings = ConsumerSettings(stream_name="bench", dynamodb_endpoint=server.endpoint)
        session = boto3.Session(region_name="us-east-1")
        low = default_client(settings)
        for table in names.values():
            server.create_table(table)
        sink = DynamoDBSink("bench-ours", low, max_in_flight=settings.max_writes_in_flight)
        versioned = DynamoDBSink(
            "bench-client-ids", low, max_in_flight=settings.max_writes_in_flight
        )
        naive_table = session.resource("dynamodb", endpoint_url=server.endpoint).Table(
            "bench-naive"
        )
        records = make_records(args.records)
        client_records = make_records(args.records, client_ids=True)
        contenders: dict[str, Callable[[], None]] = {
            "consumer sink": lambda: ours(records, sink),
            "sink, client ids": lambda: ours(client_records, versioned),
            "naive batch_writer": lambda: naive(records, naive_table),
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
            table: sum(p["Count"] for p in pages.paginate(TableName=table, Select="COUNT"))
            for table in names.values()
        }
    title = f"Consumer sink, {args.records:,} records a round, DynamoDB Local"
    print(f"{title} (median of {args.rounds})")
    print(f"  {'':<22} {'records/CPU-s':>14} {'records/s':>10}")
    for name in contenders:
        print(
            f"  {name:<22} {statistics.median(cpu[name]):>14,.0f} "
            f"{statistics.median(wall[name]):>10,.0f}"
        )
    naive_cpu = statistics.median(cpu["naive batch_writer"])
    ratio = statistics.median(cpu["consumer sink"]) / naive_cpu
    print(f"  per core, sink vs batch_writer: {ratio:.2f}x  (goal >= 1.5x)")
    client_ratio = statistics.median(cpu["sink, client ids"]) / naive_cpu
    print(
        f"  per core, sink with client ids (conditional TransactWriteItems) vs batch_writer: "
        f"{client_ratio:.2f}x"
    )
    print(f"  items in the tables: {stored}")


if __name__ == "__main__":
    main()
