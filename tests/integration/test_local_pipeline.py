"""End to end on the real local stack: ``python -m local_stack`` (what ``make run`` runs), real
kinesis-mock, real DynamoDB Local and the real KCL MultiLangDaemon with enhanced fan-out. One
stack for the module: the end-to-end test, then the chaos test (each service SIGKILLed under
traffic, then the launcher); the fixture's SIGTERM ends it when the chaos test did not."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import pytest

from consumer.replay import scan_all
from loadgen.stored import missing_after
from local_stack.dashboard import PANELS
from local_stack.ownership import PidFile, run_members
from local_stack.processes import port_open
from local_stack.stack import ROOT
from tests.integration.chaos import Phase, kill, probe_stored, record_processors, wait_for
from tests.integration.conftest import report
from tests.integration.traffic import send
from tests.polling import eventually
from tests.ports import LOCAL_PIPELINE

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch.type_defs import MetricDataQueryTypeDef, MetricTypeDef

pytestmark = pytest.mark.integration

PORTS = LOCAL_PIPELINE
STREAM = "it-stream"
# the stack runs with a key, as `PRODUCER_API_KEY=... make run` starts it: every request of
# these tests carries it, and the dashboard and the scaler read /metrics with it
API_KEY = "it-key-0123456789"
KEY = {"X-Api-Key": API_KEY}
APP = "kinesis-ingest-consumer"
RECORDS = 1000


def _dynamodb() -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{PORTS['dynamodb_port']}",
        region_name="eu-west-1",  # any region and key see the same tables: -sharedDb
        aws_access_key_id="SomeoneElse2",
        aws_secret_access_key="x",
    )


def _wait_ready(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    def ready() -> bool:
        if "ready in" in log.read_text(errors="replace"):
            return True
        assert proc.poll() is None, f"local stack exited with {proc.returncode}:\n{log.read_text()}"
        return False

    eventually(
        ready,
        timeout=timeout,
        interval=1,
        what=lambda: f"the local stack to be ready; its output:\n{log.read_text()}",
    )


async def _post_all(count: int) -> list[tuple[dict[str, Any], Any]]:
    limits = asyncio.Semaphore(64)
    base = f"http://127.0.0.1:{PORTS['producer_port']}"
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=KEY) as client:

        async def one(i: int) -> tuple[dict[str, Any], Any]:
            data = {"n": i, "text": f"record {i}", "nested": {"ok": True, "list": [i, "x"]}}
            async with limits:
                response = await client.post("/", json={"data": data})
            assert response.status_code == 200, response.text
            return response.json(), data

        return await asyncio.gather(*(one(i) for i in range(count)))


def _kinesis(state: Path) -> Any:
    return boto3.client(
        "kinesis",
        endpoint_url=f"https://127.0.0.1:{PORTS['kinesis_tls_port']}",
        verify=str(state / "tls" / "cert.pem"),
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def _scan_all(table: str) -> list[dict[str, Any]]:
    return list(scan_all(_dynamodb(), table))


@dataclass
class Launched:
    """``python -m local_stack`` as `make run` starts it, on the test ports."""

    proc: subprocess.Popen[bytes]
    state: Path
    log: Path
    run: str
    started: float  # time.time() when it was launched

    def pids(self) -> dict[str, int]:
        """Service -> pid, from the launcher's pid file (it follows restarts)."""
        record = PidFile.read(self.state / "pids.json")
        assert record is not None and record.run == self.run
        return {p.name: p.pid for p in record.processes}


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    if any(port_open("127.0.0.1", p) for p in PORTS.values()):
        pytest.fail(f"test ports busy: {PORTS}")
    tmp = tmp_path_factory.mktemp("pipeline")
    state, log = tmp / "stack", tmp / "stack.log"
    started = time.time()
    argv = [sys.executable, "-m", "local_stack", "--state-dir", str(state), "--stream", STREAM,
            "--started-at", str(started)]  # fmt: skip
    for name, port in PORTS.items():
        argv += ["--" + name.replace("_", "-"), str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL,
                                env={**os.environ, "PRODUCER_API_KEY": API_KEY})  # fmt: skip
    try:
        _wait_ready(proc, log, timeout=240)
        record = PidFile.read(state / "pids.json")
        assert record is not None
        yield Launched(proc, state, log, record.run, started)
    finally:
        # WHEN the stack gets SIGTERM (unless the chaos test SIGKILLed it)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    # THEN every process it started is gone and every port free
    assert code in (0, -signal.SIGKILL), log.read_text()
    assert run_members(record.run) == []
    assert [p for p in PORTS.values() if port_open("127.0.0.1", p)] == []


STAGES = ["ports free: ", "kinesis-mock up: ", "DynamoDB Local up: ", "CloudWatch (moto) up: ",
          f"stream {STREAM} ACTIVE", "KCL: tables, index and fan-out consumer ready; 5 leases",
          "dashboard: ", "producer healthy: ", "consumer: leases 5/5",
          "consumer: record processors (each subscribes to its shard) 5/5",
          "first record stored ", "ready in "]  # fmt: skip
FIRST_RECORD = re.compile(r"first record stored (\d+) s after start \(id (\S+)\)")


def test_the_first_record_is_stored_within_seconds_of_the_start(launched: Launched) -> None:
    # GIVEN the stack started as `make run` starts it (warm: installed, caches filled)
    text = launched.log.read_text()
    # THEN it told each stage as it completed, in order
    positions = [text.find(stage) for stage in STAGES]
    assert -1 not in positions and positions == sorted(positions), text
    # AND it reported when the record it posted itself was stored
    reported = FIRST_RECORD.search(text)
    assert reported, text
    seconds, record_id = int(reported.group(1)), reported.group(2)
    # AND by this test's own clock (launch to the item's stored_at) it agrees
    item = _dynamodb().get_item(TableName="records", Key={"id": {"S": record_id}})["Item"]
    measured = int(item["stored_at"]["N"]) / 1000 - launched.started
    assert abs(measured - seconds) <= 2, (measured, seconds)
    report(
        f"first record stored {measured:.1f} s after start (warm; make run reported "
        f"{seconds} s; goal <= 30 s)"
    )
    # AND it is well below the minute or more it took before (68-97 s measured warm):
    # the bound is twice the 30 s goal, for a noisy shared machine; the goal is the report
    assert measured < 60, text
    # AND the tools find this stack (on other ports than the defaults) through its endpoints
    shown = subprocess.run(
        [sys.executable, "-m", "local_stack.items", "--state-dir", str(launched.state), record_id],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(shown.stdout)["data"] == {"source": "local_stack", "check": "first record"}


def test_posted_records_reach_dynamodb_exactly_once(launched: Launched, tmp_path: Path) -> None:
    # GIVEN the local stack started the way `make run` starts it, on test ports (it stored one
    # record of its own)
    state = launched.state
    pids = launched.pids()
    # the scaler runs in dry-run by default: it decides and logs, and changes nothing
    assert set(pids) == {"kinesis-mock", "dynamodb-local", "cloudwatch", "recorder", "consumer",
                         "producer", "stream-metrics", "scaler"}  # fmt: skip
    reported = FIRST_RECORD.search(launched.log.read_text())
    assert reported
    own = {reported.group(2)}

    # WHEN 1,000 records with random partition keys are POSTed, and a record that is not
    # the producer's JSON is put into the stream behind its back
    answers = asyncio.run(_post_all(RECORDS))
    # (and without the key nothing is taken, and nothing is served but the health checks)
    base = f"http://127.0.0.1:{PORTS['producer_port']}"
    assert httpx.post(f"{base}/", json={"data": 1}, timeout=10).status_code == 401
    assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
    assert httpx.get(f"{base}/health", timeout=10).status_code == 200
    kinesis = _kinesis(state)
    poison = kinesis.put_record(StreamName=STREAM, Data=b"\x00not json", PartitionKey="p")

    # THEN each id is stored exactly once with its data, shard and sequence number
    expected = {a["id"]: (a, data) for a, data in answers}
    assert len(expected) == RECORDS
    items = eventually(
        lambda: [i for i in _scan_all("records") if i["id"]["S"] not in own],
        until=lambda items: len(items) >= RECORDS,
        timeout=180,
        interval=2,
        what=f"the {RECORDS} records stored",
    )
    stored_ids = [i["id"]["S"] for i in items]
    assert len(stored_ids) == len(set(stored_ids)) == RECORDS, f"{len(items)} items stored"
    assert set(stored_ids) == set(expected)
    for item in items:
        answer, data = expected[item["id"]["S"]]
        assert item["shard_id"]["S"] == answer["shard_id"]
        assert item["sequence_number"]["S"] == answer["sequence_number"]
        assert item["data"]["M"]["n"] == {"N": str(data["n"])}
        assert item["data"]["M"]["text"] == {"S": data["text"]}
        assert item["data"]["M"]["nested"]["M"]["ok"] == {"BOOL": True}
        assert int(item["stored_at"]["N"]) >= int(item["ingested_at"]["N"])

    # AND the poison record is in the quarantine with its raw bytes, not lost
    quarantined = eventually(
        lambda: _scan_all("records-quarantine"),
        timeout=60,
        interval=1,
        what="the poison record in the quarantine",
    )
    assert [(q["shard_id"]["S"], q["sequence_number"]["S"], q["data"]["B"])
            for q in quarantined] == [(poison["ShardId"], poison["SequenceNumber"],
                                       b"\x00not json")]  # fmt: skip
    # AND the KCL read them with enhanced fan-out: FANOUT configured, its consumer registered
    properties = (state / "consumer.properties").read_text()
    assert "retrievalMode = FANOUT" in properties
    arn = kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    consumers = kinesis.list_stream_consumers(StreamARN=arn)["Consumers"]
    assert [(c["ConsumerName"], c["ConsumerStatus"]) for c in consumers] == [(APP, "ACTIVE")]

    # AND replaying the quarantine puts the record back into the stream: still poison, it is
    # quarantined again under its new sequence number, and its old item is gone
    replayed = subprocess.run(
        [sys.executable, "-m", "consumer.replay", "--local", "--state-dir", str(state)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1, skipped 0, failed 0" in replayed.stdout
    again = eventually(
        lambda: _scan_all("records-quarantine"),
        until=lambda found: (
            bool(found) and found[0]["sequence_number"]["S"] != poison["SequenceNumber"]
        ),
        timeout=60,
        interval=1,
        what="the replayed poison record quarantined under a new sequence number",
    )
    assert [(q["data"]["B"], q["partition_key"]["S"]) for q in again] == [(b"\x00not json", "p")]
    assert again[0]["sequence_number"]["S"] != poison["SequenceNumber"]

    # AND the live dashboard, in a real browser, shows every panel, and its numbers move
    # while the load generator sends 500 records
    before = _dashboard(tmp_path / "before.png")
    assert set(before["panels"]) == set(PANEL_TITLES), before["panels"]
    summary = _loadgen(rate=100, seconds=5, state=state)
    assert (summary["sent"], summary["acknowledged"], summary["stored"]) == (500, 500, 500)
    assert summary["rejected"] == summary["failed"] == 0
    assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    time.sleep(7)  # the consumer's EMF interval (5 s) and the sampler's (2 s)
    after = _dashboard(tmp_path / "after.png")
    assert after["totals"]["producer.put"] >= before["totals"]["producer.put"] + 500
    assert after["totals"]["consumer.written"] >= before["totals"]["consumer.written"] + 500
    assert after["totals"]["consumer.quarantined"] == 2  # the poison record, twice
    assert after["samples"] > before["samples"]

    # AND the post-deploy smoke check, run against the local stack's outputs, finds its
    # record stored, the alarms, and the KCL's lag metric in CloudWatch
    smoke = subprocess.run(
        [sys.executable, "-m", "infra.smoke", "--outputs", str(state / "outputs.json"),
         "--timeout", "120", "--api-key", API_KEY], cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    report = json.loads(smoke.stdout)
    assert report["stored"] and report["lag_metric_exists"]
    assert set(report["alarms"]) == {f"{STREAM}-{k}" for k in LOCAL_ALARMS}
    sys.stderr.write(f"smoke: {report}\n")

    # AND every dashboard widget and alarm names a metric with dimension values that
    # something published in this run (the KCL's PutMetricData into the local CloudWatch,
    # our services' EMF lines), or a metric AWS documents
    _metric_contract(state)

    # AND the stream's AWS/Kinesis metrics in the local CloudWatch count every Kinesis record
    # the producer put, and the dry-run scaler, reading them as in AWS, decides on real load
    _stream_metrics_drive_the_dry_run_scaler(state)


def _stream_metrics_drive_the_dry_run_scaler(state: Path) -> None:
    outputs = json.loads((state / "outputs.json").read_text())
    cloudwatch = boto3.client("cloudwatch", endpoint_url=outputs["endpoints"]["cloudwatch"],
                              region_name=outputs["region"], aws_access_key_id="x",
                              aws_secret_access_key="x")  # fmt: skip
    producer_url = f"http://127.0.0.1:{PORTS['producer_port']}"

    def put_by_producer() -> int:
        text = httpx.get(f"{producer_url}/metrics", headers={"X-Api-Key": API_KEY}, timeout=5).text
        found = re.search(r"^producer_kinesis_records_put_total (\d+)$", text, re.M)
        assert found is not None, text
        return int(found[1])

    def published() -> int:
        end = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
        metric: MetricTypeDef = {
            "Namespace": "AWS/Kinesis",
            "MetricName": "IncomingRecords",
            "Dimensions": [{"Name": "StreamName", "Value": STREAM}],
        }
        query: MetricDataQueryTypeDef = {
            "Id": "r",
            "ReturnData": True,
            "MetricStat": {"Period": 86400, "Stat": "Sum", "Metric": metric},
        }
        answer = cloudwatch.get_metric_data(MetricDataQueries=[query], EndTime=end,
                                            StartTime=end - timedelta(hours=2))  # fmt: skip
        return int(sum(answer["MetricDataResults"][0]["Values"]))

    wait_for(lambda: published() == put_by_producer() > 0, 60, "IncomingRecords = records put")
    log = state / "logs" / "scaler.log"

    def decided_on_load() -> list[str]:
        lines = [json.loads(x) for x in log.read_text().splitlines()
                 if x.startswith('{"timestamp')]  # fmt: skip
        return [x["message"] for x in lines if str(x.get("message", "")).startswith("decision")
                and "no load samples yet" not in x["message"]]  # fmt: skip

    # a complete minute of samples is read a minute after it ends (CloudWatchSource)
    wait_for(lambda: bool(decided_on_load()), 180, "a dry-run decision on the stream's load")
    sys.stderr.write(f"stream metrics: {published()} Kinesis records put and published; "
                     f"the dry-run scaler: {decided_on_load()[-1]!r}\n")  # fmt: skip


def test_a_deleted_table_is_rebuilt_from_the_stream_from_a_moment(launched: Launched) -> None:
    # GIVEN the records of the test above in the stream and the table, then a moment, then
    # 300 more records, stored
    time.sleep(2)
    since = datetime.fromtimestamp(int(time.time()) + 1, UTC)
    time.sleep(max(0.0, since.timestamp() - time.time()) + 1.5)  # none arrives at the moment
    answers = asyncio.run(_post_all(300))
    after = {a["id"]: a for a, _ in answers}
    ddb = _dynamodb()
    assert missing_after(ddb, "records", list(after), 120) == set()
    before = len(_scan_all("records"))
    # WHEN the table is lost (deleted and created again empty, as after a bad deploy) and the
    # stream is read again from the moment: `python -m local_stack.rebuild`, the documented way
    ddb.delete_table(TableName="records")
    ddb.get_waiter("table_not_exists").wait(TableName="records")
    ddb.create_table(TableName="records", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])  # fmt: skip
    started = time.monotonic()
    rebuilt = subprocess.run(
        [sys.executable, "-m", "local_stack.rebuild", "--from", since.isoformat(),
         "--state-dir", str(launched.state), "--timeout", "420"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    took = time.monotonic() - started
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    # THEN the table holds every record from the moment on, each once, as first stored
    # (same shard and sequence number), and none from before it
    items = _scan_all("records")
    ids = [i["id"]["S"] for i in items]
    assert len(ids) == len(set(ids)) == len(after), (len(ids), len(after), before)
    for item in items:
        answer = after[item["id"]["S"]]
        assert (item["shard_id"]["S"], item["sequence_number"]["S"]) == (
            answer["shard_id"], answer["sequence_number"])  # fmt: skip
    written = _emf_sum(launched.state / "logs" / "rebuild.log", "RecordsWritten")
    sys.stderr.write(
        f"rebuild table: {before} items before the loss, {len(after)} records after the moment; "
        f"rebuilt {len(ids)} items ({len(set(ids))} distinct), none from before the moment; "
        f"the rebuild wrote {written} records; `python -m local_stack.rebuild` took {took:.0f} s\n"
    )
    # AND the rebuild's application is gone (tables, fan-out consumer), the consumer's stays
    tables = ddb.list_tables()["TableNames"]
    assert not [t for t in tables if "-rebuild-" in t], tables
    kinesis = _kinesis(launched.state)
    arn = kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    consumers = kinesis.list_stream_consumers(StreamARN=arn)["Consumers"]
    assert [c["ConsumerName"] for c in consumers] == [APP]


def _emf_sum(log: Path, metric: str) -> float:
    """The sum of ``metric`` over the EMF lines of a log."""
    total = 0.0
    for line in log.read_text(errors="replace").splitlines():
        start = line.find('{"_aws"')
        if start >= 0:
            total += float(json.loads(line[start:]).get(metric, 0))
    return total


CHAOS = ("producer", "scaler", "consumer", "record processor")


def test_each_service_sigkilled_under_traffic_is_restarted_and_nothing_is_lost(
    launched: Launched,
) -> None:
    # GIVEN the stack of the test above, with records flowing at 20/s
    producer_url = f"http://127.0.0.1:{PORTS['producer_port']}"
    ddb, heartbeat = _dynamodb(), launched.state / "scaler-heartbeat"

    def served_again(service: str, process: str, old_pid: int, since: float) -> float:
        """Seconds until ``process`` (the service, or the consumer for a record processor)
        runs anew and serves: a new producer answers /health, a new scaler has begun its checks,
        a record sent to a new consumer is stored. (The daemon exits when a record processor
        dies, after its shutdown grace: the other processors serve until then.)"""
        replaced = wait_for(lambda: launched.pids()[process] != old_pid, 120, f"new {process}")

        def producer_healthy() -> bool:
            return httpx.get(f"{producer_url}/health", timeout=2).status_code == 200

        if service == "producer":
            return replaced + wait_for(producer_healthy, 120, "producer /health")
        if service == "scaler":
            return replaced + wait_for(lambda: heartbeat.stat().st_mtime > since, 120, "checks")
        return replaced + wait_for(
            probe_stored(producer_url, ddb, "records", API_KEY), 300, "stored"
        )

    def chaos(acked: list[str]) -> tuple[list[Phase], float]:
        phases: list[Phase] = []
        for service in CHAOS:
            time.sleep(5)  # records flow before each kill
            pids = launched.pids()
            # WHEN each service in turn is SIGKILLed: the producer, the scaler, the KCL daemon
            # (its JVM), one of the KCL's record processors (the daemon then exits 1)
            process = "consumer" if service == "record processor" else service
            victim = (record_processors(pids["consumer"])[0] if service == "record processor"
                      else pids[service])  # fmt: skip
            since, first = time.time(), len(acked)
            kill(victim)
            served = served_again(service, process, pids[process], since)
            if phases:
                phases[-1].last_ack = first
            phases.append(Phase(service, victim, served, first))
        time.sleep(5)
        phases[-1].last_ack = len(acked)
        # THEN every record acknowledged meanwhile is stored
        missing = missing_after(ddb, "records", acked[: phases[-1].last_ack], 240)
        for phase in phases:
            ids = acked[phase.first_ack : phase.last_ack]
            sys.stderr.write(
                f"chaos table: {phase.service} SIGKILLed: served again after "
                f"{phase.served_after:.1f} s; {len(ids)} acknowledged until the next kill, "
                f"{len(set(ids) - missing)} stored\n"
            )
        assert missing == set()
        # AND the dashboard counts the restarts: the consumer twice, the others once
        with urllib.request.urlopen(f"http://127.0.0.1:{PORTS['dashboard_port']}/api/metrics",
                                    timeout=10) as response:  # fmt: skip
            services = {s["name"]: s for s in json.loads(response.read())["services"]}
        restarts = {
            "kinesis-mock": 0,
            "dynamodb-local": 0,
            "cloudwatch": 0,
            "recorder": 0,
            "consumer": 2,
            "producer": 1,
            "stream-metrics": 0,
            "scaler": 1,
        }
        assert {name: s["restarts"] for name, s in services.items()} == restarts
        assert services["consumer"]["summary"] == "consumer restarted 2x, last exit 1"
        assert services["producer"]["summary"] == "producer restarted 1x, last killed by SIGKILL"
        # WHEN the launcher itself is SIGKILLed, records still coming
        launched.proc.kill()
        return phases, wait_for(
            lambda: not run_members(launched.run) and not any(port_open("127.0.0.1", p)
                                                              for p in PORTS.values()),
            30, "every process of the stack gone and every port free")  # fmt: skip

    async def scenario() -> tuple[list[Phase], float]:
        acked: list[str] = []
        sender = asyncio.create_task(send(producer_url, 1_000_000, 20, 8, acked, api_key=API_KEY))
        try:
            return await asyncio.to_thread(chaos, acked)
        finally:
            sender.cancel()  # requests in flight may or may not be answered: only acked count
            await asyncio.gather(sender, return_exceptions=True)

    phases, cleared = asyncio.run(scenario())
    # THEN within seconds no process of the stack is left and every port is free
    sys.stderr.write(f"chaos table: launcher SIGKILLed: nothing left after {cleared:.1f} s\n")
    assert [p.service for p in phases] == list(CHAOS)
    assert launched.proc.wait(timeout=10) == -signal.SIGKILL


LOCAL_ALARMS = ("consumer-behind", "records-expiring", "kinesis-throttling",
                "dynamodb-throttling", "quarantine", "consumer-write-failures",
                "records-not-accepted", "producer-errors")  # fmt: skip


def _metric_contract(state: Path) -> None:
    from infra.components.observability import DashboardInputs, alarm_specs, dashboard_body
    from tests.contract.metrics import dashboard_rows, from_cloudwatch, from_logs, unpublished

    outputs = json.loads((state / "outputs.json").read_text())
    cloudwatch = boto3.client("cloudwatch", endpoint_url=outputs["endpoints"]["cloudwatch"],
                              region_name=outputs["region"], aws_access_key_id="x",
                              aws_secret_access_key="x")  # fmt: skip
    published = from_cloudwatch(cloudwatch) | from_logs(state / "logs")
    # the dashboard and alarms as Pulumi renders them, with this stack's names
    body = dashboard_body(DashboardInputs(
        "us-east-1", STREAM, APP, "local-cluster", {"producer": "p", "consumer": "c",
        "scaler": "s"}, "app/alb/1", "targetgroup/tg/1", "records"))  # fmt: skip
    wanted = dashboard_rows(body)
    for spec in alarm_specs(STREAM, APP, "targetgroup/tg/1", "app/alb/1", "records"):
        dims = frozenset((k, str(v)) for k, v in spec.dimensions.items())
        wanted.append((f"alarm {spec.key}", (spec.namespace, spec.metric, dims)))
    problems = unpublished(wanted, published)
    ours = sorted({(n, m, tuple(sorted(d))) for _, (n, m, d) in wanted
                   if (n, m, d) in published})  # fmt: skip
    sys.stderr.write("metric contract, published metrics used:\n" +
                     "".join(f"  {n} {m} {dict(d)}\n" for n, m, d in ours))  # fmt: skip
    assert problems == [], problems
    assert (APP, "MillisBehindLatest", frozenset({("Operation", "ApplicationTracker")})) in (
        published
    )


PANEL_TITLES = [title for _, title, _, _ in PANELS]
NO_VALUE = "\u2013"  # what the page shows for a value not sampled yet (an en dash)


def _dashboard(screenshot: Path) -> dict[str, Any]:
    """What headless Chromium shows at the dashboard once its script ran: panel titles, the
    totals by key, samples charted; and a screenshot (its PNG header is checked)."""
    browser = shutil.which("chromium")
    assert browser, "chromium is missing: `make test` installs it from Debian"
    url = f"http://127.0.0.1:{PORTS['dashboard_port']}/"
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={screenshot.parent / 'chromium'}", "--virtual-time-budget=4000",
             "--window-size=1400,1000"]  # fmt: skip
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, timeout=120,
                         check=True, text=True).stdout  # fmt: skip
    subprocess.run([*flags, f"--screenshot={screenshot}", url], capture_output=True,
                   timeout=120, check=True)  # fmt: skip
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = re.sub(r"<script.*?</script>", "", dom, flags=re.S)  # the page's code, not its DOM
    titles = re.findall(r'<section class="panel" data-panel="[^"]+">\s*<h2>([^<]+?) <span', dom)
    totals = re.findall(r'data-total="([^"]+)"><b class="value">([^<]+)</b>', dom)
    samples = re.search(r'data-samples="(\d+)"', dom)
    return {
        "panels": [html.unescape(t) for t in titles],
        "totals": {k: float(v.replace(",", "")) if v != NO_VALUE else 0.0 for k, v in totals},
        "samples": int(samples.group(1)) if samples else 0,
    }


def _loadgen(rate: int, seconds: int, state: Path) -> dict[str, Any]:
    """``python -m loadgen`` against the stack (found through its endpoints file); its JSON
    summary (progress went to stderr)."""
    argv = [sys.executable, "-m", "loadgen", "--rate", str(rate), "--duration", str(seconds),
            "--state-dir", str(state), "--shape", "mixed",
            "--api-key", API_KEY, "--json"]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "100%" in done.stderr  # the progress lines
    return json.loads(done.stdout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
