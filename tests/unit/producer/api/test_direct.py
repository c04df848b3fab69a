"""The direct path of ``producer.api.protocol.ProducerHttp``: a record request whose whole body
came with its headers is taken by the protocol itself, with no ASGI task, and answered as the
ASGI app answers the same request when its body comes in pieces.

The protocol runs in process, on the running loop, over a transport that keeps what is
written (``benchmarks.protocol.MemoryTransport``, which the socket-free benchmark uses too);
the app runs its lifespan against the fake Kinesis, so records really are taken, aggregated
and "stored".
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from benchmarks.protocol import MemoryTransport
from producer.api.fastpath import ProducerApp
from producer.api.protocol import ProducerHttp
from producer.config import ProducerSettings
from producer.main import create_app
from tests.fakes import FakeKinesis, even_shards

KEY = "direct-key-0123456789"


class Connection:
    """One client connection to the protocol."""

    def __init__(self, app: ProducerApp, state: ServerState) -> None:
        config = uvicorn.Config(app, access_log=False, log_config=None)
        config.load()
        self.state = state
        self.transport = MemoryTransport()
        self.protocol = ProducerHttp(
            config=config, server_state=state, app_state={}, _loop=asyncio.get_running_loop()
        )
        self.protocol.connection_made(self.transport)

    def send(self, *pieces: bytes) -> None:
        for piece in pieces:
            self.protocol.data_received(piece)

    async def responses(
        self, count: int, timeout: float = 5.0
    ) -> list[tuple[int, dict[str, str], Any]]:
        """The first ``count`` responses written: status, headers (but Date), JSON body."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = _split(bytes(self.transport.out))
            if len(found) >= count:
                return found[:count]
            assert loop.time() < deadline, (
                f"{len(found)} of {count} answers: {self.transport.out!r}"
            )
            await asyncio.sleep(0.005)


def _split(raw: bytes) -> list[tuple[int, dict[str, str], Any]]:
    out = []
    while b"\r\n\r\n" in raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
        length = int(headers["content-length"])
        if len(rest) < length:
            break
        headers.pop("date", None)
        out.append((int(lines[0].split()[1]), headers, json.loads(rest[:length])))
        raw = rest[length:]
    return out


def request(path: str, body: bytes, *extra: str, key: str = KEY, version: str = "1.1") -> bytes:
    head = [f"POST {path} HTTP/{version}", "Host: p", f"Content-Length: {len(body)}", *extra]
    if key:
        head.append(f"X-Api-Key: {key}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def served(test: Callable[[ProducerApp, ServerState, FakeKinesis], Awaitable[None]]) -> None:
    """Run ``test`` with a started producer app (fake Kinesis, 5 ms of buffering)."""

    async def main() -> None:
        kinesis = FakeKinesis(even_shards(4))
        conf = ProducerSettings(
            stream_name="s", max_buffered_time_ms=5, api_key=KEY, emf_interval_seconds=0
        )
        app = create_app(conf, client=kinesis)
        async with app.router.lifespan_context(app):
            await test(app, ServerState(), kinesis)

    asyncio.run(main())


def test_a_whole_record_request_is_taken_without_an_asgi_task() -> None:
    async def test(app: ProducerApp, state: ServerState, kinesis: FakeKinesis) -> None:
        conn = Connection(app, state)
        conn.send(request("/", b'{"data": {"n": 1}}'))
        assert not state.tasks  # no ASGI task: the protocol took the record
        ((status, headers, answer),) = await conn.responses(1)
        assert status == 200, answer
        assert set(answer) == {"id", "shard_id", "sequence_number"}
        assert headers["content-type"] == "application/json"
        assert len(kinesis.stored) == 1
        assert not conn.transport.closed  # kept alive
        assert app.ingest is not None and app.ingest.collector.budget.used == 0

    served(test)


def test_a_body_in_pieces_goes_through_the_asgi_app() -> None:
    async def test(app: ProducerApp, state: ServerState, kinesis: FakeKinesis) -> None:
        conn = Connection(app, state)
        raw = request("/", b'{"data": {"n": 1}}')
        conn.send(raw[:-5])
        assert len(state.tasks) == 1  # the ASGI app reads the rest, within its deadline
        conn.send(raw[-5:])
        ((status, _, answer),) = await conn.responses(1)
        assert status == 200, answer
        assert len(kinesis.stored) == 1

    served(test)


BIG = "9" * 20
CORPUS = {
    "record": ("/", b'{"data": {"n": 1, "s": "x"}}', ()),
    "record with id and key": (
        "/", b'{"id": "order-1", "partition_key": "k", "data": [1, 2]}', ()),
    "batch, one record refused": (
        "/batch", b'{"records": [{"data": 1}, {"nope": 2}, {"data": {"": 1}}]}', ()),
    "batch": ("/batch", b'{"records": [{"data": 1}, {"data": "two"}]}', ()),
    "not JSON": ("/", b'{"data": ', ()),
    "unknown field": ("/", b'{"data": 1, "extra": 2}', ()),
    "number beyond a double": ("/", f'{{"data": {BIG}}}'.encode(), ()),
    "wrong key": ("/", b'{"data": 1}', ("X-Api-Key: wrong",)),
    "not JSON content type": ("/", b'{"data": 1}', ("Content-Type: text/plain",)),
    "declared too large": ("/", b"", ("Content-Length: 7000000",)),
    "connection close": ("/", b'{"data": 1}', ("Connection: close",)),
    "empty batch": ("/batch", b'{"records": []}', ()),
}  # fmt: skip


def _shape(answer: Any) -> Any:
    """The answer with what differs from request to request (minted ids, so the shard, and
    sequence numbers) blanked."""
    text = json.dumps(answer, sort_keys=True)
    text = re.sub(r'"(id|sequence_number|shard_id)": "[^"]*"', r'"\1": "?"', text)
    return json.loads(text)


@pytest.mark.parametrize("name", CORPUS)
def test_the_direct_path_answers_as_the_asgi_app_does(name: str) -> None:
    path, body, extra = CORPUS[name]
    wrong_key = any(h.startswith("X-Api-Key") for h in extra)

    async def test(app: ProducerApp, state: ServerState, _: FakeKinesis) -> None:
        answers = []
        for pieces in ("whole", "in pieces"):
            conn = Connection(app, state)
            headers = [h for h in extra if not h.startswith("Content-Length")]
            raw = request(path, body, *headers, key="" if wrong_key else KEY)
            if any(h.startswith("Content-Length") for h in extra):
                raw = raw.replace(f"Content-Length: {len(body)}".encode(), extra[0].encode())
            conn.send(*((raw,) if pieces == "whole" else (raw[:-3], raw[-3:])))
            ((status, headers_out, answer),) = await conn.responses(1)
            answers.append((status, headers_out, _shape(answer), conn.transport.closed))
        assert answers[0] == answers[1]
        assert app.ingest is not None and app.ingest.collector.budget.used == 0

    served(test)


def test_pipelined_requests_are_answered_in_order() -> None:
    async def test(app: ProducerApp, state: ServerState, kinesis: FakeKinesis) -> None:
        conn = Connection(app, state)
        conn.send(
            request("/", b'{"id": "first", "data": 1}')
            + request("/batch", b'{"records": [{"id": "second", "data": 2}]}')
            + request("/", b'{"id": "third", "data": 3}')
        )
        answers = await conn.responses(3)
        assert [a[0] for a in answers] == [200, 200, 200]
        assert answers[0][2]["id"] == "first"
        assert answers[1][2]["records"][0]["id"] == "second"
        assert answers[2][2]["id"] == "third"
        assert len(kinesis.stored) == 3

    served(test)


def test_http_1_0_and_connection_close_get_their_answer_then_the_connection_closes() -> None:
    async def test(app: ProducerApp, state: ServerState, _: FakeKinesis) -> None:
        for raw in (
            request("/", b'{"data": 1}', version="1.0"),
            request("/", b'{"data": 1}', "Connection: close"),
        ):
            conn = Connection(app, state)
            conn.send(raw)
            ((status, headers, _),) = await conn.responses(1)
            assert status == 200
            assert headers["connection"] == "close"
            assert conn.transport.closed

    served(test)


def test_a_client_gone_before_the_answer_leaves_nothing_held() -> None:
    async def test(app: ProducerApp, state: ServerState, kinesis: FakeKinesis) -> None:
        conn = Connection(app, state)
        conn.send(request("/", b'{"data": 1}'))
        conn.protocol.connection_lost(None)
        assert app.ingest is not None
        budget = app.ingest.collector.budget
        for _ in range(200):
            if budget.used == 0:
                break
            await asyncio.sleep(0.005)
        assert budget.used == 0
        assert len(kinesis.stored) == 1  # taken is sent, as on the ASGI path
        assert conn.transport.out == b""

    served(test)


def test_a_failure_of_the_direct_path_leaves_the_request_to_the_asgi_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("a bug")

    async def test(app: ProducerApp, state: ServerState, kinesis: FakeKinesis) -> None:
        monkeypatch.setattr(ProducerApp, "serve_direct", broken)
        conn = Connection(app, state)
        conn.send(request("/", b'{"data": 1}'))
        assert len(state.tasks) == 1
        ((status, _, _),) = await conn.responses(1)
        assert status == 200
        assert len(kinesis.stored) == 1

    served(test)


def test_a_request_still_buffered_at_shutdown_gets_its_answer() -> None:
    """The lifespan stops the fast path (``app.ingest = None``) before the collector flushes
    what it holds: a record taken directly is answered by that flush all the same."""

    async def main() -> None:
        kinesis = FakeKinesis(even_shards(4))
        conf = ProducerSettings(
            stream_name="s", max_buffered_time_ms=20_000, api_key=KEY, emf_interval_seconds=0
        )
        app = create_app(conf, client=kinesis)
        state = ServerState()
        async with app.router.lifespan_context(app):
            conn = Connection(app, state)
            conn.send(request("/", b'{"data": 1}'))
            assert not state.tasks
            await asyncio.sleep(0.05)
            assert conn.transport.out == b""  # buffered: 30 s to go
        ((status, _, answer),) = await conn.responses(1)
        assert status == 200, answer
        assert len(kinesis.stored) == 1
        assert not conn.transport.closed

    asyncio.run(main())


def test_each_answer_carries_the_servers_default_headers_of_the_moment() -> None:
    """uvicorn replaces its default headers (Date, Server) every second: a direct answer
    written after that carries the new ones, not those of an earlier answer."""

    async def test(app: ProducerApp, state: ServerState, _: FakeKinesis) -> None:
        conn = Connection(app, state)
        for date in (b"Mon, 30 Nov 2026 10:00:00 GMT", b"Mon, 30 Nov 2026 10:00:01 GMT"):
            state.default_headers = [(b"date", date), (b"server", b"uvicorn")]
            conn.transport.out.clear()
            conn.send(request("/", b'{"data": 1}'))
            ((status, headers, _),) = await conn.responses(1)
            assert status == 200 and headers["server"] == "uvicorn"
            assert b"\r\ndate: " + date + b"\r\n" in conn.transport.out

    served(test)
