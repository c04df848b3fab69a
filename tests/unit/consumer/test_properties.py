"""The KCL properties file and the daemon's command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from consumer.__main__ import DAEMON_CLASS, LOGBACK_CONFIG, daemon_command
from consumer.config import ConsumerSettings
from consumer.properties import POLLING_ONLY_KEYS, render_properties


def _parse(text: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in text.splitlines())


def test_fanout_is_explicit_and_no_polling_key_is_written() -> None:
    # GIVEN default settings (AWS: no endpoints)
    settings = ConsumerSettings(stream_name="s")
    # WHEN rendered
    props = _parse(render_properties(settings, "/usr/bin/python3 -m consumer.processor"))
    # THEN retrieval is FANOUT, said explicitly, and nothing could switch it to polling
    assert props["retrievalMode"] == "FANOUT"
    assert not POLLING_ONLY_KEYS & set(props)
    assert "kinesisEndpoint" not in props and "dynamoDBEndpoint" not in props
    assert props["AwsCredentialsProvider"] == "DefaultCredentialsProvider"
    assert props["executableName"] == "/usr/bin/python3 -m consumer.processor"
    assert props["applicationName"] == "kinesis-ingest-consumer"
    assert props["shutdownGraceMillis"] == "30000"


def test_local_endpoints_are_written_when_set() -> None:
    settings = ConsumerSettings(
        stream_name="s", kinesis_endpoint="http://127.0.0.1:4568",
        dynamodb_endpoint="http://127.0.0.1:8000", metrics_level="NONE",
    )  # fmt: skip
    props = _parse(render_properties(settings, "p"))
    assert props["kinesisEndpoint"] == "http://127.0.0.1:4568"
    assert props["dynamoDBEndpoint"] == "http://127.0.0.1:8000"
    assert props["metricsLevel"] == "NONE"


@pytest.mark.parametrize(
    "bad",
    [{"stream_name": "a\nretrievalMode = POLLING"},
     {"stream_name": "s", "retrieval_mode": "DEFAULT"},
     {"stream_name": "s", "failover_time_millis": 0}, {"stream_name": ""}],
)  # fmt: skip
def test_nonsense_settings_fail_at_start(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ConsumerSettings(**bad)  # type: ignore[arg-type]


def test_executable_with_a_newline_is_refused() -> None:
    with pytest.raises(ValueError, match="single line"):
        render_properties(ConsumerSettings(stream_name="s"), "python\nstreamName = other")


def test_daemon_command_runs_the_multilang_daemon_with_jvm_options() -> None:
    settings = ConsumerSettings(stream_name="s", java="/opt/java", jvm_options="-Xmx512m -Da=b")
    argv = daemon_command(settings, Path("/jars"), Path("/p/consumer.properties"))
    assert LOGBACK_CONFIG.is_file()
    assert argv == [
        "/opt/java", f"-Dlogback.configurationFile={LOGBACK_CONFIG}", "-Xmx512m", "-Da=b",
        "-cp", "/jars/*", DAEMON_CLASS, "--properties-file", "/p/consumer.properties",
    ]  # fmt: skip
