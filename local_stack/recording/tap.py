"""A wire tap in front of an emulator: forwards every byte unchanged, both ways, and reads
the requests going in to record the calls of the clients it knows by access key id.

Requests are read passively from the client's bytes: HTTP/1.1 (Content-Length or chunked
bodies) with h11, cleartext HTTP/2 (prior knowledge, as the KCL's Netty client speaks it to
kinesis-mock's h2c port) with h2, its frames decoded and never answered. The operation comes
from ``X-Amz-Target`` (JSON and CBOR protocols) or the form's ``Action`` (query protocol);
the caller from the access key id in ``Authorization`` (SigV4's ``Credential=KEY/...``).
A request the tap cannot read is logged as ``<unreadable>`` (the contract fails on any).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
import sys
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import h11
from botocore.parsers import RpcV2CBORParser

from local_stack.recording.calls import CallLog

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
# RFC 9113 section 6: frame types and flags read after the client's GOAWAY
_DATA, _GOAWAY, _OPENS_A_REQUEST = 0x0, 0x7, (0x1, 0x5, 0x9)  # HEADERS, PUSH_PROMISE, CONTINUATION
_END_STREAM, _PADDED = 0x1, 0x8


@dataclass(frozen=True)
class Listener:
    api: str  # kinesis, dynamodb, cloudwatch
    port: int  # where the tap listens (127.0.0.1)
    upstream_port: int  # the emulator


def parse_request(api: str, headers: Mapping[str, str], body: bytes) -> tuple[str, dict[str, Any]]:
    """(operation, parameters) of one AWS request."""
    target = headers.get("x-amz-target", "")
    content_type = headers.get("content-type", "")
    if headers.get("content-encoding", "").lower() == "gzip":  # the SDK compresses large
        body = gzip.decompress(body)  # PutMetricData requests (requestcompression trait)
    if target:
        operation = target.rsplit(".", 1)[-1]
        if not body:
            return operation, {}
        if "cbor" in content_type:
            # timestamps (CBOR tag 1) kept as sent: the AWS SDK for Java sends epoch
            # milliseconds (a ListShards AT_TIMESTAMP filter), which botocore's parser, built
            # for seconds, refuses ("year 58884 is out of range"); names are all we record
            parser = RpcV2CBORParser(timestamp_parser=lambda value: value)
            return operation, parser.parse_data_item(parser.get_peekable_stream_from_bytes(body))
        return operation, json.loads(body)
    form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
    params = {k: v[0] for k, v in form.items()}
    return params.pop("Action"), params


def access_key(headers: Mapping[str, str]) -> str:
    found = _CREDENTIAL.search(headers.get("authorization", ""))
    return found.group(1) if found else ""


class _Reader:
    """The requests in one connection's client-to-server bytes."""

    def __init__(self, on_request: Callable[[dict[str, str], bytes], None]) -> None:
        self._on_request = on_request
        self._h1: h11.Connection | None = h11.Connection(h11.SERVER)
        self._h2: h2.connection.H2Connection | None = None
        self._pending = b""
        self._streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self._h1_request: tuple[dict[str, str], bytearray] | None = None
        self._frames = b""  # HTTP/2 bytes not yet a whole frame
        self._goaway = False  # the client sent GOAWAY: h2 reads nothing after it

    def feed(self, data: bytes) -> None:
        if self._h2 is not None:
            self._feed_h2(data)
            return
        self._pending += data
        if len(self._pending) < len(PREFACE) and PREFACE.startswith(self._pending):
            return  # could still be the HTTP/2 preface
        if self._pending.startswith(PREFACE) and self._h1_request is None:
            config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8",
                                               validate_inbound_headers=False)  # fmt: skip
            self._h2 = h2.connection.H2Connection(config)
            # accept whatever the real server allowed the client (windows, frame sizes)
            self._h2.local_settings = h2.settings.Settings(
                client=False,
                initial_values={
                    h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1,
                    h2.settings.SettingCodes.MAX_FRAME_SIZE: 2**24 - 1,
                    h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2**31 - 1,
                },
            )
            self._h2.max_inbound_frame_size = 2**24 - 1
            self._h2.initiate_connection()
            self._h2.receive_data(PREFACE)
            data, self._pending = self._pending[len(PREFACE) :], b""
            self._feed_h2(data)
            return
        data, self._pending = self._pending, b""
        self._feed_h1(data)

    def _feed_h1(self, data: bytes) -> None:
        assert self._h1 is not None
        self._h1.receive_data(data)
        while True:
            event = self._h1.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                self._h1_request = (headers, bytearray())
            elif isinstance(event, h11.Data) and self._h1_request is not None:
                self._h1_request[1].extend(event.data)
            elif isinstance(event, h11.EndOfMessage) and self._h1_request is not None:
                headers, body = self._h1_request
                self._h1_request = None
                self._on_request(headers, bytes(body))
                # answer our own parser (never the client) so it reads the next request
                self._h1.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                self._h1.send(h11.EndOfMessage())
                self._h1.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return

    def _feed_h2(self, data: bytes) -> None:
        """Whole frames go to h2 up to the client's GOAWAY; h2 then refuses every frame (its
        connection is closed) while RFC 9113 section 6.8 lets the client still finish its open
        streams (and Netty resets the ones it gives up), so those frames are read here."""
        assert self._h2 is not None
        self._frames += data
        whole = 0  # the frames before ``whole`` are complete
        while len(self._frames) - whole >= 9:
            length = int.from_bytes(self._frames[whole : whole + 3], "big")
            end = whole + 9 + length
            if len(self._frames) < end:
                break
            kind = self._frames[whole + 3]
            if self._goaway:
                flags = self._frames[whole + 4]
                stream_id = int.from_bytes(self._frames[whole + 5 : whole + 9], "big") & 0x7FFFFFFF
                self._after_goaway(kind, flags, stream_id, self._frames[whole + 9 : end])
            elif kind == _GOAWAY:  # h2 reads every frame up to it in one go
                self._h2_events(self._frames[:end])
                self._goaway = True
            whole = end
        if not self._goaway:
            self._h2_events(self._frames[:whole])
        self._frames = self._frames[whole:]

    def _h2_events(self, frames: bytes) -> None:
        assert self._h2 is not None
        for event in self._h2.receive_data(frames):
            if isinstance(event, h2.events.RequestReceived):
                headers = {str(k).lower(): str(v) for k, v in event.headers}
                self._streams[event.stream_id] = (headers, bytearray())
            elif isinstance(event, h2.events.DataReceived):
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if event.stream_id in self._streams:
                    self._streams[event.stream_id][1].extend(event.data)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id in self._streams:
                headers, body = self._streams.pop(event.stream_id)
                self._on_request(headers, bytes(body))
        self._h2.data_to_send()  # never sent: the real server answers the client

    def _after_goaway(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if kind in _OPENS_A_REQUEST:
            raise ValueError(f"a request opened after the client's GOAWAY (stream {stream_id})")
        if kind != _DATA or stream_id not in self._streams:
            return  # RST_STREAM, WINDOW_UPDATE, PING, SETTINGS...: nothing to record
        if flags & _PADDED:
            payload = payload[1 : len(payload) - payload[0]]
        self._streams[stream_id][1].extend(payload)
        if flags & _END_STREAM:
            headers, body = self._streams.pop(stream_id)
            self._on_request(headers, bytes(body))


class WireTap:
    """Listeners on 127.0.0.1 in a background thread; ``stop`` closes everything."""

    def __init__(self, listeners: list[Listener], log: CallLog, keys: Mapping[str, str]) -> None:
        self.listeners = listeners
        self.log = log
        self.keys = dict(keys)  # access key id -> service name
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._servers: list[asyncio.AbstractServer] = []

    def start(self) -> None:
        self._thread.start()
        for listener in self.listeners:
            future = asyncio.run_coroutine_threadsafe(self._listen(listener), self._loop)
            self._servers.append(future.result(timeout=10))

    def stop(self) -> None:
        """Close the listeners and every connection, then the loop (nothing left open)."""
        if not self._thread.is_alive():
            return

        async def close() -> None:
            for server in self._servers:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for server in self._servers:
                await server.wait_closed()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
        self.log.flush()

    async def _listen(self, listener: Listener) -> asyncio.AbstractServer:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._connection(listener, reader, writer)

        return await asyncio.start_server(handle, "127.0.0.1", listener.port)

    def _record(self, api: str, headers: dict[str, str], body: bytes) -> None:
        service = self.keys.get(access_key(headers))
        if service is None:
            return
        try:
            operation, params = parse_request(api, headers, body)
        except Exception as exc:  # what it was, to find out why (the contract fails on it)
            self.log.add(service, api, "<unreadable>", {})
            sys.stderr.write(json.dumps({"unreadable": service, "api": api,
                                         "error": f"{type(exc).__name__}: {exc}"[:300],
                                         "headers": {k: v for k, v in headers.items()
                                                     if k != "authorization"},
                                         "body": body[:300].hex()}) + "\n")  # fmt: skip
            return
        self.log.add(service, api, operation, params)

    async def _connection(self, listener: Listener, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:  # fmt: skip
        try:
            up_reader, up_writer = await asyncio.open_connection(
                "127.0.0.1", listener.upstream_port
            )
        except OSError:
            writer.close()
            return
        parser = _Reader(lambda h, b: self._record(listener.api, h, b))
        broken = False

        async def inbound() -> None:
            nonlocal broken
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
                if not broken:
                    try:
                        parser.feed(data)
                    except Exception as exc:  # the connection's framing: say what broke it
                        broken = True
                        self.log.add("<tap>", listener.api, "<unreadable>", {})
                        what = {"unreadable": "<connection>", "api": listener.api,
                                "error": f"{type(exc).__name__}: {exc}"[:300],
                                "bytes": data[:300].hex()}  # fmt: skip
                        sys.stderr.write(json.dumps(what) + "\n")
            up_writer.write_eof() if up_writer.can_write_eof() else None

        async def outbound() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write_eof() if writer.can_write_eof() else None

        try:
            await asyncio.gather(inbound(), outbound())
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await w.wait_closed()


def main(argv: list[str] | None = None) -> None:
    """``python -m local_stack.recording.tap --log-dir DIR --key KEY=SERVICE ...
    --listen API:PORT:UPSTREAM ...``: run until SIGTERM or SIGINT, then write the log."""
    import argparse
    import os
    import signal
    from pathlib import Path

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--log-dir", type=Path, required=True, help="writes tap-<pid>.json")
    parser.add_argument("--stack", type=Path, help="stack.json: the stack's names")
    parser.add_argument("--key", action="append", default=[], help="ACCESS_KEY_ID=SERVICE")
    parser.add_argument("--listen", action="append", default=[], help="API:PORT:UPSTREAM_PORT")
    args = parser.parse_args(argv)
    stack = json.loads(args.stack.read_text()) if args.stack else {}
    listeners = [Listener(a, int(p), int(u)) for a, p, u in (x.split(":") for x in args.listen)]
    keys = dict(k.split("=", 1) for k in args.key)
    log = CallLog(args.log_dir / f"tap-{os.getpid()}.json", stack)  # a restart: a new file
    tap = WireTap(listeners, log, keys)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    tap.start()
    tap.log.flush()  # the file exists from the start: "no calls yet", not "not recording"
    stop.wait()
    tap.stop()


if __name__ == "__main__":
    main()
