"""HTTP path without sockets: CPU per ``POST /`` through uvicorn's protocol, in this process.

The same request bytes are fed to the producer's protocol (``producer.api.protocol``, its
direct path, the collector and botocore against ``benchmarks.null_kinesis``) and to uvicorn's
own httptools protocol serving a 202 from the ASGI entry (``benchmarks.apps:bare_asgi``, the
HTTP benchmark's "uvicorn alone"). 2,048 connections, each sending its next request once its
answer is written, as wrk does; no sockets, so no system calls and no load generator share
the CPU: what is left is the Python each side runs per request. Contenders alternate round by
round; medians. ``benchmarks.http`` measures the same over real sockets with wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from benchmarks.apps import bare_asgi
from benchmarks.http import NULL_PORT, RECORD
from benchmarks.null_kinesis import spawn
from producer.api.protocol import ProducerHttp
from producer.config import ProducerSettings
from producer.main import create_app

BODY = json.dumps(RECORD).encode()
REQUEST = (
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


class MemoryTransport(asyncio.Transport):
    """A connection's transport in memory: what is written is kept in ``out``, or handed to
    ``on_write`` when given."""

    def __init__(self, on_write: Callable[[bytes], None] | None = None) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self._on_write = on_write

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        addresses = {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}
        return addresses.get(name, default)

    def write(self, data: Any) -> None:
        if self._on_write is not None:
            self._on_write(bytes(data))
        else:
            self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Load:
    """``total`` requests over ``connections`` connections to ``protocol`` serving ``app``."""

    def __init__(self, app: Any, protocol: type[HttpToolsProtocol], total: int) -> None:
        config = uvicorn.Config(app, access_log=False, log_config=None, lifespan="off")
        config.load()
        self.config, self.protocol, self.state = config, protocol, ServerState()
        self.total, self.sent, self.answered = total, 0, 0
        self.done = asyncio.get_running_loop().create_future()

    def connect(self) -> None:
        loop = asyncio.get_running_loop()
        proto = self.protocol(config=self.config, server_state=self.state, app_state={}, _loop=loop)

        def written(data: bytes) -> None:
            # an answer ends with its JSON body (the producer) or the last chunk (the bare 202)
            if data.endswith((b"}", b"0\r\n\r\n")):
                self.answered += 1
                if self.sent < self.total:
                    loop.call_soon(send)
                elif self.answered == self.total and not self.done.done():
                    self.done.set_result(None)

        def send() -> None:
            self.sent += 1
            proto.data_received(REQUEST)

        proto.connection_made(MemoryTransport(written))
        send()


async def cpu_per_request(which: str, total: int, connections: int) -> float:
    """Microseconds of this process's CPU (every thread) per answered request."""
    if which == "bare":
        app: Any = bare_asgi()
        protocol: type[HttpToolsProtocol] = HttpToolsProtocol
    else:
        settings = ProducerSettings(
            stream_name="bench",
            kinesis_endpoint=f"http://127.0.0.1:{NULL_PORT}",
            emf_interval_seconds=0,
        )
        app, protocol = create_app(settings), ProducerHttp
    async with app.router.lifespan_context(app):
        load = Load(app, protocol, total)
        started = time.process_time()
        for _ in range(connections):
            load.connect()
        await load.done
        return (time.process_time() - started) / total * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=60_000)
    parser.add_argument("--connections", type=int, default=2_048)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    null = spawn(NULL_PORT, lifetime=args.rounds * 120 + 60)
    times: dict[str, list[float]] = {"bare": [], "producer": []}
    try:
        for _ in range(args.rounds):
            for which, runs in times.items():
                runs.append(uvloop.run(cpu_per_request(which, args.requests, args.connections)))
    finally:
        null.terminate()
        null.wait()
    bare, ours = (statistics.median(times[k]) for k in ("bare", "producer"))
    print(
        f"HTTP path without sockets, CPU per POST / (median of {args.rounds};"
        f" {args.connections:,} connections, {args.requests:,} requests a round)"
    )
    print(f"  bare 202 (uvicorn alone)   {bare:6.1f} us")
    print(f"  producer POST /            {ours:6.1f} us (its Kinesis thread included)")
    print(f"  producer vs uvicorn alone: {bare / ours:.0%} of its requests per CPU-second")


if __name__ == "__main__":
    main()
