"""The local dashboard's sampler and server, fed by the services' real output formats."""

from __future__ import annotations

import io
import json
import os
import urllib.request
from pathlib import Path

import pytest

from consumer.metrics import ConsumerMetrics
from local_stack.dashboard import (
    NO_PROC,
    PANELS,
    DashboardServer,
    LogTail,
    Sampler,
    emf_documents,
    parse_prometheus,
)
from producer.metrics import ProducerMetrics


def _producer_text(received: int, put: int, calls: int, throttled: int) -> str:
    metrics = ProducerMetrics()
    for _ in range(received - 1):
        metrics.response(200)
    metrics.response(503)
    metrics.count("UserRecordsReceived", received)
    metrics.count("UserRecordsPut", put)
    metrics.count("KinesisRecordsPut", calls * 2)
    metrics.count("PutRecordsCalls", calls)
    for _ in range(throttled):
        metrics.error("ProvisionedThroughputExceededException")
    metrics.error("InternalFailure")
    return metrics.prometheus()


def _consumer_line(written: int, latencies: list[float]) -> str:
    out = io.StringIO()
    metrics = ConsumerMetrics(out)
    metrics.batch(written, 1, 2.0, 1500, latencies, retries=3)
    metrics.emit()
    return out.getvalue()


def test_producer_counters_are_read_from_its_prometheus_text() -> None:
    values = parse_prometheus(_producer_text(received=10, put=8, calls=2, throttled=4))
    assert values["requests"] == values["received"] == 10
    assert (values["put"], values["calls"], values["kinesis_records"]) == (8, 2, 4)
    assert values["throttled"] == 4  # only the throughput codes, not InternalFailure
    assert values["r503"] == 1


def test_log_tail_returns_only_new_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "consumer.log"
    tail = LogTail(path)
    assert tail.lines() == []  # not there yet
    path.write_text("one\ntw")
    assert tail.lines() == ["one"]
    with open(path, "a") as f:
        f.write("o\nthree\n")
    assert tail.lines() == ["two", "three"]
    assert tail.lines() == []


def test_only_emf_documents_of_the_namespace_are_taken() -> None:
    lines = [
        "2026-11-23 10:00:00 INFO  s.a.k.multilang - something",
        '{"timestamp": "x", "message": "processing shard"}',
        _consumer_line(5, [10.0]).strip(),
        "{not json",
    ]
    (document,) = emf_documents(lines, "KinesisIngest/Consumer")
    assert document["RecordsWritten"] == 5


def _sampler(tmp_path: Path, producer_url: str, shards: list[int]) -> Sampler:
    groups = {"producer": [os.getpid()], "consumer": [], "scaler": []}
    return Sampler(producer_url, tmp_path, lambda: groups, lambda: shards[0], interval=3600)


def test_samples_become_rates_ratios_and_percentiles(tmp_path: Path) -> None:
    # GIVEN a producer whose counters grow between two samples, and consumer EMF lines
    texts = iter([_producer_text(100, 100, 10, 0), _producer_text(300, 260, 20, 6)])
    served = tmp_path / "metrics.txt"
    shards = [5]
    sampler = _sampler(tmp_path, served.as_uri(), shards)
    served.write_text(next(texts))
    (tmp_path / "consumer.log").write_text(_consumer_line(40, [float(v) for v in range(1, 101)]))
    (tmp_path / "scaler.log").write_text(
        '{"_aws": {"CloudWatchMetrics": [{"Namespace": "KinesisIngest/Scaler"}]}, '
        '"TargetShards": 7, "OpenShards": 5}\n'
    )
    sampler.sample()
    served.write_text(next(texts))
    with open(tmp_path / "consumer-2.log", "w") as f:
        f.write(_consumer_line(60, [500.0]))
    shards[0] = 7
    sampler.sample()
    sampler.samples[-1]["t"] = sampler.samples[0]["t"] + 2  # type: ignore[operator]  # a float
    snapshot = sampler.snapshot()
    last = {s["key"]: s["last"] for p in snapshot["panels"] for s in p["series"]}
    # THEN counters become per-second rates over the 2 s between the samples
    assert last["producer.received/s"] == 100 and last["producer.put/s"] == 80
    assert last["producer.throttled/s"] == 3
    # AND the aggregation ratios come from the increases (160 put in 10 calls, 20 records)
    assert last["producer.per_call"] == 16 and last["producer.per_kinesis_record"] == 8
    # AND the consumer's lines from every worker add up; p50/p99 come from their samples
    totals = {t["key"]: t["value"] for t in snapshot["totals"]}
    assert totals["consumer.written"] == 100 and totals["consumer.quarantined"] == 2
    assert last["consumer.latency_p50"] == 51 and last["consumer.latency_p99"] == 100
    assert last["consumer.behind_ms"] == 1500
    assert (last["stream.open_shards"], last["scaler.target"]) == (7, 7)
    assert last["tasks.producer"] == 1 and last["cpu.producer"] is not None
    assert [p["id"] for p in snapshot["panels"]] == [p[0] for p in PANELS]


def test_the_server_serves_the_page_and_the_samples(tmp_path: Path) -> None:
    sampler = _sampler(tmp_path, "http://127.0.0.1:9/metrics", [2])  # nothing listens there
    server = DashboardServer(0, sampler)
    server.start()
    try:
        with urllib.request.urlopen(server.url, timeout=5) as page:
            assert b"/api/metrics" in page.read()
        for _ in range(50):
            with urllib.request.urlopen(server.url + "api/metrics", timeout=5) as response:
                data = json.loads(response.read())
            if data["updated"]:
                break
        assert data["updated"] and len(data["panels"]) == len(PANELS)
        # a producer that does not answer leaves its series empty, the rest still sampled
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(server.url + "nope", timeout=5)
    finally:
        server.stop()


def test_lines_a_previous_run_left_in_an_appended_log_are_not_counted(tmp_path: Path) -> None:
    # GIVEN a consumer log holding an earlier run's lines (the stack appends to its logs)
    log = tmp_path / "consumer.log"
    log.write_text(_consumer_line(1000, [5.0]))
    start = log.stat().st_size
    groups: dict[str, list[int]] = {"producer": [], "consumer": [], "scaler": []}
    sampler = Sampler("http://127.0.0.1:9/metrics", tmp_path, lambda: groups, lambda: 1,
                      interval=3600, log_starts=lambda: {log: start})  # fmt: skip
    with open(log, "a") as f:
        f.write(_consumer_line(7, [5.0]))
    # WHEN it samples THEN only this run's line counts
    sampler.sample()
    totals = {t["key"]: t["value"] for t in sampler.snapshot()["totals"]}
    assert totals["consumer.written"] == 7


def test_each_service_shows_its_restarts_and_how_it_last_ended(tmp_path: Path) -> None:
    # GIVEN the supervisor's view: the consumer restarted twice, the scaler waiting to restart
    status = [
        {"name": "producer", "pid": 10, "state": "running", "restarts": 0, "last_exit": None},
        {"name": "consumer", "pid": 11, "state": "running", "restarts": 2, "last_exit": "exit 70"},
        {"name": "scaler", "pid": 12, "state": "restarting", "restarts": 1,
         "last_exit": "killed by SIGKILL"},
    ]  # fmt: skip
    groups: dict[str, list[int]] = {"producer": [], "consumer": [], "scaler": []}
    sampler = Sampler("http://127.0.0.1:9/metrics", tmp_path, lambda: groups, lambda: 1,
                      interval=3600, services=lambda: status)  # fmt: skip
    # WHEN the page asks THEN each service has its line
    summaries = [s["summary"] for s in sampler.snapshot()["services"]]
    assert summaries == ["producer running", "consumer restarted 2x, last exit 70",
                         "scaler restarted 1x, last killed by SIGKILL (restarting)"]  # fmt: skip


def test_without_proc_every_sample_is_kept_and_the_cpu_panel_says_why(tmp_path: Path) -> None:
    # GIVEN a machine without /proc (macOS, some containers): before, no sample was kept
    groups: dict[str, list[int]] = {"producer": [1], "consumer": [], "scaler": []}
    sampler = Sampler("http://127.0.0.1:9/metrics", tmp_path, lambda: groups, lambda: 3,
                      interval=3600, proc=tmp_path / "no-proc")  # fmt: skip
    # WHEN it samples twice
    sampler.sample()
    sampler.sample()
    # THEN both samples are kept, the other panels have their values, CPU has none and a note
    snapshot = sampler.snapshot()
    assert len(sampler.samples) == 2
    panels = {p["id"]: p for p in snapshot["panels"]}
    assert panels["shards"]["series"][0]["last"] == 3
    assert panels["tasks"]["series"][0]["last"] == 1
    assert all(s["last"] is None for s in panels["cpu"]["series"])
    assert panels["cpu"]["note"] == NO_PROC and panels["ingest"]["note"] == ""
