"""The record processor driven through the real amazon_kclpy protocol loop, in memory.

Each test feeds the JSON lines the MultiLangDaemon would send (its checkpoint replies included)
and compares the exact text the processor answers on stdout (golden transcripts).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from amazon_kclpy import kcl

from common.logs import configure_logging
from common.metric_catalog import CONSUMER
from consumer import processor as processor_module
from consumer.config import get_settings
from consumer.metrics import ConsumerMetrics
from consumer.processor import RecordProcessor
from consumer.records import QUARANTINE_PART_BYTES
from consumer.sink import SinkWriteError, WriteOutcome
from tests.polling import eventually
from tests.vtime import FakeClock

SHARD = "shardId-000000000001"
INIT = {"action": "initialize", "shardId": SHARD, "sequenceNumber": "1", "subSequenceNumber": 0}


class FakeSink:
    """Keeps what was written, and how many checkpoints had been asked for at each write;
    refuses the items whose ids are in ``refuse`` and supersedes those in ``superseded``,
    as DynamoDB and the sink would."""

    def __init__(
        self,
        error: Exception | None = None,
        refuse: frozenset[str] = frozenset(),
        superseded: frozenset[str] = frozenset(),
    ) -> None:
        self.error = error
        self.refuse, self.superseded = refuse, superseded
        self.written: list[dict[str, Any]] = []
        self.stdout = io.StringIO()
        self.checkpoints_before_write: list[int] = []

    def write(self, items: list[dict[str, Any]]) -> WriteOutcome:
        self.checkpoints_before_write.append(self.stdout.getvalue().count('"checkpoint"'))
        if self.error is not None:
            raise self.error
        outcome = WriteOutcome()
        for item in items:
            if item["id"]["S"] in self.refuse:
                outcome.refused.append((item, "ValidationException: Number overflow"))
            elif item["id"]["S"] in self.superseded:
                outcome.superseded.append(item)
            else:
                self.written.append(item)
        return outcome


class Stopped(BaseException):
    """Stands for the process exit of the real ``_fail_stop``."""


def _record(record_id: str, seq: str, sub: int, body: bytes | None = None) -> dict[str, Any]:
    if body is None:
        body = json.dumps({"id": record_id, "ts": 1, "data": {"v": record_id}}).encode()
    return {"action": "record", "data": base64.b64encode(body).decode(), "partitionKey": "k",
            "sequenceNumber": seq, "subSequenceNumber": sub,
            "approximateArrivalTimestamp": 1_700_000_000_000}  # fmt: skip


def _batch(*records: dict[str, Any]) -> dict[str, Any]:
    return {"action": "processRecords", "millisBehindLatest": 0, "records": list(records)}


def _reply(seq: str | None, sub: int | None, error: str | None = None) -> dict[str, Any]:
    """The daemon's answer to a checkpoint request."""
    return {"action": "checkpoint", "sequenceNumber": seq, "subSequenceNumber": sub, "error": error}


def _ask(seq: str | None, sub: int | None) -> str:
    """The checkpoint request line, exactly as the processor writes it."""
    return json.dumps({"action": "checkpoint", "sequenceNumber": seq, "subSequenceNumber": sub})


def _status(action: str) -> str:
    return json.dumps({"action": "status", "responseFor": action})


def _transcript(*lines: str) -> str:
    """kclpy frames every line it writes with newlines before and after."""
    return "".join(f"\n{line}\n" for line in lines)


def _run(
    lines: list[dict[str, Any]],
    sink: FakeSink,
    quarantine: FakeSink | None = None,
    ttl_seconds: int = 0,
) -> tuple[str, str]:
    stdin = io.StringIO("".join(json.dumps(line) + "\n" for line in lines))
    stderr = io.StringIO()
    quarantine = quarantine if quarantine is not None else FakeSink()
    quarantine.stdout = sink.stdout
    record_processor = RecordProcessor(sink, quarantine, sleep=lambda _: None,
                                       ttl_seconds=ttl_seconds)  # fmt: skip
    process = kcl.KCLProcess(record_processor, stdin, sink.stdout, stderr)
    with contextlib.suppress(Stopped):
        process.run()
    return sink.stdout.getvalue(), stderr.getvalue()


@pytest.fixture
def fail_stops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace ``_fail_stop`` by one that records the reason and unwinds like an exit."""
    reasons: list[str] = []

    def stop(reason: str) -> None:
        reasons.append(reason)
        raise Stopped

    monkeypatch.setattr(processor_module, "_fail_stop", stop)
    return reasons


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The processor's JSON log lines, in a buffer; the root logger is restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("consumer", stream)
    yield stream
    root.handlers[:], root.level = handlers, level


def test_items_carry_their_expiry_when_a_ttl_is_configured() -> None:
    sink = FakeSink()
    _run([INIT, _batch(_record("a", "100", 0)), _reply("100", 0)], sink, ttl_seconds=3600)
    assert sink.written[0]["expires_at"] == {"N": str(1_700_000_000 + 3600)}


def test_batch_is_written_then_checkpointed_at_its_last_record() -> None:
    # GIVEN three sub-records of one aggregate and a plain record, then the checkpoint reply
    batch = _batch(_record("a", "100", 0), _record("b", "100", 1), _record("c", "100", 2),
                   _record("d", "205", 0))  # fmt: skip
    sink = FakeSink()
    # WHEN the processor handles them
    out, err = _run([INIT, batch, _reply("205", 0)], sink)
    # THEN it wrote all four, before any checkpoint
    assert [i["id"]["S"] for i in sink.written] == ["a", "b", "c", "d"]
    assert sink.written[1]["shard_id"] == {"S": SHARD}
    assert sink.written[1]["sub_sequence_number"] == {"N": "1"}
    assert sink.written[1]["arrival_time"] == {"N": "1700000000000"}
    assert sink.checkpoints_before_write == [0]
    # AND then asked to checkpoint at the last record, then reported the batch done
    assert out == _transcript(_status("initialize"), _ask("205", 0), _status("processRecords"))
    assert err == ""


def test_checkpoint_carries_the_sub_sequence_of_an_aggregate() -> None:
    batch = _batch(_record("a", "100", 0), _record("b", "100", 1))
    out, _ = _run([INIT, batch, _reply("100", 1)], FakeSink())
    assert out == _transcript(_status("initialize"), _ask("100", 1), _status("processRecords"))


def test_write_failure_stops_without_checkpoint(fail_stops: list[str]) -> None:
    # GIVEN a sink that gives up on the batch
    sink = FakeSink(SinkWriteError("gave up after 9 attempts"))
    # WHEN the batch arrives
    out, _ = _run([INIT, _batch(_record("a", "7", 0)), {"action": "shutdownRequested"}], sink)
    # THEN the processor fail-stops: no checkpoint, no status for the batch, nothing after it
    assert fail_stops == ["SinkWriteError: gave up after 9 attempts"]
    assert out == _transcript(_status("initialize"))


def test_unexpected_sink_error_also_stops(fail_stops: list[str]) -> None:
    # GIVEN a sink failing in a way nobody planned for
    out, _ = _run([INIT, _batch(_record("a", "7", 0))], FakeSink(RuntimeError("bug")))
    # THEN the batch is not reported done either (kclpy would otherwise skip it)
    assert fail_stops == ["RuntimeError: bug"]
    assert out == _transcript(_status("initialize"))


def test_no_checkpoint_even_if_fail_stop_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processor_module, "_fail_stop", lambda reason: None)
    out, _ = _run([INIT, _batch(_record("a", "7", 0))], FakeSink(SinkWriteError("x")))
    assert '"checkpoint"' not in out


def test_fail_stop_exits_the_process_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN os._exit replaced by a recorder
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise Stopped

    monkeypatch.setattr(os, "_exit", fake_exit)
    # WHEN the processor fail-stops THEN it exits with 70, not by an exception kclpy could catch
    with pytest.raises(Stopped):
        processor_module._fail_stop("DynamoDB unavailable")
    assert codes == [70]


def test_poison_record_is_quarantined_and_logged(json_logs: io.StringIO) -> None:
    # GIVEN a batch whose last record is not JSON
    bad = _record("x", "6", 0, body=b"not json")
    sink, quarantine = FakeSink(), FakeSink()
    # WHEN handled
    out, _ = _run([INIT, _batch(_record("good", "5", 0), bad), _reply("6", 0)], sink, quarantine)
    # THEN the good record is written, the poison one quarantined with its raw bytes and the
    # reason, and only then is the batch checkpointed past both
    assert [i["id"]["S"] for i in sink.written] == ["good"]
    assert [(q["id"]["S"], q["data"]["B"]) for q in quarantine.written] == [
        (f"{SHARD}/6/0", b"not json")
    ]
    assert quarantine.written[0]["reason"]["S"].startswith("not JSON")
    assert quarantine.checkpoints_before_write == [0]
    assert out == _transcript(_status("initialize"), _ask("6", 0), _status("processRecords"))
    # AND it is an ERROR log line saying where and why
    logged = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    poison = [entry for entry in logged if entry["message"] == "poison record quarantined"]
    assert len(poison) == 1
    assert poison[0]["level"] == "ERROR"
    assert poison[0]["service"] == "consumer"
    assert (poison[0]["shard_id"], poison[0]["sequence_number"]) == (SHARD, "6")
    assert poison[0]["sub_sequence_number"] == 0
    assert poison[0]["reason"].startswith("not JSON")


def test_empty_batch_does_not_checkpoint() -> None:
    sink = FakeSink()
    out, _ = _run([INIT, _batch()], sink)
    assert out == _transcript(_status("initialize"), _status("processRecords"))
    assert sink.checkpoints_before_write == []


def test_lease_lost_does_not_checkpoint() -> None:
    # GIVEN the lease is lost WHEN told THEN the processor only acknowledges
    out, _ = _run([INIT, {"action": "leaseLost"}], FakeSink())
    assert out == _transcript(_status("initialize"), _status("leaseLost"))


def test_shard_end_and_shutdown_checkpoint() -> None:
    # GIVEN the end of the shard, then a shutdown request, each with the daemon's reply
    lines = [INIT, {"action": "shardEnded"}, _reply(None, None),
             {"action": "shutdownRequested"}, _reply(None, None)]  # fmt: skip
    # WHEN handled
    out, _ = _run(lines, FakeSink())
    # THEN each asks for a checkpoint at the end of what was delivered, then reports done
    assert out == _transcript(
        _status("initialize"),
        _ask(None, None),
        _status("shardEnded"),
        _ask(None, None),
        _status("shutdownRequested"),
    )


def test_throttled_checkpoint_is_retried() -> None:
    # GIVEN the first checkpoint is throttled
    lines = [INIT, _batch(_record("a", "9", 0)), _reply("9", 0, "ThrottlingException"),
             _reply("9", 0)]  # fmt: skip
    # WHEN handled THEN the same checkpoint is asked for again
    out, _ = _run(lines, FakeSink())
    assert out == _transcript(
        _status("initialize"), _ask("9", 0), _ask("9", 0), _status("processRecords")
    )


def test_shutdown_exception_on_checkpoint_is_not_an_error() -> None:
    lines = [INIT, {"action": "shutdownRequested"}, _reply(None, None, "ShutdownException")]
    out, err = _run(lines, FakeSink())
    assert out == _transcript(_status("initialize"), _ask(None, None), _status("shutdownRequested"))
    assert "Caught exception" not in err


def test_other_checkpoint_errors_are_raised() -> None:
    # GIVEN the daemon refuses the checkpoint as invalid
    lines = [INIT, _batch(_record("a", "9", 0)), _reply("9", 0, "InvalidStateException")]
    # WHEN handled THEN the error surfaces (kclpy reports it on stderr) and is not retried
    out, err = _run(lines, FakeSink())
    assert out == _transcript(_status("initialize"), _ask("9", 0), _status("processRecords"))
    assert "InvalidStateException" in err


def test_nothing_but_protocol_lines_on_stdout(
    capsys: pytest.CaptureFixture[str], json_logs: io.StringIO
) -> None:
    # GIVEN a whole session, with logging on and a poison record
    lines = [INIT, _batch(_record("a", "5", 0), _record("x", "6", 0, body=b"{")), _reply("6", 0),
             {"action": "leaseLost"}, {"action": "shardEnded"}, _reply(None, None)]  # fmt: skip
    out, _ = _run(lines, FakeSink())
    # THEN every line on the protocol channel is a status or checkpoint message
    for line in filter(None, out.splitlines()):
        assert json.loads(line)["action"] in {"status", "checkpoint"}
    # AND the process's real stdout got nothing; the logs went elsewhere
    assert capsys.readouterr().out == ""
    assert "poison record quarantined" in json_logs.getvalue()


def test_main_keeps_stdout_for_the_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN settings, and a KCLProcess that only records how it was made
    monkeypatch.setenv("CONSUMER_STREAM_NAME", "s")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setattr(processor_module, "configure_logging", lambda service: None)
    real_stdout, fake_stderr = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", real_stdout)
    monkeypatch.setattr(sys, "stderr", fake_stderr)
    made: list[tuple[Any, ...]] = []

    class FakeProcess:
        def __init__(self, *args: Any) -> None:
            made.append(args)

        def run(self) -> None:
            made.append(("ran", sys.stdout))

    monkeypatch.setattr(kcl, "KCLProcess", FakeProcess)
    get_settings.cache_clear()
    try:
        # WHEN the processor starts
        processor_module.main([])  # as the daemon runs it: no options
    finally:
        get_settings.cache_clear()
    # THEN the protocol writes to the real stdout, while anything else printing goes to stderr
    record_processor, _, output_file, error_file = made[0]
    assert isinstance(record_processor, RecordProcessor)
    assert (output_file, error_file) == (real_stdout, fake_stderr)
    assert made[1] == ("ran", fake_stderr)


def test_metrics_go_to_stderr_as_emf_once_an_interval_and_at_shutdown() -> None:
    # GIVEN a processor with metrics every 60 s, and two batches, one with a poison record
    clock, stderr = FakeClock(1_000.0), io.StringIO()
    metrics = ConsumerMetrics(stderr, 60.0, clock)
    sink, quarantine = FakeSink(), FakeSink()
    record_processor = RecordProcessor(sink, quarantine, sleep=lambda _: None, metrics=metrics)
    first = _batch(_record("a", "100", 0), _record("b", "101", 0), _record("x", "102", 0, b"?"))
    first["millisBehindLatest"] = 4200
    stdin = io.StringIO("".join(json.dumps(x) + "\n" for x in
                                [INIT, first, _reply("102", 0)]))  # fmt: skip
    kcl.KCLProcess(record_processor, stdin, sink.stdout, io.StringIO()).run()
    # THEN nothing is written before the interval is up
    assert stderr.getvalue() == ""
    # WHEN a minute passes and a second batch comes, then the shard ends
    clock.advance(61)
    stdin = io.StringIO("".join(json.dumps(x) + "\n" for x in
                                [_batch(_record("c", "200", 0)), _reply("200", 0),
                                 {"action": "shardEnded"}, _reply(None, None)]))  # fmt: skip
    kcl.KCLProcess(record_processor, stdin, sink.stdout, io.StringIO()).run()
    # THEN one EMF line covers the minute (3 written, 1 quarantined, the lag seen) and the
    # shard's end flushes nothing more (nothing happened since)
    lines = [json.loads(x) for x in stderr.getvalue().splitlines()]
    assert len(lines) == 1
    (line,) = lines
    assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "KinesisIngest/Consumer"
    assert (line["RecordsWritten"], line["RecordsQuarantined"]) == (3, 1)
    assert line["MillisBehindLatest"] == 4200
    assert len(line["EndToEndLatency"]) == 3 and min(line["EndToEndLatency"]) > 0
    assert line["BatchWriteLatencyMax"] >= 0
    declared = {m["Name"] for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert declared == {m.name for m in CONSUMER}
    assert (line["RecordsSuperseded"], line["WriteFailures"]) == (0, 0)
    # AND the protocol channel carried only protocol lines
    protocol = [json.loads(x) for x in sink.stdout.getvalue().splitlines() if x]
    assert {x["action"] for x in protocol} == {"status", "checkpoint"}


def test_end_to_end_latency_is_a_bounded_sample_for_percentiles() -> None:
    # GIVEN an interval in which 1,000 records were stored, and one without an ingest time
    out = io.StringIO()
    metrics = ConsumerMetrics(out, interval=3600)
    for start in range(0, 1000, 50):
        metrics.batch(50, 0, 1.0, 0, [float(v) for v in range(start, start + 50)])
    metrics.emit()
    metrics.batch(1, 0, 1.0, 0, [])
    metrics.emit()
    first, second = (json.loads(x) for x in out.getvalue().splitlines())
    # THEN the line carries at most EMF's 100 values, drawn from them, and the true maximum
    sample = first["EndToEndLatency"]
    assert len(sample) == 100 and set(sample) <= {float(v) for v in range(1000)}
    assert len(set(sample)) == 100 and max(sample) > 500  # spread over the interval, not a prefix
    assert first["EndToEndLatencyMax"] == 999
    # AND an interval with no latency declares none (an empty EMF value would be invalid)
    assert "EndToEndLatency" not in second
    declared = {m["Name"] for m in second["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert "EndToEndLatency" not in declared


def test_a_quiet_shard_still_gets_its_line_from_the_timer() -> None:
    # GIVEN a burst on a shard, then nothing (the KCL calls nothing on a quiet shard)
    out = io.StringIO()
    metrics = ConsumerMetrics(out, interval=0.2)
    metrics.start_timer()
    metrics.batch(7, 0, 1.0, 0, [3.0])
    # THEN the timer writes the interval's line anyway, once
    eventually(out.getvalue, timeout=10, interval=0.05, what="the timer's first EMF line")
    time.sleep(0.5)
    (line,) = out.getvalue().splitlines()
    assert json.loads(line)["RecordsWritten"] == 7


def test_a_record_dynamodb_refuses_is_quarantined_whole_and_the_shard_moves_on(
    fail_stops: list[str],
) -> None:
    # GIVEN a batch in which DynamoDB refuses one record's item (a gap in the contract, or a
    # record another writer put in the stream), between good ones
    batch = _batch(_record("a", "5", 0), _record("bad", "6", 0), _record("c", "7", 0))
    sink, quarantine = FakeSink(refuse=frozenset({"bad"})), FakeSink()
    # WHEN handled
    out, _ = _run([INIT, batch, _reply("7", 0)], sink, quarantine)
    # THEN the others are stored, the refused one is quarantined with DynamoDB's reason, and
    # the batch is checkpointed: no fail-stop, no stalled shard
    assert fail_stops == []
    assert [i["id"]["S"] for i in sink.written] == ["a", "c"]
    ((item),) = quarantine.written
    assert item["id"]["S"] == f"{SHARD}/6/0"
    assert json.loads(item["data"]["B"])["id"] == "bad"
    assert item["reason"]["S"] == "refused: ValidationException: Number overflow"
    assert out == _transcript(_status("initialize"), _ask("7", 0), _status("processRecords"))


def test_a_poison_record_of_a_mib_is_quarantined_in_parts_before_the_checkpoint() -> None:
    # GIVEN a 1 MiB record that is not JSON
    raw = bytes(range(256)) * 4096
    sink, quarantine = FakeSink(), FakeSink()
    # WHEN handled
    out, _ = _run([INIT, _batch(_record("x", "6", 0, body=raw)), _reply("6", 0)], sink, quarantine)
    # THEN all its bytes are in the quarantine, over several items, before the checkpoint
    parts = quarantine.written
    assert len(parts) == -(-len(raw) // QUARANTINE_PART_BYTES) == 4
    assert b"".join(p["data"]["B"] for p in parts) == raw
    assert quarantine.checkpoints_before_write == [0]
    assert out == _transcript(_status("initialize"), _ask("6", 0), _status("processRecords"))


def test_a_quarantine_that_refuses_an_item_stops_for_a_replay(fail_stops: list[str]) -> None:
    quarantine = FakeSink(refuse=frozenset({f"{SHARD}/6/0"}))
    out, _ = _run([INIT, _batch(_record("x", "6", 0, body=b"{"))], FakeSink(), quarantine)
    assert fail_stops and "quarantine refused" in fail_stops[0]
    assert '"checkpoint"' not in out


def test_a_write_failure_is_published_before_the_process_stops(fail_stops: list[str]) -> None:
    # GIVEN metrics, and a sink that gives up for a reason not about a record
    stderr = io.StringIO()
    metrics = ConsumerMetrics(stderr, 60.0)
    sink = FakeSink(SinkWriteError("BatchWriteItem failed: AccessDeniedException: no"))
    record_processor = RecordProcessor(sink, FakeSink(), sleep=lambda _: None, metrics=metrics)
    stdin = io.StringIO("".join(json.dumps(x) + "\n" for x in [INIT, _batch(_record("a", "7", 0))]))
    # WHEN the batch arrives
    with contextlib.suppress(Stopped):
        kcl.KCLProcess(record_processor, stdin, sink.stdout, io.StringIO()).run()
    # THEN an EMF line with WriteFailures = 1 is out before the fail-stop (the alarm's metric)
    assert fail_stops
    (line,) = [json.loads(x) for x in stderr.getvalue().splitlines()]
    assert (line["WriteFailures"], line["RecordsWritten"]) == (1, 0)


def test_superseded_copies_are_counted_not_written() -> None:
    stderr = io.StringIO()
    metrics = ConsumerMetrics(stderr, 60.0)
    sink = FakeSink(superseded=frozenset({"old"}))
    record_processor = RecordProcessor(sink, FakeSink(), sleep=lambda _: None, metrics=metrics)
    # GIVEN a copy the sink finds superseded, and an id twice in the batch
    lines = [INIT, _batch(_record("old", "5", 0), _record("new", "6", 0), _record("new", "7", 0)),
             _reply("7", 0)]  # fmt: skip
    stdin = io.StringIO("".join(json.dumps(x) + "\n" for x in lines))
    kcl.KCLProcess(record_processor, stdin, sink.stdout, io.StringIO()).run()
    metrics.emit()
    (line,) = [json.loads(x) for x in stderr.getvalue().splitlines()]
    # THEN written + superseded account for every record of the batch
    assert (line["RecordsWritten"], line["RecordsSuperseded"]) == (1, 2)
    assert [i["sequence_number"]["S"] for i in sink.written] == ["7"]
