"""A Kinesis endpoint that accepts everything at once (``python -m benchmarks.null_kinesis``).

It answers ListShards (any filter) and DescribeStream/DescribeStreamSummary with five open
shards (``--shards`` for more), and PutRecord/PutRecords with success for every entry on the
shard Kinesis would pick (the explicit hash key, else the MD5 of the partition key, against the
shards' hash ranges), optionally after ``--delay`` seconds, so that a benchmark measures the
producer and not an emulator. Plain HTTP/1.1 by default; HTTPS with ``--tls-cert`` and
``--tls-key`` (the official KPL's native daemon talks to its endpoint only over TLS). It counts
what it was sent (calls, Kinesis records, bytes, PUT payload units) and answers the counts to
the target ``NullKinesis.Stats``. Binds to 127.0.0.1 and stops after ``--lifetime`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from common.kinesis import Shard, even_shards, hash_key
from local_stack.processes import port_open

SHARDS = 5  # the reference design's stream
OPEN_SHARDS = even_shards(SHARDS)
PAYLOAD_UNIT = 25 * 1024  # provisioned billing: a PUT payload unit per 25 KB of a record
STATS_TARGET = "NullKinesis.Stats"


class UnsupportedRequest(Exception):
    """A request this endpoint does not read (it says so instead of answering wrongly)."""


def _shard_id(entry: dict[str, str], shards: list[Shard]) -> str:
    """Route like Kinesis: the explicit hash key, else the MD5 of the partition key."""
    key = entry.get("ExplicitHashKey")
    value = int(key) if key else hash_key(entry["PartitionKey"])
    return next(s.shard_id for s in shards if s.owns(value))


def _listing(shards: list[Shard]) -> list[dict[str, object]]:
    return [shard.listing() for shard in shards]


def _record_bytes(entry: dict[str, str]) -> int:
    """Data (sent base64-encoded) plus partition key, the size Kinesis bills and limits."""
    data = entry["Data"]
    return len(data) * 3 // 4 - data[-2:].count("=") + len(entry["PartitionKey"].encode())


def _count(stats: Counter[str], entries: list[dict[str, str]]) -> None:
    stats["Calls"] += 1
    stats["KinesisRecords"] += len(entries)
    for entry in entries:
        size = _record_bytes(entry)
        stats["Bytes"] += size
        stats["PayloadUnits"] += -(-size // PAYLOAD_UNIT)


def answer(
    target: str,
    body: bytes,
    stats: Counter[str] | None = None,
    shards: list[Shard] = OPEN_SHARDS,
) -> bytes:
    """The response body for the ``X-Amz-Target`` ``target`` on a stream of ``shards``;
    counts into ``stats``."""
    stats = Counter() if stats is None else stats
    action = target.rsplit(".", 1)[-1]
    if target == STATS_TARGET:
        return json.dumps(stats).encode()
    if action == "ListShards":
        return json.dumps({"Shards": _listing(shards)}).encode()
    if action == "PutRecords":
        entries = json.loads(body)["Records"]
        _count(stats, entries)
        results = [{"ShardId": _shard_id(e, shards), "SequenceNumber": "1"} for e in entries]
        return json.dumps({"FailedRecordCount": 0, "Records": results}).encode()
    if action == "PutRecord":
        entry = json.loads(body)
        _count(stats, [entry])
        return json.dumps({"ShardId": _shard_id(entry, shards), "SequenceNumber": "1"}).encode()
    if action == "DescribeStreamSummary":
        summary = {"StreamStatus": "ACTIVE", "OpenShardCount": len(shards)}
        return json.dumps({"StreamDescriptionSummary": summary}).encode()
    if action == "DescribeStream":
        description = {"StreamStatus": "ACTIVE", "Shards": _listing(shards), "HasMoreShards": False}
        return json.dumps({"StreamDescription": description}).encode()
    return b"{}"


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    """One request's headers, names lower-cased; the caller reads the body."""
    head = await reader.readuntil(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise UnsupportedRequest("chunked request bodies")
    return headers


async def handle(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay: float,
    before: Callable[[str], Awaitable[None]] | None = None,
    stats: Counter[str] | None = None,
    shards: list[Shard] = OPEN_SHARDS,
) -> None:
    """Answer one connection's requests, counting into ``stats``; ``before(target)`` is awaited
    first (tests make a call hang with it)."""
    try:
        while True:
            headers = await _read_headers(reader)
            if headers.get("expect", "").lower() == "100-continue":  # curl, for large bodies
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            target = headers.get("x-amz-target", "")
            if before is not None:
                await before(target)
            if delay:
                await asyncio.sleep(delay)
            payload = answer(target, body, stats, shards)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
                + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
    except UnsupportedRequest as exc:
        message = f"null_kinesis does not read {exc}".encode()
        writer.write(
            f"HTTP/1.1 400 Bad Request\r\nContent-Length: {len(message)}\r\n\r\n".encode() + message
        )
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


async def serve(
    port: int,
    delay: float,
    lifetime: float,
    tls: ssl.SSLContext | None = None,
    shards: int = SHARDS,
) -> None:
    stats: Counter[str] = Counter()
    stream = even_shards(shards)
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, delay, stats=stats, shards=stream), "127.0.0.1", port, ssl=tls
    )
    async with server:
        await asyncio.sleep(lifetime)


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Until ``proc`` listens on 127.0.0.1:``port`` (30 s at most, and only while it runs)."""
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server on {port} did not start")
        time.sleep(0.1)


def spawn(
    port: int,
    lifetime: float,
    delay: float = 0.0,
    tls: tuple[str, str] | None = None,
    shards: int = SHARDS,
) -> subprocess.Popen[bytes]:
    """This endpoint in a child process, once it listens (``tls``: certificate and key
    files; ``shards``: the stream's open shards); the caller stops it."""
    argv = [sys.executable, "-m", "benchmarks.null_kinesis", "--port", str(port)]
    argv += ["--delay", str(delay), "--lifetime", str(lifetime), "--shards", str(shards)]
    if tls is not None:
        argv += ["--tls-cert", tls[0], "--tls-key", tls[1]]
    proc = subprocess.Popen(argv)
    try:
        wait_port(port, proc)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=14999)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--lifetime", type=float, default=600.0)
    parser.add_argument("--shards", type=int, default=SHARDS, help="the stream's open shards")
    parser.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    asyncio.run(serve(args.port, args.delay, args.lifetime, tls, args.shards))


if __name__ == "__main__":
    main()
