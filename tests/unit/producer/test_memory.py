"""Memory held for waiting requests: bodies, parsed objects and records count against one bound
(``PRODUCER_MAX_BUFFERED_BYTES``), measured in-process with tracemalloc against a Kinesis that
does not answer until the test lets it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from producer.config import ProducerSettings
from producer.main import create_app
from producer.memory import exact_parse_cost, parse_cost
from tests.fakes import FakeKinesis, even_shards
from tests.kpl import sub_records
from tests.polling import eventually_async

MiB = 1024 * 1024


def _held_kinesis() -> tuple[FakeKinesis, threading.Event]:
    gate = threading.Event()
    kinesis = FakeKinesis(even_shards(4))
    put = kinesis.put_records

    def held(**kwargs: Any) -> dict[str, Any]:
        gate.wait(60)
        return put(**kwargs)

    kinesis.put_records = held  # type: ignore[method-assign, assignment]  # wrapped for this test
    return kinesis, gate


async def _post_all_and_measure(
    app: Any, kinesis_gate: threading.Event, bodies: list[bytes], records_each: int
) -> tuple[int, list[httpx.Response]]:
    """POST ``bodies`` at once; once every request is answered or has its records taken, the
    traced peak over the baseline; then let Kinesis answer and return the responses."""
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://p", timeout=60) as client,
    ):
        collector = app.state.collector
        headers = {"content-type": "application/json"}
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            tasks = [
                asyncio.ensure_future(client.post("/batch", content=b, headers=headers))
                for b in bodies
            ]

            def answered_or_taken() -> int:
                counters = collector.metrics.counters
                taken = counters["UserRecordsReceived"] + counters["UserRecordsOverloaded"]
                return sum(t.done() for t in tasks) * records_each + taken

            await eventually_async(
                answered_or_taken,
                until=lambda records: records >= len(bodies) * records_each,
                timeout=60,
                interval=0.05,
                what="every record answered or taken by the collector",
            )
            peak = tracemalloc.get_traced_memory()[1] - baseline
        finally:
            tracemalloc.stop()
            kinesis_gate.set()
        return peak, list(await asyncio.gather(*tasks))


def test_bodies_of_many_small_records_are_not_held_while_their_records_wait() -> None:
    # GIVEN a producer bounded to 16 MiB whose Kinesis does not answer yet, and 12 bodies of
    # 200 records whose data are lists of empty objects (~8 MB each once parsed)
    kinesis, gate = _held_kinesis()
    bound = 16 * MiB
    conf = ProducerSettings(stream_name="s", max_buffered_bytes=bound, emf_interval_seconds=0)
    app = create_app(conf, client=kinesis)
    record: dict[str, object] = {"data": [{}] * 500}
    bodies = [json.dumps({"records": [record] * 200}).encode() for _ in range(12)]
    # WHEN they are posted at once
    peak, responses = asyncio.run(_post_all_and_measure(app, gate, bodies, 200))
    # THEN the memory held peaks within the bound (it was ~100 MB: every parsed body was kept
    # until Kinesis answered)
    print(f"12 x {len(bodies[0]) / MiB:.2f} MiB bodies: traced peak {peak / MiB:.1f} MiB")  # noqa: T201 (pytest -s)
    assert peak <= bound + 2 * MiB, peak / MiB
    # AND each record was stored or refused as overloaded (503 + Retry-After for a request
    # refused whole; a batch answers per record), none lost: what was acknowledged is stored
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    acknowledged = 0
    for response in responses:
        if response.status_code == 200:
            results = response.json()["records"]
            assert {r.get("error", "ok") for r in results} <= {"ok", "overloaded"}
            acknowledged += sum("error" not in r for r in results)
        else:
            assert response.headers["retry-after"] and response.json()["error"] == "overloaded"
    assert acknowledged == sum(len(sub_records(s.data, s.partition_key)) for s in kinesis.stored)
    assert acknowledged >= 200


# JSON bodies of pathological and ordinary shapes, ``n`` bytes or so
SHAPES = {
    "empty objects": 'b"[" + b"{}," * (n // 3) + b"{}]"',
    "empty lists": 'b"[" + b"[]," * (n // 3) + b"[]]"',
    "nested one-key objects": """b"[" + b'{"":{}},' * (n // 8) + b'{"":{}}]'""",
    "zeros": 'b"[" + b"0," * (n // 2) + b"0]"',
    "integers": 'b"[" + b"257," * (n // 4) + b"257]"',
    "floats": 'b"[" + b"0.5," * (n // 4) + b"0.5]"',
    "17-digit floats": 'b"[" + b"0.12345678901234567," * (n // 20) + b"0.5]"',
    "floats in objects": """b"[" + b'{"a": 1.5},' * (n // 11) + b'{"a": 1.5}]'""",
    "short strings": """b"[" + b'"ab",' * (n // 5) + b'"ab"]'""",
    "one wide string": """b'["' + b"a" * n + chr(0x1F600).encode() + b'"]'""",
    "records": """orjson.dumps({"records": [{"data": {"n": 1, "item": "x" * 64}}] * (n // 60)})""",
    "many keys": """b"{" + b",".join(b'"k%d":1' % i for i in range(n // 10)) + b'}'""",
}

# Run alone in a fresh interpreter: the peak resident memory parsing takes (VmHWM reset via
# /proc/self/clear_refs), and the estimate.
_MEASURE = """
import gc, json, sys, orjson
from common.storable import loads as exact
from producer.memory import exact_parse_cost, parse_cost
n = 4 * 1024 * 1024
body = eval(sys.argv[1])
loads = {"orjson": orjson.loads, "json": json.loads, "exact": exact}[sys.argv[2]]
cost = exact_parse_cost if sys.argv[2] == "exact" else parse_cost
def status(key):
    return int(open("/proc/self/status").read().split(key + ":")[1].split()[0]) * 1024
gc.collect()
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
parsed = loads(body)
print(status("VmHWM") - before, cost(body))
"""


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("parser", ["orjson", "json", "exact"])
def test_the_parse_cost_bounds_what_parsing_a_body_takes(shape: str, parser: str) -> None:
    # GIVEN a 4 MiB body of each shape WHEN parsed by the fast path's parser, Python's, or the
    # FastAPI route's (every number a Decimal: twice the floats' peak), alone in a fresh process
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, SHAPES[shape], parser],
        capture_output=True, text=True, check=True, timeout=60,
        cwd=Path(__file__).parents[3],
    ).stdout  # fmt: skip
    peak, estimate = map(int, out.split())
    # THEN the estimate charged before parsing is at least the resident memory it took at peak
    assert estimate >= peak, (estimate / MiB, peak / MiB)


def test_uvicorn_connection_limit_matches_the_memory_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the default bound, a larger one, and an explicit limit
    default = ProducerSettings(stream_name="s")
    larger = ProducerSettings(stream_name="s", max_buffered_bytes=256 * MiB)
    explicit = ProducerSettings(stream_name="s", max_connections=100)
    # THEN connections may hold at most the bound again (16 KiB each) unless set explicitly
    assert default.connection_limit == 4096
    assert larger.connection_limit == 4 * 4096
    assert explicit.connection_limit == 100
    # AND python -m producer hands it to uvicorn
    seen: dict[str, Any] = {}

    class Recording:
        def __init__(self, config: Any, *_: Any) -> None:
            seen["limit"] = config.limit_concurrency

        def run(self) -> None:
            pass

    import producer.__main__ as entry

    monkeypatch.setattr(entry, "DrainingServer", Recording)
    monkeypatch.setattr(entry, "get_settings", lambda: default)
    monkeypatch.setattr(entry, "create_app", lambda settings: object())
    entry.main([])  # no options (not pytest's argv)
    assert seen["limit"] == 4096


def test_a_body_the_route_reads_exactly_is_charged_its_decimals() -> None:
    # GIVEN a batch of short floats with one 17-digit number (the fast path leaves it to the
    # FastAPI route, which reads every number as a Decimal, twice the floats' memory), and a
    # bound its orjson parse fits in but its exact parse does not
    body = b'{"records": [{"data": [%s]}, {"data": 0.12345678901234567}]}' % b",".join(
        [b"1.5"] * 300_000
    )
    bound = 2 * len(body) + 4096 + parse_cost(body) + MiB
    assert bound < exact_parse_cost(body)
    conf = ProducerSettings(stream_name="s", max_buffered_bytes=bound, emf_interval_seconds=0)
    kinesis = FakeKinesis(even_shards(4))
    with TestClient(create_app(conf, client=kinesis)) as client:
        # WHEN it is posted
        response = client.post("/batch", content=body, headers={"content-type": "application/json"})
    # THEN it is refused before the route parses it (it was parsed past the bound before)
    assert response.status_code == 413, response.text[:300]
    assert response.json()["error"] == "body_too_large"
    assert kinesis.stored == []
