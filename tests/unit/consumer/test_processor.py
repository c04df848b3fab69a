"""The record processor driven through the real amazon_kclpy protocol loop, in memory.

Each test feeds the JSON lines the MultiLangDaemon would send and compares the exact lines the
processor answers on stdout (golden transcripts): checkpoints only after the write, statuses.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from amazon_kclpy import kcl

from consumer import processor as processor_module
from consumer.processor import RecordProcessor
from consumer.sink import SinkWriteError

SHARD = "shardId-000000000001"


class FakeSink:
    """Records what was written and whether a checkpoint had been asked for before."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.written: list[dict[str, Any]] = []
        self.stdout: io.StringIO | None = None
        self.checkpoints_before_write: list[int] = []

    def write(self, items: list[dict[str, Any]]) -> None:
        assert self.stdout is not None
        self.checkpoints_before_write.append(self.stdout.getvalue().count('"checkpoint"'))
        if self.fail:
            raise SinkWriteError("DynamoDB unavailable")
        self.written.extend(items)


def _record(record_id: str, seq: str, sub: int) -> dict[str, Any]:
    body = json.dumps({"id": record_id, "ts": 1, "data": {"v": record_id}}).encode()
    return {"action": "record", "data": base64.b64encode(body).decode(), "partitionKey": record_id,
            "sequenceNumber": seq, "subSequenceNumber": sub,
            "approximateArrivalTimestamp": 1_700_000_000_000}  # fmt: skip


def _run(lines: list[dict[str, Any]], sink: FakeSink) -> tuple[list[dict[str, Any]], str]:
    stdin = io.StringIO("".join(json.dumps(line) + "\n" for line in lines))
    stdout, stderr = io.StringIO(), io.StringIO()
    sink.stdout = stdout
    process = kcl.KCLProcess(RecordProcessor(sink, sleep=lambda _: None), stdin, stdout, stderr)
    process.run()
    replies = [json.loads(line) for line in stdout.getvalue().splitlines() if line.strip()]
    return replies, stderr.getvalue()


INIT = {"action": "initialize", "shardId": SHARD, "sequenceNumber": "1", "subSequenceNumber": 0}
OK = {"action": "checkpoint", "sequenceNumber": None, "subSequenceNumber": None, "error": None}


def _status(action: str) -> dict[str, Any]:
    return {"action": "status", "responseFor": action}


def test_batch_is_written_then_checkpointed_at_its_last_record() -> None:
    # GIVEN a batch of three sub-records of one aggregate, then the daemon's checkpoint reply
    records = [_record("a", "100", 0), _record("b", "100", 1), _record("c", "100", 2)]
    lines = [INIT, {"action": "processRecords", "millisBehindLatest": 0, "records": records}, OK]
    sink = FakeSink()
    # WHEN the processor handles them
    out, _ = _run(lines, sink)
    # THEN it wrote all three, then asked to checkpoint at (100, 2), then reported done
    assert [i["id"]["S"] for i in sink.written] == ["a", "b", "c"]
    assert sink.written[0]["shard_id"] == {"S": SHARD}
    assert sink.checkpoints_before_write == [0]
    assert out == [
        _status("initialize"),
        {"action": "checkpoint", "sequenceNumber": "100", "subSequenceNumber": 2},
        _status("processRecords"),
    ]


def test_write_failure_stops_without_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a sink that cannot write
    lines = [INIT, {"action": "processRecords", "millisBehindLatest": 0,
                    "records": [_record("a", "7", 0)]}]  # fmt: skip
    out: list[dict[str, Any]] = []
    # WHEN the batch arrives
    with pytest.raises(SystemExit) as stopped:
        out, _ = _run(lines, FakeSink(fail=True))
    # THEN the process exits (so the KCL replays) and never asked for a checkpoint
    assert stopped.value.code == processor_module.EXIT_WRITE_FAILED
    assert out == []


def test_poison_record_is_logged_and_the_rest_written() -> None:
    bad = {**_record("x", "5", 0), "data": base64.b64encode(b"not json").decode()}
    lines = [INIT, {"action": "processRecords", "millisBehindLatest": 0,
                    "records": [bad, _record("good", "6", 0)]}, OK]  # fmt: skip
    sink = FakeSink()
    out, _ = _run(lines, sink)
    assert [i["id"]["S"] for i in sink.written] == ["good"]
    assert out[1] == {"action": "checkpoint", "sequenceNumber": "6", "subSequenceNumber": 0}


def test_empty_batch_does_not_checkpoint() -> None:
    out, _ = _run([INIT, {"action": "processRecords", "millisBehindLatest": 0, "records": []}],
                  FakeSink())  # fmt: skip
    assert out == [_status("initialize"), _status("processRecords")]


def test_shard_end_and_shutdown_checkpoint_lease_lost_does_not() -> None:
    lines = [INIT, {"action": "leaseLost"}, {"action": "shardEnded", "checkpoint": None}, OK,
             {"action": "shutdownRequested", "checkpoint": None}, OK]  # fmt: skip
    out, _ = _run(lines, FakeSink())
    checkpoint_end = {"action": "checkpoint", "sequenceNumber": None, "subSequenceNumber": None}
    assert out == [
        _status("initialize"),
        _status("leaseLost"),
        checkpoint_end,
        _status("shardEnded"),
        checkpoint_end,
        _status("shutdownRequested"),
    ]


def test_throttled_checkpoint_is_retried() -> None:
    throttled = {**OK, "error": "ThrottlingException"}
    lines = [INIT, {"action": "processRecords", "millisBehindLatest": 0,
                    "records": [_record("a", "9", 0)]}, throttled, OK]  # fmt: skip
    out, _ = _run(lines, FakeSink())
    ask = {"action": "checkpoint", "sequenceNumber": "9", "subSequenceNumber": 0}
    assert out == [_status("initialize"), ask, ask, _status("processRecords")]


def test_shutdown_exception_on_checkpoint_is_not_an_error() -> None:
    lines = [INIT, {"action": "shutdownRequested", "checkpoint": None},
             {**OK, "error": "ShutdownException"}]  # fmt: skip
    out, stderr = _run(lines, FakeSink())
    assert out[-1] == _status("shutdownRequested")
    assert "Caught exception" not in stderr
