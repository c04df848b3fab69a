"""``python -m consumer``: the daemon's command line, and the launch up to the exec."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import consumer.__main__ as launcher
from consumer import config
from consumer.config import ConsumerSettings


def test_daemon_command_runs_the_multilang_daemon_with_jvm_options() -> None:
    # GIVEN a java and JVM options with a quoted argument
    settings = ConsumerSettings(
        stream_name="s", java="/opt/java", jvm_options="-Xmx512m '-Djavax.net.ssl.trustStore=/a b'"
    )
    # WHEN the command is built
    argv = launcher.daemon_command(settings, Path("/jars"), Path("/p/consumer.properties"))
    # THEN it is the exact argv of the daemon, with our logback configuration
    assert launcher.LOGBACK_CONFIG.is_file()
    assert argv == [
        "/opt/java",
        f"-Dlogback.configurationFile={launcher.LOGBACK_CONFIG}",
        "-Dkinesis_ingest.log_level=INFO",
        "-Xmx512m",
        "-Djavax.net.ssl.trustStore=/a b",
        "-cp",
        "/jars/*",
        "software.amazon.kinesis.multilang.MultiLangDaemon",
        "--properties-file",
        "/p/consumer.properties",
    ]


def test_a_cloudwatch_endpoint_reaches_the_kcl_as_the_sdks_system_property() -> None:
    # GIVEN a local CloudWatch endpoint (the daemon has no property for it)
    settings = ConsumerSettings(stream_name="s", cloudwatch_endpoint="http://127.0.0.1:4599")
    # WHEN the command is built
    argv = launcher.daemon_command(settings, Path("/jars"), Path("/p.properties"))
    # THEN the JVM gets the AWS SDK's service-specific endpoint property, spelled as the SDK's
    # CloudWatch client builder reads it (the jar's class carries the name; checked below)
    assert "-Daws.endpointUrlCloudWatch=http://127.0.0.1:4599" in argv
    assert not any(
        "endpointUrlCloudWatch" in a
        for a in launcher.daemon_command(
            ConsumerSettings(stream_name="s"), Path("/jars"), Path("/p.properties")
        )
    )


def test_the_kcls_sdk_reads_the_cloudwatch_endpoint_property() -> None:
    # GIVEN the AWS SDK jar the KCL runs with
    import zipfile

    (jar,) = launcher.installed_jar_dir().glob("cloudwatch-2.*.jar")
    with zipfile.ZipFile(jar) as archive:
        builder = archive.read(
            "software/amazon/awssdk/services/cloudwatch/DefaultCloudWatchBaseClientBuilder.class"
        )
    # THEN its CloudWatch client builder names the property and variable we rely on
    assert b"aws.endpointUrlCloudWatch" in builder
    assert b"AWS_ENDPOINT_URL_CLOUDWATCH" in builder


def test_installed_jars_include_the_multilang_daemon() -> None:
    jars = launcher.installed_jar_dir()
    assert jars.name == "jars"
    assert any(jars.glob("amazon-kinesis-client-multilang-*.jar"))


def test_main_writes_properties_and_execs_the_jvm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN settings in the environment and an exec that only records its arguments
    properties = tmp_path / "state" / "consumer.properties"
    monkeypatch.setenv("CONSUMER_STREAM_NAME", "orders")
    monkeypatch.setenv("CONSUMER_PROPERTIES_PATH", str(properties))
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    config.get_settings.cache_clear()
    execs: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(os, "execvp", lambda file, argv: execs.append((file, argv)))
    try:
        # WHEN launched
        launcher.main([])
    finally:
        config.get_settings.cache_clear()
    # THEN the properties name this Python's processor module
    text = properties.read_text()
    assert f"executableName = {sys.executable} -m consumer.processor\n" in text
    assert "streamName = orders\n" in text
    # AND the child can import consumer, and the JVM replaces this process
    pythonpath = os.environ["PYTHONPATH"].split(":")
    assert pythonpath == [str(launcher.PROJECT_ROOT), "/elsewhere"]
    assert execs == [("java", execs[0][1])]
    assert execs[0][1][-2:] == ["--properties-file", str(properties)]


def test_a_python_path_with_a_space_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a Python the daemon would split in two
    monkeypatch.setattr(sys, "executable", "/opt/my python/bin/python")
    # WHEN the processor command is built THEN the launch stops, saying why
    with pytest.raises(SystemExit, match="space"):
        launcher.processor_command()
