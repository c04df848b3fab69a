"""The consumer's container health check: heartbeats written by processors, read by the check."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from amazon_kclpy import kcl

from consumer import config, health
from consumer.health import Heartbeat, stuck
from consumer.processor import RecordProcessor
from consumer.sink import WriteOutcome
from tests.unit.consumer.test_processor import INIT, FakeSink, _batch, _record, _reply
from tests.vtime import FakeClock


def test_a_processor_busy_past_the_limit_is_stuck_an_idle_one_never(tmp_path: Path) -> None:
    clock = FakeClock(5_000.0)
    busy, idle, ended = (Heartbeat(tmp_path, s, clock) for s in ("shard-1", "shard-2", "shard-3"))
    busy.busy()
    idle.busy()
    idle.idle()
    ended.busy()
    ended.gone()
    assert stuck(tmp_path, 120, clock.now + 119) == []
    assert stuck(tmp_path, 120, clock.now + 121) == ["shard-1"]
    assert stuck(tmp_path, 120, clock.now + 10**6) == ["shard-1"]  # idle stays healthy
    assert stuck(tmp_path / "none-yet", 120, clock.now) == []


def test_the_processor_is_busy_only_while_it_handles_a_batch(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    class Watching(FakeSink):
        def write(self, items: list[dict[str, Any]]) -> WriteOutcome:
            seen.append(json.loads((tmp_path / "shardId-000000000001.json").read_text()))
            return super().write(items)

    sink = Watching()
    processor = RecordProcessor(sink, FakeSink(), sleep=lambda _: None, heartbeat_dir=str(tmp_path))
    lines = [INIT, _batch(_record("a", "100", 0)), _reply("100", 0)]
    stdin = io.StringIO("".join(json.dumps(x) + "\n" for x in lines))
    kcl.KCLProcess(processor, stdin, sink.stdout, io.StringIO()).run()
    # busy while writing, idle once checkpointed, gone when the shard ends
    assert seen[0]["busy_since"] is not None
    state = json.loads((tmp_path / "shardId-000000000001.json").read_text())
    assert state == {"busy_since": None}
    stdin = io.StringIO(
        json.dumps({"action": "shardEnded"}) + "\n" + json.dumps(_reply(None, None)) + "\n"
    )
    kcl.KCLProcess(processor, stdin, sink.stdout, io.StringIO()).run()
    assert not (tmp_path / "shardId-000000000001.json").exists()


def test_the_check_exits_1_naming_the_stuck_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONSUMER_STREAM_NAME", "s")
    monkeypatch.setenv("CONSUMER_HEARTBEAT_DIR", str(tmp_path))
    monkeypatch.setenv("CONSUMER_WRITE_DEADLINE_SECONDS", "30")
    config.get_settings.cache_clear()
    try:
        assert health.main([]) == 0
        (tmp_path / "shardId-7.json").write_text(json.dumps({"busy_since": 1.0}))
        assert health.main([]) == 1
        assert "shardId-7" in capsys.readouterr().err
    finally:
        config.get_settings.cache_clear()
