"""Session-wide for the integration tests: every local stack started in this session writes
its services' AWS calls under one directory (``KINESIS_INGEST_AWS_CALLS_DIR``), and the IAM
call contract (test_aws_call_contract.py) runs last and evaluates them all at once. Numbers a
test reports (``report``) are printed at the end of the run, passed or not, so CI's log shows
them (pytest hides a passing test's output)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack.recording.calls import CALLS_DIR_ENV

CONTRACT = "test_aws_call_contract.py"
MODULES: set[str] = set()  # the integration test files this session runs
# Evaluate the recordings of an earlier session instead (its directory): for working on the
# contract without running the stacks again
REPLAY_ENV = "KINESIS_INGEST_AWS_CALLS_REPLAY"
REPORTED: list[str] = []


def report(line: str) -> None:
    """A measured number for the end of the run's output."""
    REPORTED.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTED:
        terminalreporter.section("measured")
        for line in REPORTED:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The contract last: it reads what every other integration test's stacks recorded."""
    items.sort(key=lambda item: item.path.name == CONTRACT)
    MODULES.update(item.path.name for item in items if "integration" in item.path.parts)


@pytest.fixture(scope="session", autouse=True)
def aws_calls_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    replay = os.environ.get(REPLAY_ENV)
    if replay:
        MODULES.update(json.loads((Path(replay) / "modules.json").read_text()))
        yield Path(replay)
        return
    directory = tmp_path_factory.mktemp("aws-calls")
    (directory / "modules.json").write_text(json.dumps(sorted(MODULES)))
    previous = os.environ.get(CALLS_DIR_ENV)
    os.environ[CALLS_DIR_ENV] = str(directory)
    yield directory
    if previous is None:
        os.environ.pop(CALLS_DIR_ENV, None)
    else:
        os.environ[CALLS_DIR_ENV] = previous
