"""The KCL daemon's log lines (consumer/logback.xml) are the services' JSON lines."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import consumer.__main__ as launcher
from consumer.config import ConsumerSettings

JAVA_SOURCE = Path(__file__).with_name("java") / "LogLines.java"


def _log_lines(level: str) -> list[dict[str, str]]:
    """What LogLines.java writes through our logback configuration, at ``level``, parsed."""
    argv = launcher.daemon_command(
        ConsumerSettings(stream_name="s", log_level=level), launcher.installed_jar_dir(), Path()
    )
    java_options = argv[1 : argv.index("-cp") + 2]  # our logback settings and the KCL's jars
    done = subprocess.run(
        [argv[0], *java_options, str(JAVA_SOURCE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]  # strict: no raw controls


@pytest.mark.skipif(shutil.which("java") is None, reason="no java (make install brings it)")
def test_every_line_is_a_json_object_of_the_services_format() -> None:
    # GIVEN the KCL logging at INFO WHEN it logs quotes, backslashes, line breaks and an
    # exception
    lines = _log_lines("INFO")
    # THEN each line is one JSON object with the Python services' fields, DEBUG left out
    assert [(line["level"], line["message"]) for line in lines] == [
        ("INFO", "plain 1"),
        ("WARNING", 'quote " backslash \\ line\nnext tab  \u00e9'),
        ("ERROR", "failed"),
    ]
    for line in lines:
        assert line["service"] == "consumer"
        assert line["location"] == "software.amazon.kinesis.Test"
        assert line["shard_id"] == "shardId-000000000001"
        assert line["timestamp"].endswith("Z")
    assert "exception" not in lines[0]
    assert lines[2]["exception"].startswith('java.lang.RuntimeException: boom "x" \\\n')
    assert "at LogLines.main" in lines[2]["exception"]


@pytest.mark.skipif(shutil.which("java") is None, reason="no java (make install brings it)")
def test_the_level_setting_reaches_the_kcl() -> None:
    assert [line["level"] for line in _log_lines("DEBUG")][:1] == ["DEBUG"]
    assert [line["level"] for line in _log_lines("warning")] == ["WARNING", "ERROR"]
