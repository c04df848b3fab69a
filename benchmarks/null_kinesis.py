"""A Kinesis endpoint that accepts everything at once (``python -m benchmarks.null_kinesis``).

It answers ListShards with five open shards and PutRecord/PutRecords with success for every
entry (on the shard Kinesis would pick), optionally after ``--delay`` seconds, so that a
benchmark measures the producer and not an emulator. Binds to 127.0.0.1 and stops after
``--lifetime`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable

SHARDS = 5  # the reference design's stream
_STEP = 2**128 // SHARDS


def _shard_id(entry: dict[str, str]) -> str:
    """Route like Kinesis: the explicit hash key, else the MD5 of the partition key."""
    key = entry.get("ExplicitHashKey")
    value = (
        int(key) if key else int.from_bytes(hashlib.md5(entry["PartitionKey"].encode()).digest())
    )
    return f"shardId-{min(value // _STEP, SHARDS - 1):012d}"


def _shards() -> list[dict[str, object]]:
    return [
        {
            "ShardId": f"shardId-{i:012d}",
            "HashKeyRange": {
                "StartingHashKey": str(i * _STEP),
                "EndingHashKey": str(2**128 - 1 if i == SHARDS - 1 else (i + 1) * _STEP - 1),
            },
            "SequenceNumberRange": {"StartingSequenceNumber": "1"},
        }
        for i in range(SHARDS)
    ]


def answer(target: str, body: bytes) -> bytes:
    if target.endswith("ListShards"):
        return json.dumps({"Shards": _shards()}).encode()
    if target.endswith("PutRecords"):
        entries = json.loads(body)["Records"]
        results = [{"ShardId": _shard_id(e), "SequenceNumber": "1"} for e in entries]
        return json.dumps({"FailedRecordCount": 0, "Records": results}).encode()
    if target.endswith("DescribeStreamSummary"):
        summary = {"StreamStatus": "ACTIVE", "OpenShardCount": SHARDS}
        return json.dumps({"StreamDescriptionSummary": summary}).encode()
    if target.endswith("PutRecord"):
        return json.dumps({"ShardId": _shard_id(json.loads(body)), "SequenceNumber": "1"}).encode()
    return b"{}"


async def handle(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay: float,
    before: Callable[[str], Awaitable[None]] | None = None,
) -> None:
    """Answer one connection's requests; ``before(target)`` is awaited first (tests make a call
    hang with it)."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            for line in head.decode("latin-1").split("\r\n")[1:]:
                if ":" in line:
                    key, value = line.split(":", 1)
                    headers[key.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            target = headers.get("x-amz-target", "")
            if before is not None:
                await before(target)
            if delay:
                await asyncio.sleep(delay)
            payload = answer(target, body)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
                + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(port: int, delay: float, lifetime: float) -> None:
    server = await asyncio.start_server(lambda r, w: handle(r, w, delay), "127.0.0.1", port)
    async with server:
        await asyncio.sleep(lifetime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=14999)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--lifetime", type=float, default=600.0)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.delay, args.lifetime))


if __name__ == "__main__":
    main()
