"""The tools find a running stack through its endpoints file instead of assuming ports; the
stack checks every port, the dashboard's too, before it starts anything."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consumer import replay
from loadgen.__main__ import LOCAL_DYNAMODB, _arguments, is_local
from local_stack import endpoints, items
from local_stack.endpoints import Endpoints
from local_stack.ownership import PidFile, Recorded, started
from local_stack.processes import ManagedProcess, StartupError
from local_stack.stack import LocalStack, StackConfig

ENDPOINTS = Endpoints(
    run="run-1",
    producer="http://127.0.0.1:9080",
    kinesis="https://127.0.0.1:9567",
    kinesis_ca_bundle="/state/tls/cert.pem",
    dynamodb="http://127.0.0.1:9000",
    dashboard=None,
    region="eu-west-1",
    stream="s",
    records_table="r",
    quarantine_table="q",
)


def _running(state: Path, run: str = "run-1", launcher: int | None = None) -> None:
    """A pid file as a stack with ``launcher`` (default: this process, alive) writes it."""
    pid = launcher if launcher is not None else os.getpid()
    PidFile(run, Recorded("launcher", pid, started(pid) or "gone"), ()).write(state / "pids.json")


def test_a_running_stack_is_found_with_its_ports(tmp_path: Path) -> None:
    # GIVEN a stack running from a state dir, on other ports than the defaults
    _running(tmp_path)
    endpoints.write(tmp_path, ENDPOINTS)
    # WHEN a tool looks THEN it finds that stack's endpoints
    assert endpoints.find(tmp_path) == ENDPOINTS


def test_a_file_left_by_a_stack_that_is_gone_is_not_believed(tmp_path: Path) -> None:
    endpoints.write(tmp_path, ENDPOINTS)
    assert endpoints.find(tmp_path) is None  # no pid file
    _running(tmp_path, launcher=2**22 + 7)  # a launcher that is not running
    assert endpoints.find(tmp_path) is None
    _running(tmp_path, run="another-run")  # the pid file of a later run, before it wrote its own
    assert endpoints.find(tmp_path) is None


@pytest.fixture
def stack_dir(tmp_path: Path) -> Iterator[Path]:
    _running(tmp_path)
    endpoints.write(tmp_path, ENDPOINTS)
    yield tmp_path


def test_loadgen_sends_to_the_running_stack_and_counts_in_its_dynamodb(stack_dir: Path) -> None:
    args = _arguments(["--state-dir", str(stack_dir)])
    assert (args.url, args.dynamodb_endpoint) == (ENDPOINTS.producer, ENDPOINTS.dynamodb)
    assert (args.table, args.region) == ("r", "eu-west-1")


def test_loadgen_never_counts_a_local_url_in_aws(tmp_path: Path) -> None:
    # GIVEN no stack found, and the producer named as localhost (the issue: that was AWS)
    args = _arguments(["--url", "http://localhost:8080", "--state-dir", str(tmp_path)])
    # THEN the records are looked for in DynamoDB Local
    assert args.dynamodb_endpoint == LOCAL_DYNAMODB
    assert [
        is_local(u)
        for u in (
            "http://localhost:1",
            "http://127.0.0.2",
            "http://[::1]:80",
            "https://ingest.example.com",
            "http://10.0.0.1",
        )
    ] == [True, True, True, False, False]
    # AND a deployed URL's records are counted in AWS
    deployed = _arguments(["--url", "https://ingest.example.com", "--state-dir", str(tmp_path)])
    assert deployed.dynamodb_endpoint is None


def test_replay_local_takes_the_stacks_stream_and_quarantine(
    stack_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a running stack, and no CONSUMER_* settings at all
    seen: list[tuple[Any, ...]] = []
    monkeypatch.delenv("CONSUMER_STREAM_NAME", raising=False)
    monkeypatch.setattr(replay, "replay", lambda *args: seen.append(args) or replay.Outcome())
    # WHEN the quarantine is replayed with --local
    assert replay.main(["--local", "--state-dir", str(stack_dir), "--dry-run"]) == 0
    # THEN it used that stack's Kinesis and DynamoDB, stream and quarantine table
    kinesis, ddb, stream, table, _, dry_run = seen[0]
    assert (stream, table, dry_run) == ("s", "q", True)
    assert kinesis.meta.endpoint_url == ENDPOINTS.kinesis
    assert ddb.meta.endpoint_url == ENDPOINTS.dynamodb
    assert "replayed 0" in capsys.readouterr().out


def test_tools_say_when_no_stack_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for tool in (
        lambda: _arguments(["--state-dir", str(tmp_path)]),
        lambda: items.main(["--state-dir", str(tmp_path)]),
        lambda: replay.main(["--local", "--state-dir", str(tmp_path)]),
    ):
        with pytest.raises(SystemExit) as stopped:
            tool()
        assert stopped.value.code == 2
        assert f"no local stack is running from {tmp_path}" in capsys.readouterr().err


def test_every_port_is_checked_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the dashboard's port taken by another program
    spawned: list[str] = []
    monkeypatch.setattr(ManagedProcess, "start", lambda self, cwd=None: spawned.append(self.name))
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        busy = other.getsockname()[1]
        config = StackConfig(
            state_dir=tmp_path,
            dashboard_port=busy,
            kinesis_tls_port=1,
            kinesis_plain_port=2,
            dynamodb_port=3,
            producer_port=4,
        )
        stack = LocalStack(config)
        # WHEN the stack starts THEN it stops at once, naming the port, with nothing started
        with pytest.raises(StartupError, match=f"ports already in use on 127.0.0.1: \\[{busy}\\]"):
            stack.start()
        stack.stop()
    assert spawned == []
