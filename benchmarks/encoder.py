"""KPL encoder throughput: this project's AggregateBuilder vs aws-kinesis-agg's RecordAggregator,
and both against the MD5-only floor over the same bytes; plus the PUT payload units paid.

Every contender runs on the same records, interleaved round by round, median of the rounds,
timed in CPU seconds of this process (``time.process_time``: a busy machine's waits do not
count): the ratios are what matters on a noisy machine, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import statistics
import time
from collections.abc import Callable

import aws_kinesis_agg.aggregator as library

from producer.aggregation import AggregateBuilder
from producer.ids import IdGenerator

AGGREGATE_BYTES = 51_200
PAYLOAD_UNIT = 25 * 1024


def make_records(count: int, size: int) -> list[tuple[str, bytes]]:
    """Records with random 20-character keys (as the producer's default ids) and random data."""
    rng = random.Random(size)
    ids = IdGenerator()
    return [(ids(), rng.randbytes(size)) for _ in range(count)]


def ours(records: list[tuple[str, bytes]]) -> int:
    outputs = 0
    builder = AggregateBuilder(AGGREGATE_BYTES)
    for pk, data in records:
        if not builder.add(pk, data):
            builder.encode()
            outputs += 1
            builder = AggregateBuilder(AGGREGATE_BYTES)
            builder.add(pk, data)
    builder.encode()
    return outputs + 1


def theirs(records: list[tuple[str, bytes]]) -> int:
    """The library's aggregator, asked for each full aggregate's bytes as a sender must
    (``get_contents`` serializes and hashes; ``add_user_record`` alone does neither)."""
    outputs = 0
    aggregator = library.RecordAggregator(max_size=AGGREGATE_BYTES)
    for pk, data in records:
        full = aggregator.add_user_record(pk, data)
        if full is not None:
            full.get_contents()
            outputs += 1
    aggregator.clear_and_get().get_contents()
    return outputs + 1


def md5_floor(records: list[tuple[str, bytes]]) -> int:
    """The least any encoder must do: hash every byte once."""
    digest = hashlib.md5()
    for pk, data in records:
        digest.update(pk.encode())
        digest.update(data)
    digest.digest()
    return 0


def measure(rounds: int, records: list[tuple[str, bytes]]) -> dict[str, float]:
    contenders: dict[str, Callable[[list[tuple[str, bytes]]], int]] = {
        "ours": ours,
        "library": theirs,
        "md5": md5_floor,
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.process_time()
            run(records)
            times[name].append(time.process_time() - start)
    return {name: len(records) / statistics.median(t) for name, t in times.items()}


def payload_units(records: list[tuple[str, bytes]]) -> tuple[int, int, float]:
    """Units paid per the records: aggregated, one record each, and the aggregates' fill."""
    aggregated, used = 0, 0
    builder = AggregateBuilder(AGGREGATE_BYTES)
    sizes = []
    for pk, data in records:
        if not builder.add(pk, data):
            sizes.append(builder.size + len(builder.partition_key))
            builder = AggregateBuilder(AGGREGATE_BYTES)
            builder.add(pk, data)
    sizes.append(builder.size + len(builder.partition_key))
    for size in sizes:
        aggregated += math.ceil(size / PAYLOAD_UNIT)
        used += size
    single = sum(math.ceil((len(pk) + len(d)) / PAYLOAD_UNIT) for pk, d in records)
    return aggregated, single, used / (aggregated * PAYLOAD_UNIT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print("KPL encoder, user records per CPU-second (median of rounds, one core)")
    print(f"{'size':>6} {'ours':>12} {'library':>12} {'ours/library':>13} {'ours/md5 floor':>15}")
    for size in (100, 1024, 10 * 1024):
        count = max(2_000, args.records * 100 // size)
        rates = measure(args.rounds, make_records(count, size))
        print(
            f"{size:>6} {rates['ours']:>12,.0f} {rates['library']:>12,.0f} "
            f"{rates['ours'] / rates['library']:>12.1f}x {rates['ours'] / rates['md5']:>14.2f}"
        )
    aggregated, single, fill = payload_units(make_records(1_000_000, 100))
    print("\nPUT payload units for 1,000,000 records of 100 bytes")
    print(f"  one PutRecord per record: {single:,}")
    print(
        f"  aggregated ({AGGREGATE_BYTES:,} B): {aggregated:,}  ({single / aggregated:.0f}x fewer;"
        f" aggregates fill {fill:.1%} of the units they pay for)"
    )


if __name__ == "__main__":
    main()
