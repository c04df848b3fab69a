"""The images: hadolint, policy read from the Dockerfiles, and each entry point run on the host
with the image's environment (no Docker engine here: FACTS.md)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack.processes import free_port
from tests.infra.dockerfile import Stage, parse
from tests.polling import eventually

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("producer", "consumer", "scaler")
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


def runtime(service: str) -> Stage:
    return parse(ROOT / "docker" / f"{service}.Dockerfile")[-1]


def host_argv(command: list[str]) -> list[str]:
    """An image command run on the host: its ``python`` is this interpreter."""
    return [sys.executable if command[0] == "python" else command[0], *command[1:]]


def host_env(service: str, **overrides: str) -> dict[str, str]:
    """The image's ENV (minus its PATH) over a clean environment, then the overrides."""
    image = {k: v for k, v in runtime(service).env().items() if k not in ("PATH", "PYTHONPATH")}
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PRODUCER_", "CONSUMER_", "SCALER_", "AWS_"))
    }
    return {**base, **image, **CREDENTIALS, "PYTHONPATH": str(ROOT), **overrides}


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_passes(service: str) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), str(ROOT / "docker" / f"{service}.Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_image_policy(service: str) -> None:
    stages = parse(ROOT / "docker" / f"{service}.Dockerfile")
    builder, final = stages[0], stages[-1]
    assert len(stages) >= 2, "multi-stage"
    # installs from the lock file, dependencies before the code (layers cache)
    runs = " ".join(builder.all("RUN"))
    assert "uv sync --frozen" in runs and "--no-dev" in runs and "--no-install-project" in runs
    copies = builder.all("COPY")
    lock = next(i for i, c in enumerate(copies) if "uv.lock" in c)
    code = next(i for i, c in enumerate(copies) if c.startswith(f"{service}/"))
    assert lock < code
    for copy in copies:
        source = copy.split()[0]
        if not source.startswith("--"):
            assert (ROOT / source).exists(), source
    # runs as a fixed non-root user, no shell as PID 1, SIGTERM to the service
    (user,) = final.all("USER")
    assert user not in ("root", "0") and user.split(":")[0] != "0"
    assert final.exec_form("ENTRYPOINT") == ["python", "-m", service]
    assert (ROOT / service / "__main__.py").exists()
    assert final.all("STOPSIGNAL") == ["SIGTERM"]
    assert not any("/bin/sh" in i or "tail" in i for _, i in final.instructions)


def test_dockerignore_keeps_the_build_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "node_modules", ".git", ".local", "tests"} <= set(ignored)


def test_producer_and_scaler_run_on_the_host_with_their_image_env(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    with contextlib.ExitStack() as stack:
        _run_producer_and_scaler(processes, tmp_path, stack)


def _run_producer_and_scaler(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path, stack: contextlib.ExitStack
) -> None:
    # GIVEN a null Kinesis endpoint
    kinesis_port, producer_port = free_port(), free_port()
    processes.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.null_kinesis",
                "--port",
                str(kinesis_port),
                "--lifetime",
                "120",
            ],
            cwd=ROOT,
        )
    )
    eventually(
        lambda: socket.create_connection(("127.0.0.1", kinesis_port), 1).close() or True,
        timeout=15,
        interval=0.2,
        what="the null Kinesis",
        ignoring=(OSError,),
    )
    endpoint = f"http://127.0.0.1:{kinesis_port}"
    # WHEN the producer image's command runs with its ENV (host and port made local)
    producer_log = stack.enter_context((tmp_path / "producer.log").open("wb"))
    producer = subprocess.Popen(
        host_argv(runtime("producer").exec_form("ENTRYPOINT")),
        cwd=tmp_path,
        stdout=producer_log,
        stderr=subprocess.STDOUT,
        env=host_env(
            "producer",
            PRODUCER_HOST="127.0.0.1",
            PRODUCER_PORT=str(producer_port),
            PRODUCER_STREAM_NAME="s",
            PRODUCER_KINESIS_ENDPOINT=endpoint,
        ),
    )
    processes.append(producer)
    base = f"http://127.0.0.1:{producer_port}"
    eventually(
        lambda: urllib.request.urlopen(f"{base}/health", timeout=1).status == 200,
        timeout=30,
        interval=0.2,
        what="the producer's /health",
        ignoring=(OSError,),
    )
    # THEN the image's health check passes against it, and it takes a record
    healthcheck = runtime("producer").healthcheck()
    assert healthcheck is not None, "the producer image has no HEALTHCHECK"
    check = [c.replace(":8080/", f":{producer_port}/") for c in healthcheck]
    assert subprocess.run(host_argv(check), timeout=30).returncode == 0
    request = urllib.request.Request(
        f"{base}/",
        data=json.dumps({"data": {"a": 1}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["shard_id"].startswith("shardId-")
    # AND the scaler's command runs and decides against the producer's counts
    scaler_log = tmp_path / "scaler.log"
    scaler = subprocess.Popen(
        host_argv(runtime("scaler").exec_form("ENTRYPOINT")),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=stack.enter_context(scaler_log.open("wb")),
        env=host_env(
            "scaler",
            SCALER_STREAM_NAME="s",
            SCALER_KINESIS_ENDPOINT=endpoint,
            SCALER_METRICS_SOURCE="producer",
            SCALER_PRODUCER_METRICS_URLS=f"{base}/metrics",
            SCALER_CHECK_INTERVAL_SECONDS="0.3",
            SCALER_HEARTBEAT_PATH=str(tmp_path / "scaler-heartbeat"),
        ),
    )
    processes.append(scaler)

    def decisions() -> list[dict[str, object]]:
        lines = [json.loads(x) for x in scaler_log.read_text().splitlines() if x.startswith("{")]
        return [x for x in lines if str(x["message"]).startswith("decision")]

    eventually(
        decisions,
        until=lambda made: len(made) >= 3,
        timeout=30,
        interval=0.2,
        what="three scaler decisions",
        ignoring=(OSError,),
    )
    assert decisions()[-1]["current"] == 5 and decisions()[-1]["service"] == "scaler"
    assert (tmp_path / "scaler-heartbeat").exists()  # what its health check watches
    # AND both stop cleanly on SIGTERM, as ECS stops them
    for process in (scaler, producer):
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) in (0, -signal.SIGTERM)


def test_consumer_command_renders_properties_and_execs_the_daemon(tmp_path: Path) -> None:
    # GIVEN a stand-in for java that records how it was started
    record = tmp_path / "java.json"
    java = tmp_path / "java"
    java.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"json.dump({{'argv': sys.argv, 'pid': os.getpid()}}, open({str(record)!r}, 'w'))\n"
    )
    java.chmod(0o755)
    env = host_env("consumer", CONSUMER_STREAM_NAME="s", CONSUMER_JAVA=str(java))
    properties = Path(env["CONSUMER_PROPERTIES_PATH"])
    env["CONSUMER_PROPERTIES_PATH"] = str(tmp_path / properties.name)  # the image's /tmp path
    # WHEN the image's command runs
    process = subprocess.run(
        host_argv(runtime("consumer").exec_form("ENTRYPOINT")),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,
    )
    # THEN it replaced itself with the daemon (same PID: the JVM gets the signals)
    assert process.returncode == 0, process.stderr.decode()
    started = json.loads(record.read_text())
    argv = started["argv"]
    assert "software.amazon.kinesis.multilang.MultiLangDaemon" in argv
    assert argv[argv.index("--properties-file") + 1] == env["CONSUMER_PROPERTIES_PATH"]
    rendered = Path(env["CONSUMER_PROPERTIES_PATH"]).read_text()
    assert "streamName = s" in rendered and "retrievalMode = FANOUT" in rendered
    assert properties.parent == Path("/tmp")


def test_consumer_health_check_passes_idle_and_fails_on_a_stuck_processor(tmp_path: Path) -> None:
    # GIVEN the image's HEALTHCHECK command, run with the image's environment
    check = runtime("consumer").healthcheck()
    assert check is not None
    env = host_env("consumer", CONSUMER_STREAM_NAME="s",
                   CONSUMER_HEARTBEAT_DIR=str(tmp_path))  # fmt: skip

    def run() -> int:
        return subprocess.run(host_argv(check), env=env, capture_output=True, timeout=60).returncode

    # THEN it passes with no processor yet and with an idle one, and fails on a stuck one
    assert run() == 0
    (tmp_path / "shardId-1.json").write_text(json.dumps({"busy_since": None}))
    assert run() == 0
    (tmp_path / "shardId-2.json").write_text(json.dumps({"busy_since": time.time() - 3600}))
    assert run() == 1


def test_scaler_health_check_passes_while_the_loop_turns_and_fails_when_it_stops(
    tmp_path: Path,
) -> None:
    # GIVEN the image's HEALTHCHECK command, run with the image's environment
    check = runtime("scaler").healthcheck()
    assert check is not None
    heartbeat = tmp_path / "heartbeat"
    env = host_env("scaler", SCALER_STREAM_NAME="s", SCALER_HEARTBEAT_PATH=str(heartbeat),
                   SCALER_CHECK_INTERVAL_SECONDS="60", SCALER_WAIT_ACTIVE_SECONDS="60")  # fmt: skip

    def run() -> int:
        return subprocess.run(host_argv(check), env=env, capture_output=True, timeout=60).returncode

    # THEN it fails before the loop started, passes after a check, fails once checks stop
    assert run() == 1
    heartbeat.touch()
    assert run() == 0
    stale = time.time() - (60 + 60 + 121)
    os.utime(heartbeat, (stale, stale))
    assert run() == 1
