"""Memory and a hot shard under overload (``python -m benchmarks.memory``), each shape against a
fresh producer and ``benchmarks.null_kinesis`` answering every call after ``--delay`` seconds
(so Kinesis, not the producer's CPU, is the bottleneck).

Memory: the producer's peak RSS (VmHWM) per request shape, loaded by wrk:
- ``batch 100 x 100 B``: batches of 100 small records at a nominal load (4 connections), then
  at 10x that (40): the records awaiting Kinesis must stay within the bound, the rest 503;
- ``huge body, many small records``: /batch bodies of 500 records whose data are lists of
  empty objects (5.7 MiB each, ~25x that once parsed), 6 connections;
- ``many concurrent huge bodies``: the same body on 64 connections;
- ``POST / on 2,048 connections``: one small record a request.
The producer must stay bounded (``PRODUCER_MAX_BUFFERED_BYTES``: bodies, their parse and the
records held) and answer 503 for what does not fit, instead of growing.

Hot shard: one partition key at ~3x its shard's rate limit (``PRODUCER_RATE_LIMIT_PERCENT``
10, a 1 s TTL) while another shard gets a trickle; every second,
the records the producer put on the hot shard against its limit, and 503s for the other.

``PYTHONPATH`` selects the producer under test (the servers inherit the environment): point
it at another checkout to measure that one the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.http import (
    NULL_PORT,
    RECORD,
    SERVER_PORT,
    start_server,
    stop,
    write_post_script,
    wrk,
)  # fmt: skip
from benchmarks.null_kinesis import OPEN_SHARDS, spawn
from common.kinesis import Shard
from common.metric_catalog import PRODUCER
from producer.shards import ShardMap

BOUND = 2_000  # PRODUCER_MAX_BUFFERED_RECORDS for the batch shapes (see _SHAPES)

# wrk's load is closed-loop (a connection waits for its answer), so the records awaiting
# Kinesis are at most connections x 100 for the batch shape: a bound of 2,000 records sits
# between the nominal load (4 connections: 400) and 10x that (4,000).
_HUGE: dict[str, object] = {"records": [{"data": [{}] * 3_800}] * 500}
# name, path, body, connections, extra environment
SHAPES: list[tuple[str, str, dict[str, object], int, dict[str, str]]] = [
    ("batch 100 x 100 B, nominal", "/batch", {"records": [RECORD] * 100}, 4, {}),
    ("batch 100 x 100 B, 10x", "/batch", {"records": [RECORD] * 100}, 40, {}),
    ("huge body, many small records", "/batch", _HUGE, 6, {}),
    ("many concurrent huge bodies", "/batch", _HUGE, 0, {}),  # --many connections
    ("POST / on 2,048 connections", "/", RECORD, 2048, {}),
]


def _status_kib(pid: int, key: str) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"{key}:\s+(\d+) kB", status)
    if found is None:
        raise RuntimeError(f"no {key} in /proc/{pid}/status")
    return int(found.group(1)) / 1024


# what it reads of the producer's /metrics (their Prometheus names, from the catalogue)
PUT = PRODUCER["UserRecordsPut"].prometheus
SHARD_BYTES = PRODUCER["ShardKinesisBytesPut"].prometheus


def _metric(text: str, name: str, label: str = "") -> float:
    found = re.search(rf"^{name}{re.escape(label)} ([\d.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _metrics() -> str:
    return httpx.get(f"http://127.0.0.1:{SERVER_PORT}/metrics", timeout=10).text


class _Null:
    """The null Kinesis endpoint for one run."""

    def __init__(self, delay: float, lifetime: float) -> None:
        self.proc = spawn(NULL_PORT, lifetime, delay)

    def close(self) -> None:
        stop(self.proc)


def memory_shape(
    path: str, body: dict[str, object], connections: int, seconds: int, delay: float, env: dict
) -> dict[str, float]:
    """A fresh producer under one request shape: its peak RSS and what it answered."""
    null = _Null(delay, seconds + 120)
    server = None
    try:
        server = start_server(
            "producer.main:create_app", {"PRODUCER_MAX_BUFFERED_RECORDS": str(BOUND), **env}
        )
        idle = _status_kib(server.pid, "VmHWM")
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "post.lua"
            write_post_script(script, json.dumps(body, separators=(",", ":")))
            rate, rejected = wrk(path, connections, seconds, script)
        text = _metrics()
        return {
            "idle": idle,
            "peak": _status_kib(server.pid, "VmHWM"),
            "requests_per_s": rate,
            "non_2xx": rejected,
            "put": _metric(text, PUT),
        }
    finally:
        if server is not None:
            stop(server)
        null.close()


def _key_on(shard_map: ShardMap, shard: Shard, prefix: str) -> str:
    return next(
        f"{prefix}{i}" for i in range(10**6) if shard_map.shard_for(f"{prefix}{i}") is shard
    )


async def _offer(client: httpx.AsyncClient, body: bytes, every: float, until: float,
                 answers: list[int]) -> None:  # fmt: skip
    """POST ``body`` to /batch every ``every`` seconds (open loop) until ``until``."""
    pending: set[asyncio.Task[httpx.Response]] = set()
    next_at = time.monotonic()
    while next_at < until:
        task = asyncio.ensure_future(client.post("/batch", content=body))
        task.add_done_callback(lambda t: answers.append(_status(t)))
        pending.add(task)
        task.add_done_callback(pending.discard)
        next_at += every
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    if pending:
        await asyncio.wait(pending)


def _status(task: asyncio.Task[httpx.Response]) -> int:
    if task.exception() is not None:
        return 0
    response = task.result()
    if response.status_code != 200:
        return response.status_code
    failed = response.json()["failed_record_count"]
    return 200 if not failed else 503


async def _hot_shard_run(
    seconds: int, percent: float
) -> tuple[list[tuple[float, float]], list[int], float]:
    shard_map = ShardMap(OPEN_SHARDS)
    hot_shard, cold_shard = shard_map.shards[0], shard_map.shards[1]
    hot = _key_on(shard_map, hot_shard, "hot-")
    cold = _key_on(shard_map, cold_shard, "cold-")
    record = {"data": {"order": 12345, "item": "x" * 64}}
    hot_body = json.dumps({"records": [{**record, "partition_key": hot}] * 100}).encode()
    cold_body = json.dumps({"records": [{**record, "partition_key": cold}]}).encode()
    limit_bytes = 1024 * 1024 * percent / 100
    # ~3x the limit: a record is ~110 bytes in an aggregate
    every = 100 / (3 * limit_bytes / 110)
    samples: list[tuple[float, float]] = []  # user records put/s, hot shard bytes/s
    cold_answers: list[int] = []
    hot_answers: list[int] = []
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=4096, max_keepalive_connections=4096)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{SERVER_PORT}", headers=headers,
                                 limits=limits, timeout=30) as client:  # fmt: skip
        until = time.monotonic() + seconds
        senders = [
            asyncio.ensure_future(_offer(client, hot_body, every, until, hot_answers)),
            asyncio.ensure_future(_offer(client, cold_body, 0.1, until, cold_answers)),
        ]
        label = f'{{shard="{hot_shard.shard_id}"}}'
        before, then = (0.0, 0.0), time.monotonic()
        for second in range(1, seconds + 1):
            await asyncio.sleep(max(0.0, until - seconds + second - time.monotonic()))
            text = (await client.get("/metrics")).text
            at = time.monotonic()
            now = (
                _metric(text, PUT),
                _metric(text, SHARD_BYTES, label),
            )
            # per second of the time between the two reads (the loaded server answers late)
            samples.append(((now[0] - before[0]) / (at - then), (now[1] - before[1]) / (at - then)))
            before, then = now, at
        await asyncio.gather(*senders)
    refused = sum(s != 200 for s in cold_answers)
    return samples, [refused, len(cold_answers)], limit_bytes


def hot_shard(seconds: int, percent: float) -> tuple[list[tuple[float, float]], list[int], float]:
    null = _Null(0.0, seconds + 120)
    server = None
    try:
        server = start_server(
            "producer.main:create_app",
            {"PRODUCER_RATE_LIMIT_PERCENT": str(percent), "PRODUCER_RECORD_TTL_MS": "1000",
             "PRODUCER_SHARD_REFRESH_SECONDS": "0"},
        )  # fmt: skip
        return asyncio.run(_hot_shard_run(seconds, percent))
    finally:
        if server is not None:
            stop(server)
        null.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds per PutRecords call")
    parser.add_argument("--hot-seconds", type=int, default=10)
    parser.add_argument("--hot-percent", type=float, default=10.0)
    parser.add_argument("--only", choices=["memory", "hot"], default=None)
    parser.add_argument("--many", type=int, default=64, help="connections of the many-bodies shape")
    args = parser.parse_args()
    if args.only != "hot":
        print(f"Peak RSS per request shape (Kinesis answers after {args.delay} s; wrk"
              f" {args.seconds} s; PRODUCER_MAX_BUFFERED_RECORDS={BOUND})")  # fmt: skip
        for name, path, body, connections, env in SHAPES:
            connections = connections or args.many
            result = memory_shape(path, body, connections, args.seconds, args.delay, env)
            print(
                f"  {name:<31} -c{connections:<5} peak RSS {result['peak']:7.1f} MiB"
                f" (idle {result['idle']:.1f}), records put {result['put']:>9,.0f},"
                f" non-2xx {result['non_2xx']:,}"
            )
    if args.only != "memory":
        samples, (refused, cold), limit = hot_shard(args.hot_seconds, args.hot_percent)
        per_record = (sum(b for _, b in samples) / sum(r for r, _ in samples)) if samples else 1
        print(f"Hot shard: one key at ~3x {args.hot_percent:g}% of a shard's limit"
              f" ({limit / per_record:,.0f} records/s, {limit:,.0f} B/s), TTL 1 s")  # fmt: skip
        for second, (records, size) in enumerate(samples, 1):
            print(f"  second {second:>2}: {records:7,.0f} records/s put,"
                  f" hot shard {size:9,.0f} B/s = {size / limit:5.0%} of its limit")  # fmt: skip
        print(f"  other shard: {refused} of {cold} requests refused")


if __name__ == "__main__":
    main()
