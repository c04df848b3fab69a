"""The load generator's counting, pacing and record shapes, against a scripted endpoint."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from typing import Any

import httpx
import pytest

from loadgen.__main__ import summary
from loadgen.run import Plan, send
from loadgen.shapes import SHAPES
from producer.api.models import RecordIn


def _answering(status_of: dict[int, int]) -> httpx.MockTransport:
    """POST / answers 200 with an id, or the status ``status_of`` gives the n-th request."""
    seen: list[Any] = []

    def handle(request: httpx.Request) -> httpx.Response:
        n = len(seen)
        seen.append(json.loads(request.content))
        if request.url.path == "/batch":
            records = seen[-1]["records"]
            results = [{"error": "invalid_record"} if i == 0 else {"id": f"{n}-{i}"}
                       for i in range(len(records))]  # fmt: skip
            return httpx.Response(200, json={"records": results})
        if n in status_of:
            if status_of[n] == 0:
                raise httpx.ConnectError("refused")
            return httpx.Response(status_of[n], json={"error": "overloaded"})
        return httpx.Response(200, json={"id": f"id-{n}", "shard_id": "s", "sequence_number": "1"})

    return httpx.MockTransport(handle)


def test_each_answer_is_counted_once_by_what_it_was() -> None:
    plan = Plan("http://producer", rate=5000, count=40, shape="orders")
    tally = asyncio.run(send(plan, transport=_answering({3: 503, 7: 503, 9: 413, 11: 0})))
    assert tally.sent == 40
    assert tally.acked == 36 and len(set(tally.ids)) == 36 and len(tally.latencies_ms) == 36
    assert dict(tally.rejected) == {"503": 2, "413": 1}
    assert tally.failed == 1 and dict(tally.failed_by) == {"ConnectError": 1}
    result = summary(plan, tally, 36, "")
    assert result["latency_ms"]["p50"] is not None
    assert result["latency_ms"]["max"] >= result["latency_ms"]["p99"] >= result["latency_ms"]["p50"]


def test_batches_count_each_record_by_its_own_result() -> None:
    plan = Plan("http://producer", rate=5000, count=95, shape="clicks", batch=10)
    tally = asyncio.run(send(plan, transport=_answering({})))
    # ten requests: nine of 10 records and one of 5, the first record of each refused
    assert tally.sent == 95
    assert dict(tally.rejected) == {"invalid_record": 10}
    assert tally.acked == 85


def test_each_acknowledged_record_keeps_when_it_was_due() -> None:
    # GIVEN 20 requests at 100/s (one due every 10 ms)
    plan = Plan("http://producer", rate=100, count=20)
    before = time.time() * 1000
    # WHEN they are sent
    tally = asyncio.run(send(plan, transport=_answering({})))
    # THEN each acknowledged id has its due time (epoch ms), 10 ms apart, within the run
    assert len(tally.due_ms) == len(tally.ids) == 20
    due = sorted(tally.due_ms)
    assert before - 50 <= due[0] and due[-1] <= time.time() * 1000
    assert all(abs((b - a) - 10) < 1 for a, b in itertools.pairwise(due))


def test_small_records_are_100_bytes_of_json() -> None:
    rng = random.Random(5)
    for n in (0, 7, 12_345, 10**9):
        _, data = SHAPES["small"](rng, n)
        assert len(json.dumps(data, separators=(",", ":"))) == 100


def test_requests_are_paced_at_the_rate_not_sent_at_once() -> None:
    plan = Plan("http://producer", rate=200, count=41)
    tally = asyncio.run(send(plan, transport=_answering({})))
    assert tally.elapsed >= 0.2  # the 41st is due 200 ms after the first


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_shape_makes_records_the_producer_accepts(shape: str) -> None:
    rng = random.Random(3)
    keys = set()
    for n in range(300):
        key, data = SHAPES[shape](rng, n)
        RecordIn.model_validate({"data": data, "partition_key": key})
        assert json.loads(json.dumps(data)) == data
        keys.add(key)
    assert 10 < len(keys) < 300  # skewed: some keys repeat, many differ
