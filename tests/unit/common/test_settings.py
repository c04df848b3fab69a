"""Every entry point explains itself: ``--help`` lists each variable of its settings class with
its default and meaning; a bad setting is one line naming the variable, exit status 2; the
region falls back to the AWS SDKs' variables; one JSON log format with a level setting."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from common.settings import env_names, variables_help
from consumer import config as consumer_config
from consumer.config import ConsumerSettings
from producer import config as producer_config
from producer.collector import CollectorConfig
from producer.config import ProducerSettings
from scaler import config as scaler_config
from scaler.config import ScalerSettings

ROOT = Path(__file__).resolve().parents[3]
ENTRY_POINTS: dict[str, type[BaseSettings]] = {
    "producer": ProducerSettings,
    "consumer": ConsumerSettings,
    "scaler": ScalerSettings,
    "consumer.health": ConsumerSettings,
    "scaler.health": ScalerSettings,
    "consumer.replay": ConsumerSettings,
    "consumer.processor": ConsumerSettings,  # the KCL runs it; -h for a person
}
SETTINGS = (ProducerSettings, ConsumerSettings, ScalerSettings)
PREFIXES = ("PRODUCER_", "CONSUMER_", "SCALER_", "AWS_REGION", "AWS_DEFAULT_REGION")


def _run(module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m module`` with none of the services' variables set but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """An entry point's ``main(argv)`` run in this process (as ``python -m module`` would run
    it) with none of the services' variables set but the ones given; settings caches cleared."""

    def run(module: str, *args: str, **env: str) -> Ran:
        for name in list(os.environ):
            if name.startswith(PREFIXES):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        caches = [producer_config.get_settings, consumer_config.get_settings,
                  scaler_config.get_settings]  # fmt: skip
        for cache in caches:
            cache.cache_clear()
        entry = importlib.import_module(module if "." in module else f"{module}.__main__")
        try:
            code = entry.main(list(args))
        except SystemExit as exit_:
            code = exit_.code
        finally:
            for cache in caches:
                cache.cache_clear()
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)

    return run


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_lists_every_variable_with_its_default_and_meaning(module: str, main: Any) -> None:
    # GIVEN an entry point and none of its settings (the required ones missing)
    cls = ENTRY_POINTS[module]
    # WHEN asked for help
    done = main(module, "--help")
    # THEN it exits 0 and names each variable, its default and what it means
    assert done.returncode in (0, None), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for name, info in cls.model_fields.items():
        variable = env_names(cls, name)[0]
        (line,) = [i for i, text in enumerate(lines) if text.split()[:1] == [variable]]
        default = info.get_default()
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        if info.is_required() or default is None:
            shown = "required" if info.is_required() else "unset"
        assert shown in lines[line], lines[line]
        assert info.description and info.description.split()[-1] in " ".join(lines[line : line + 5])
    assert variables_help(cls) in done.stdout


@pytest.mark.parametrize(
    ("module", "env", "variable"),
    [
        ("producer", {"PRODUCER_STREAM_NAME": "s", "PRODUCER_PORT": "70000"}, "PRODUCER_PORT"),
        ("producer", {"PRODUCER_STREAM_NAME": "s", "PRODUCER_LOG_LEVEL": "loud"},
         "PRODUCER_LOG_LEVEL"),
        ("consumer", {}, "CONSUMER_STREAM_NAME"),
        ("consumer", {"CONSUMER_STREAM_NAME": "s", "CONSUMER_RETRIEVAL_MODE": "PUSH"},
         "CONSUMER_RETRIEVAL_MODE"),
        ("scaler", {"SCALER_STREAM_NAME": "s", "SCALER_SCALE_DOWN_PCT": "95"},
         "SCALER_SCALE_DOWN_PCT"),
        ("scaler.health", {"SCALER_STREAM_NAME": "s", "SCALER_DRY_RUN": "perhaps"},
         "SCALER_DRY_RUN"),
        ("consumer.health", {"CONSUMER_STREAM_NAME": "s", "CONSUMER_WRITE_DEADLINE_SECONDS": "0"},
         "CONSUMER_WRITE_DEADLINE_SECONDS"),
        ("consumer.replay", {"CONSUMER_STREAM_NAME": ""}, "CONSUMER_STREAM_NAME"),
        ("consumer.processor", {"CONSUMER_STREAM_NAME": "s", "CONSUMER_LOG_LEVEL": "loud"},
         "CONSUMER_LOG_LEVEL"),
    ],
)  # fmt: skip
def test_a_bad_setting_is_one_line_naming_the_variable_exit_2(
    module: str, env: dict[str, str], variable: str, main: Any
) -> None:
    # WHEN an entry point starts with a bad or missing setting
    done = main(module, **env)
    # THEN it exits 2 with one line naming the variable and the problem, then where to look
    assert done.returncode == 2, done.stderr
    problem, hint = done.stderr.splitlines()
    assert problem.startswith(f"python -m {module}: ") and variable in problem, problem
    assert hint == f"python -m {module}: see python -m {module} --help"
    assert done.stdout == ""


@pytest.mark.parametrize("cls", SETTINGS)
def test_the_region_falls_back_to_the_sdk_variables(
    cls: type[BaseSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", *env_names(cls, "region")):
        monkeypatch.delenv(name, raising=False)
    own = env_names(cls, "region")[0]
    values = {"stream_name": "s"}
    assert cls(**values).region == "us-east-1"  # type: ignore[attr-defined]  # all have it
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert cls(**values).region == "ap-south-1"  # type: ignore[attr-defined]  # all have it
    # GIVEN AWS_REGION (what ECS sets in every task) THEN it wins over AWS_DEFAULT_REGION
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert cls(**values).region == "eu-west-1"  # type: ignore[attr-defined]  # all have it
    # AND the service's own variable wins over both
    monkeypatch.setenv(own, "eu-central-1")
    assert cls(**values).region == "eu-central-1"  # type: ignore[attr-defined]  # all have it
    assert cls(**values, region="us-west-2").region == "us-west-2"  # type: ignore[attr-defined]  # all have it


@pytest.mark.parametrize("cls", SETTINGS)
def test_log_level_is_read_in_any_case(cls: type[BaseSettings]) -> None:
    assert cls(stream_name="s", log_level="warning").log_level == "WARNING"  # type: ignore[attr-defined]  # all have it


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_python_m_producer_help_is_help_not_a_traceback() -> None:
    # GIVEN no settings at all (the reproduction: a pydantic traceback)
    done = _run("producer", "-h")
    assert done.returncode == 0, done.stderr
    assert "PRODUCER_STREAM_NAME" in done.stdout and done.stderr == ""


@pytest.mark.parametrize("level", ["INFO", "error"])
def test_the_producer_and_uvicorn_log_json_lines_at_the_level_set(level: str) -> None:
    # GIVEN a producer whose Kinesis cannot be reached, so that its startup fails
    env = {"PRODUCER_STREAM_NAME": "s", "PRODUCER_PORT": "18999", "PRODUCER_LOG_LEVEL": level,
           "PRODUCER_KINESIS_ENDPOINT": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x"}  # fmt: skip
    # WHEN it starts
    done = _run("producer", **env)
    # THEN every line it wrote, uvicorn's too, is one JSON object of the services' format
    assert done.returncode == 3, done.stderr
    lines = _json_lines(done.stderr)
    assert {line["service"] for line in lines} == {"producer"}
    assert all({"timestamp", "level", "location", "message"} <= set(line) for line in lines)
    assert "Application startup failed. Exiting." in [line["message"] for line in lines]
    # AND the level set decides what is written (uvicorn's INFO line "Started server process")
    started = any(str(line["message"]).startswith("Started server process") for line in lines)
    assert started == (level == "INFO")
    assert {line["level"] for line in lines} <= ({"INFO", "ERROR"} if started else {"ERROR"})


@pytest.mark.parametrize("cls", SETTINGS)
def test_every_variable_is_in_the_readme(cls: type[BaseSettings]) -> None:
    # the README's configuration tables name each variable the services read
    readme = (ROOT / "README.md").read_text()
    missing = [env_names(cls, n)[0] for n in cls.model_fields if env_names(cls, n)[0] not in readme]
    assert missing == []


def _readme_defaults(prefix: str) -> list[tuple[str, str]]:
    """(variable, its default as the README's configuration table gives it) for each variable
    of ``prefix``; a row naming two variables (``A`` / ``B``) gives their defaults likewise."""
    found: list[tuple[str, str]] = []
    for line in (ROOT / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith(f"| `{prefix}") or len(cells) < 2:
            continue
        names = re.findall(r"`([A-Z0-9_]+)`", cells[0])
        defaults = cells[1].split(" / ") if len(names) > 1 else [cells[1]]
        assert len(defaults) in (1, len(names)), line
        found += zip(names, defaults * len(names) if len(defaults) == 1 else defaults, strict=False)
    return found


def _as_readme(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@pytest.mark.parametrize("cls", SETTINGS)
def test_the_readme_gives_each_variables_default_as_the_code_has_it(
    cls: type[BaseSettings],
) -> None:
    # GIVEN the README's configuration table of a service
    prefix = str(cls.model_config.get("env_prefix"))
    by_variable = {env_names(cls, n)[0]: n for n in cls.model_fields}
    rows = _readme_defaults(prefix)
    assert rows
    wrong = []
    for variable, text in rows:
        info = cls.model_fields[by_variable[variable]]
        default = info.get_default(call_default_factory=True)
        fallback = env_names(cls, by_variable[variable])[1:]
        # WHEN its default column is read THEN it says what the settings class does
        if info.is_required():
            ok = text == "(required)"
        elif fallback:  # read from the SDK's variables first, then the default
            ok = text == ", ".join(f"`{v}`" for v in [*fallback, default])
        elif text.startswith(("unset", "AWS", "system CAs", "bound")):
            ok = default in (None, "")
        elif text == "empty":
            ok = default == ""
        else:
            ok = text == f"`{_as_readme(default)}`"
        if not ok:
            wrong.append(f"{variable}: README {text!r}, code {default!r}")
    assert wrong == []


def test_the_collector_runs_on_the_producer_settings_in_its_own_units() -> None:
    # GIVEN the producer's settings, by default and with every collector setting changed
    changed = ProducerSettings(
        stream_name="s", aggregation_max_bytes=2048, aggregation_max_count=7,
        rate_limit_percent=80, shard_refresh_seconds=5, max_buffered_time_ms=250,
        record_ttl_ms=9_000, shard_queue_ms=1_500, max_in_flight=3,
        max_buffered_bytes=2 * 1024 * 1024, max_buffered_records=900,
    )  # fmt: skip
    # WHEN the collector's config is made from them
    # THEN the defaults are the collector's own (stated once, in CollectorConfig)
    assert ProducerSettings(stream_name="s").collector_config() == CollectorConfig("s")
    # AND each setting arrives, milliseconds as seconds
    assert changed.collector_config() == CollectorConfig(
        "s", aggregation_max_bytes=2048, aggregation_max_count=7, rate_limit_percent=80,
        shard_refresh_interval=5, max_buffered_time=0.25, record_ttl=9.0,
        shard_queue_seconds=1.5, max_in_flight=3, max_buffered_bytes=2 * 1024 * 1024,
        max_buffered_records=900,
    )  # fmt: skip


def test_an_empty_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN endpoints set to "" (as a template leaves a variable it has no value for)
    monkeypatch.setenv("CONSUMER_KINESIS_ENDPOINT", "")
    monkeypatch.setenv("CONSUMER_WORKER_ID", "")
    monkeypatch.setenv("SCALER_CLOUDWATCH_ENDPOINT", "")
    # WHEN the settings are read THEN they are unset (AWS; the KCL's own worker id)
    consumer = ConsumerSettings(stream_name="s")
    assert (consumer.kinesis_endpoint, consumer.worker_id) == (None, None)
    assert ScalerSettings(stream_name="s").cloudwatch_endpoint is None
