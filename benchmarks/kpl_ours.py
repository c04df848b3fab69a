"""Our side of ``benchmarks.kpl``: the producer's core (``KinesisCollector`` with its encoder,
its boto3 client and the producer's default settings) in one process, no HTTP.

It takes records the way ``POST /batch`` does (``take`` under one ``Ticket`` per 500
records), at most ``--outstanding`` records not yet answered, as the KPL harness
(``benchmarks/kpl/.../KplHarness.java``) does with ``addUserRecord``. Same line protocol:
``READY`` after start-up and a warm-up run, waits for ``GO``, prints ``DONE ok failed
seconds``, stops at end of input.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter, deque

import uvloop

from producer.collector import (
    Accepted,
    CollectorConfig,
    KinesisCollector,
    Overloaded,
    Ticket,
    UserRecord,
)
from producer.config import ProducerSettings
from producer.ids import IdGenerator
from producer.main import kinesis_client
from producer.shards import ShardMap

STREAM = "bench"
CHUNK = 500  # records per Ticket: a full POST /batch (PRODUCER_MAX_BATCH_RECORDS)
POOL_BYTES = 1 << 20


def make_records(count: int, size: int, hot_key: bool, ids: IdGenerator) -> list[tuple[str, bytes]]:
    """Random data cut from one random MiB; unique ids as keys (random hash keys), or one key."""
    rng = random.Random(size)
    pool = rng.randbytes(POOL_BYTES)
    span = POOL_BYTES - size
    records = []
    for _ in range(count):
        offset = rng.randrange(span)
        records.append(("hot-key" if hot_key else ids(), pool[offset : offset + size]))
    return records


REFUSALS: Counter[str] = Counter()  # why records failed, for stderr


def _answered(taken: list[UserRecord]) -> tuple[int, int]:
    ok = sum(isinstance(r.outcome, Accepted) for r in taken)
    REFUSALS.update(str(r.outcome)[:80] for r in taken if not isinstance(r.outcome, Accepted))
    return ok, len(taken) - ok


async def put_all(
    collector: KinesisCollector, records: list[tuple[str, bytes]], outstanding: int
) -> tuple[int, int]:
    """Take every record; (accepted, failed) once each was answered."""
    waiting: deque[tuple[Ticket, list[UserRecord]]] = deque()
    held, ok, failed = 0, 0, 0

    async def answer_oldest() -> None:
        nonlocal held, ok, failed
        ticket, taken = waiting.popleft()
        await ticket.wait()
        good, bad = _answered(taken)
        ok, failed, held = ok + good, failed + bad, held - len(taken)

    for start in range(0, len(records), CHUNK):
        ticket, taken = Ticket(), []
        for key, data in records[start : start + CHUNK]:
            while True:
                try:
                    taken.append(collector.take(key, data, ticket))
                    break
                except Overloaded as exc:  # not with the benchmark's bound; counted if it happens
                    REFUSALS[f"overloaded: {str(exc)[:60]}"] += 1
                    failed += 1
                    await asyncio.sleep(0.001)
        waiting.append((ticket, taken))
        held += len(taken)
        while held >= outstanding:
            await answer_oldest()
        await asyncio.sleep(0)  # the dispatch loop runs between requests, as under uvicorn
    while waiting:
        await answer_oldest()
    return ok, failed


async def main_async(args: argparse.Namespace) -> None:
    settings = ProducerSettings(
        stream_name=STREAM,
        kinesis_endpoint=f"https://127.0.0.1:{args.port}",
        kinesis_ca_bundle=args.ca,
    )
    client = kinesis_client(settings)
    shard_map = await asyncio.to_thread(ShardMap.load, client, STREAM)
    collector = KinesisCollector(
        client, CollectorConfig(stream_name=STREAM, rate_limit_percent=args.rate_limit), shard_map
    )
    collector.start()
    ids = IdGenerator()
    try:
        _, failed = await put_all(
            collector, make_records(args.warmup, args.size, args.hot_key, ids), args.outstanding
        )
        if failed:
            raise RuntimeError(f"{failed} warm-up records failed: {REFUSALS.most_common(5)}")
        records = make_records(args.count, args.size, args.hot_key, ids)
        print("READY", flush=True)
        if (await asyncio.to_thread(sys.stdin.readline)).strip() != "GO":
            return
        start = time.perf_counter()
        ok, failed = await put_all(collector, records, args.outstanding)
        print(f"DONE {ok} {failed} {time.perf_counter() - start}", flush=True)
        while (await asyncio.to_thread(sys.stdin.readline)).strip() not in ("", "EXIT"):
            pass
    finally:
        await collector.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True, help="the endpoint's certificate (PEM)")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--outstanding", type=int, required=True)
    parser.add_argument("--rate-limit", type=float, required=True, help="percent, as the KPL's")
    parser.add_argument("--hot-key", action="store_true")
    uvloop.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
