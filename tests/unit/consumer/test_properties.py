"""Settings validation and the KCL properties file."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from consumer import config
from consumer.config import ConsumerSettings
from consumer.properties import POLLING_ONLY_KEYS, render_properties

PROCESSOR = "/usr/bin/python3 -m consumer.processor"


def _parse(text: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in text.splitlines())


def test_fanout_is_explicit_and_no_polling_key_is_written() -> None:
    # GIVEN default settings (AWS: no endpoints)
    settings = ConsumerSettings(stream_name="s")
    # WHEN rendered
    props = _parse(render_properties(settings, PROCESSOR))
    # THEN retrieval is FANOUT, said explicitly, and nothing could switch it to polling
    assert props["retrievalMode"] == "FANOUT"
    assert not POLLING_ONLY_KEYS & set(props)
    assert "kinesisEndpoint" not in props
    assert "dynamoDBEndpoint" not in props
    # AND the rest is what the daemon needs
    assert props == {
        "executableName": PROCESSOR,
        "streamName": "s",
        "applicationName": "kinesis-ingest-consumer",
        "AwsCredentialsProvider": "DefaultCredentialsProvider",
        "regionName": "us-east-1",
        "initialPositionInStream": "TRIM_HORIZON",
        "retrievalMode": "FANOUT",
        "metricsLevel": "SUMMARY",
        "failoverTimeMillis": "10000",
        "shardSyncIntervalMillis": "60000",
        "parentShardPollIntervalMillis": "10000",
        "shutdownGraceMillis": "30000",
    }


def test_at_timestamp_is_written_as_the_kcl_reads_it() -> None:
    # GIVEN a second application that starts reading at a moment (a replay)
    settings = ConsumerSettings(
        stream_name="s",
        application_name="app-rebuild",
        initial_position="AT_TIMESTAMP",
        initial_timestamp="2026-11-30T10:00:00.750Z",
    )
    # WHEN rendered
    props = _parse(render_properties(settings, PROCESSOR))
    # THEN the moment is in initialPositionInStreamExtended, whole epoch seconds, and
    # initialPositionInStream is absent (the daemon refuses AT_TIMESTAMP there)
    assert props["initialPositionInStreamExtended"] == "1796032800"
    assert "initialPositionInStream" not in props


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"initial_position": "AT_TIMESTAMP"}, "exactly when"),
        ({"initial_timestamp": "2026-11-30T10:00:00Z"}, "exactly when"),
        (
            {"initial_position": "AT_TIMESTAMP", "initial_timestamp": "2026-11-30T10:00:00"},
            "timezone",
        ),
        ({"item_ttl_seconds": -1}, "greater than or equal"),
    ],
)
def test_at_timestamp_and_expiry_settings_are_checked(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ConsumerSettings(stream_name="s", **values)


def test_polling_is_written_without_polling_tuning_keys() -> None:
    props = _parse(
        render_properties(ConsumerSettings(stream_name="s", retrieval_mode="POLLING"), PROCESSOR)
    )
    assert props["retrievalMode"] == "POLLING"
    assert not POLLING_ONLY_KEYS & set(props)


def test_local_endpoints_are_written_when_set() -> None:
    # GIVEN local endpoints
    settings = ConsumerSettings(
        stream_name="s",
        kinesis_endpoint="http://127.0.0.1:4568",
        dynamodb_endpoint="http://127.0.0.1:8000",
        metrics_level="NONE",
    )
    # WHEN rendered THEN the daemon is pointed at them
    props = _parse(render_properties(settings, "p"))
    assert props["kinesisEndpoint"] == "http://127.0.0.1:4568"
    assert props["dynamoDBEndpoint"] == "http://127.0.0.1:8000"
    assert props["metricsLevel"] == "NONE"


def test_worker_id_is_written_only_when_set() -> None:
    # GIVEN no worker id (AWS: the KCL draws a random one per start, as for a new ECS task)
    assert "workerId" not in _parse(render_properties(ConsumerSettings(stream_name="s"), "p"))
    # WHEN one is set (the local stack: a worker restarted in place keeps its identity)
    settings = ConsumerSettings(stream_name="s", worker_id="local-consumer")
    # THEN the daemon gets it under the name MultiLangDaemonConfiguration.setWorkerId reads
    assert _parse(render_properties(settings, "p"))["workerId"] == "local-consumer"


def test_the_lease_limit_is_written_when_set() -> None:
    # GIVEN a task sized for 16 record processors
    props = _parse(
        render_properties(ConsumerSettings(stream_name="s", max_leases_for_worker=16), "p")
    )
    # THEN the KCL takes at most 16 shards on this worker (one Python process each)
    assert props["maxLeasesForWorker"] == "16"
    assert "maxLeasesForWorker" not in _parse(
        render_properties(ConsumerSettings(stream_name="s"), "p")
    )


def test_empty_endpoint_variable_means_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUMER_STREAM_NAME", "s")
    monkeypatch.setenv("CONSUMER_KINESIS_ENDPOINT", "")
    assert ConsumerSettings().kinesis_endpoint is None


@pytest.mark.parametrize(
    "bad",
    [
        {"stream_name": "a\nretrievalMode = POLLING"},
        {"stream_name": "s", "retrieval_mode": "DEFAULT"},
        {"stream_name": "s", "initial_position": "AT_TIMESTAMP"},
        {"stream_name": "s", "metrics_level": "ALL"},
        {"stream_name": "s", "failover_time_millis": 0},
        {"stream_name": "s", "shard_sync_interval_millis": -1},
        {"stream_name": "s", "parent_shard_poll_interval_millis": 0},
        {"stream_name": "s", "write_deadline_seconds": 0},
        {"stream_name": "s", "write_deadline_seconds": float("inf")},
        {"stream_name": ""},
        {},
    ],
)
def test_nonsense_settings_fail_at_start(bad: dict[str, object]) -> None:
    # GIVEN a missing or invalid value WHEN settings are built THEN they are refused
    with pytest.raises(ValidationError):
        ConsumerSettings(**bad)


def test_settings_come_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN CONSUMER_ variables
    config.get_settings.cache_clear()
    monkeypatch.setenv("CONSUMER_STREAM_NAME", "orders")
    monkeypatch.setenv("CONSUMER_FAILOVER_TIME_MILLIS", "2500")
    try:
        # WHEN read twice THEN parsed, validated and cached
        settings = config.get_settings()
        assert (settings.stream_name, settings.failover_time_millis) == ("orders", 2500)
        assert config.get_settings() is settings
    finally:
        config.get_settings.cache_clear()


def test_a_value_with_a_newline_is_refused() -> None:
    with pytest.raises(ValueError, match="single line"):
        render_properties(ConsumerSettings(stream_name="s"), "python\nstreamName = other")


def test_values_are_escaped_for_java_properties() -> None:
    # GIVEN values with a backslash and non-ASCII characters
    props = render_properties(ConsumerSettings(stream_name="s"), "C:\\py\\python -m é𝄞")
    # THEN java.util.Properties reads them back as written
    assert "executableName = C:\\\\py\\\\python -m \\u00e9\\ud834\\udd1e\n" in props
