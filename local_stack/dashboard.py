"""The local live dashboard: the CloudWatch dashboard's panels, from the local services.

There is no CloudWatch locally, so a sampler reads what the services publish every two
seconds: the producer's Prometheus text (``/metrics``), the EMF lines the consumer's record
processors and the scaler write to their logs (the lines CloudWatch would turn into metrics),
the stream's open shards (ListShards), each process group's CPU time from ``/proc`` (where
there is one: elsewhere the CPU panel says so and every other panel still fills), and the
supervisor's view of each service (running, restarted how often, how it last ended). A small
HTTP server on 127.0.0.1 serves the page (``dashboard.html``, which draws whatever panels
``/api/metrics`` describes on one time axis with ``static/chart.js``, the charting library kept
in this repository) and the last ten minutes of samples.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from common.metric_catalog import CONSUMER, PRODUCER, SCALER
from common.stats import percentile
from scaler.stream import StreamAdmin

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("dashboard.html")
STATIC = {"/chart.js": (Path(__file__).with_name("static") / "chart.js", "text/javascript")}
PROC = Path("/proc")
NO_PROC = "CPU needs /proc (Linux): not sampled here"
PROM_LINE = re.compile(r'^(producer_[a-z0-9_]+?)(?:\{code="([^"]+)"\})? ([0-9.e+-]+)$')
TICKS = os.sysconf("SC_CLK_TCK")
HISTORY = 300  # samples kept: ten minutes at one every two seconds
LATENCY_WINDOW = 30.0  # seconds of end-to-end latency values behind p50 and p99

# (panel id, title, unit, [(series key, label)]); keys ending in "/s" are rates of counters
PANELS: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    ("ingest", "Ingest: requests and user records", "per second", [
        ("producer.requests/s", "requests"), ("producer.received/s", "user records received"),
        ("producer.put/s", "user records put")]),
    ("lag", "Consumer lag: millis behind latest", "ms", [
        ("consumer.behind_ms", "millis behind latest")]),
    ("latency", "End-to-end latency, ingest to stored", "ms", [
        ("consumer.latency_p50", "p50"), ("consumer.latency_p99", "p99")]),
    ("stored", "Records put to Kinesis vs stored and quarantined", "per second", [
        ("producer.put/s", "put to Kinesis"), ("consumer.written/s", "stored"),
        ("consumer.quarantined/s", "quarantined")]),
    ("answers", "Producer answers: 4xx, 503, other 5xx", "per second", [
        ("producer.r4xx/s", "4xx"), ("producer.r503/s", "503"), ("producer.r5xx/s", "5xx")]),
    ("aggregation", "Aggregation: user records per Kinesis record and per PutRecords call",
     "records", [("producer.per_kinesis_record", "per Kinesis record"),
                 ("producer.per_call", "per PutRecords call")]),
    ("throttling", "Throttling: Kinesis writes, DynamoDB writes", "per second", [
        ("producer.throttled/s", "Kinesis entries throttled"),
        ("consumer.retries/s", "DynamoDB writes retried")]),
    ("shards", "Shards: open vs scaler target", "shards", [
        ("stream.open_shards", "open"), ("scaler.target", "scaler target")]),
    ("cpu", "CPU per service", "% of one core", [
        ("cpu.producer", "producer"), ("cpu.consumer", "consumer"), ("cpu.scaler", "scaler"),
        ("cpu.kinesis-mock", "kinesis-mock"), ("cpu.dynamodb-local", "DynamoDB Local")]),
    ("tasks", "Running processes per service", "processes", [
        ("tasks.producer", "producer"), ("tasks.consumer", "consumer workers"),
        ("tasks.scaler", "scaler")]),
]  # fmt: skip
SERIES_KEYS = {key for _, _, _, pairs in PANELS for key, _ in pairs}
TOTALS = [("producer.received", "received"), ("producer.put", "put to Kinesis"),
          ("consumer.written", "stored"), ("consumer.quarantined", "quarantined"),
          ("producer.r503", "answered 503")]  # fmt: skip
# the producer's counters charted (their Prometheus names) -> short name
PRODUCER_COUNTERS = {
    PRODUCER[name].prometheus: short
    for name, short in (
        ("Requests", "requests"),
        ("UserRecordsReceived", "received"),
        ("UserRecordsPut", "put"),
        ("Responses4xx", "r4xx"),
        ("Responses503", "r503"),
        ("Responses5xx", "r5xx"),
        ("KinesisRecordsPut", "kinesis_records"),
        ("PutRecordsCalls", "calls"),
    )
}
ERRORS = PRODUCER["Errors"].prometheus  # by code: the throttling codes are summed


def parse_prometheus(text: str) -> dict[str, float]:
    """The producer's counters we chart, by short name; ``throttled`` sums the throttling codes."""
    values: dict[str, float] = {"throttled": 0.0}
    for line in text.splitlines():
        match = PROM_LINE.match(line)
        if not match:
            continue
        name, code, value = match.group(1), match.group(2), float(match.group(3))
        if name in PRODUCER_COUNTERS:
            values[PRODUCER_COUNTERS[name]] = value
        elif name == ERRORS and code and "Throughput" in code:
            values["throttled"] += value
    return values


@dataclass
class LogTail:
    """New complete lines of a growing file since the last read."""

    path: Path
    offset: int = 0
    partial: bytes = b""

    def lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self.partial + chunk
        *complete, self.partial = data.split(b"\n")
        return [line.decode(errors="replace") for line in complete]


def emf_documents(lines: Iterable[str], namespace: str) -> list[dict[str, Any]]:
    """The EMF documents of ``namespace`` among ``lines`` (other lines are skipped)."""
    found = []
    for line in lines:
        if '"_aws"' not in line or namespace not in line:
            continue
        try:
            document = json.loads(line[line.index("{") :])
        except ValueError:
            continue
        directives = document.get("_aws", {}).get("CloudWatchMetrics", [])
        if any(d.get("Namespace") == namespace for d in directives):
            found.append(document)
    return found


@dataclass
class ConsumerState:
    """Totals and recent values from the consumer's EMF lines (one per shard per interval)."""

    written: float = 0
    quarantined: float = 0
    retries: float = 0
    behind: dict[str, tuple[float, float]] = field(default_factory=dict)  # source -> (t, ms)
    latencies: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=20_000))

    def add(self, document: dict[str, Any], source: str, now: float) -> None:
        def value(name: str, default: Any = 0) -> Any:
            return document.get(CONSUMER[name].name, default)

        self.written += value("RecordsWritten")
        self.quarantined += value("RecordsQuarantined")
        self.retries += value("WriteRetries")
        self.behind[source] = (now, float(value("MillisBehindLatest")))
        sample = value("EndToEndLatency", [])
        for latency in sample if isinstance(sample, list) else [sample]:
            self.latencies.append((now, float(latency)))

    def recent_latency(self, now: float, p: float) -> float | None:
        return percentile((v for t, v in self.latencies if now - t <= LATENCY_WINDOW), p)


def process_groups_cpu_ticks(proc: Path = PROC) -> dict[int, int] | None:
    """Process group id -> CPU ticks (user + system) of its live processes; None without a
    ``/proc`` (macOS, some containers)."""
    try:
        entries = list(os.scandir(proc))
    except OSError:
        return None
    ticks: dict[int, int] = {}
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
            fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
            pgid, utime, stime = int(fields[2]), int(fields[11]), int(fields[12])
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile, or not a process's stat
        ticks[pgid] = ticks.get(pgid, 0) + utime + stime
    return ticks


class Sampler:
    """Samples every ``interval`` seconds in a thread; ``snapshot()`` is what the page shows."""

    def __init__(
        self,
        producer_metrics_url: str,
        logs_dir: Path,
        processes: Callable[[], dict[str, list[int]]],
        open_shards: Callable[[], int],
        interval: float = 2.0,
        log_starts: Callable[[], dict[Path, int]] = dict,
        services: Callable[[], list[dict[str, Any]]] = list,
        proc: Path = PROC,
        api_key: str | None = None,
    ) -> None:
        self.producer_metrics_url = producer_metrics_url
        self.headers = {"X-Api-Key": api_key} if api_key else {}  # the producer's /metrics
        self.logs_dir = logs_dir
        self.processes = processes  # service -> process group ids of its running processes
        self.open_shards = open_shards
        self.interval = interval
        self.log_starts = log_starts  # log file -> where this run's lines begin (appended logs)
        self.services = services  # the supervisor's view: state, restarts, last exit
        self.proc = proc
        self.cpu_note = ""  # why the CPU panel is empty, when it is
        self.samples: deque[dict[str, float | None]] = deque(maxlen=HISTORY)
        self.consumer = ConsumerState()
        self.scaler_target: float | None = None
        self._tails: dict[Path, LogTail] = {}
        self._cpu_before: tuple[float, dict[int, int]] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        wait = 0.0  # the first sample at once, then one an interval (a failed one too)
        while not self._stop.wait(wait):
            wait = self.interval
            try:
                self.sample()
            except Exception:  # a sampler must outlive any one source's trouble
                log.exception("dashboard sample failed")

    def _new_lines(self, pattern: str) -> dict[str, list[str]]:
        found = {}
        for path in sorted(self.logs_dir.glob(pattern)):
            if path not in self._tails:
                self._tails[path] = LogTail(path, self.log_starts().get(path, 0))
            tail = self._tails[path]
            found[path.name] = tail.lines()
        return found

    def sample(self) -> None:
        now = time.time()
        values: dict[str, float | None] = {"t": now}
        try:
            request = urllib.request.Request(self.producer_metrics_url, headers=self.headers)
            with urllib.request.urlopen(request, timeout=2) as response:
                for name, value in parse_prometheus(response.read().decode()).items():
                    values[f"producer.{name}"] = value
        except OSError:
            pass  # the producer is restarting: its series have a gap
        for source, lines in self._new_lines("consumer*.log").items():
            for document in emf_documents(lines, CONSUMER.name):
                self.consumer.add(document, source, now)
        for lines in self._new_lines("scaler.log").values():
            for document in emf_documents(lines, SCALER.name):
                self.scaler_target = float(document.get(SCALER["TargetShards"].name, 0))
        state = self.consumer
        values.update({
            "consumer.written": state.written, "consumer.quarantined": state.quarantined,
            "consumer.retries": state.retries,
            "consumer.behind_ms": max((ms for t, ms in state.behind.values()
                                       if now - t <= 3 * LATENCY_WINDOW), default=None),
            "consumer.latency_p50": state.recent_latency(now, 50),
            "consumer.latency_p99": state.recent_latency(now, 99),
            "scaler.target": self.scaler_target,
        })  # fmt: skip
        try:
            values["stream.open_shards"] = float(self.open_shards())
        except Exception:  # the emulator is busy or restarting
            values["stream.open_shards"] = None
        values.update(self._cpu(now))
        with self._lock:
            self.samples.append(values)

    def _cpu(self, now: float) -> dict[str, float | None]:
        groups = self.processes()
        found: dict[str, float | None] = {}
        for service, pgids in groups.items():
            found[f"tasks.{service}"] = float(len(pgids))
        ticks = process_groups_cpu_ticks(self.proc)
        if ticks is None:
            self.cpu_note = NO_PROC
            return found
        if self._cpu_before is not None:
            then, before = self._cpu_before
            for service, pgids in groups.items():
                used = sum(ticks.get(g, 0) - before.get(g, ticks.get(g, 0)) for g in pgids)
                found[f"cpu.{service}"] = round(max(used, 0) / TICKS / (now - then) * 100, 1)
        self._cpu_before = (now, ticks)
        return found

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            samples = list(self.samples)
        series = _derived(samples)
        notes = {"cpu": self.cpu_note}
        panels = [
            {"id": pid, "title": title, "unit": unit, "note": notes.get(pid, ""),
             "series": [{"key": key, "label": label, "points": series.get(key, []),
                         "last": _last(series.get(key, []))} for key, label in keys]}
            for pid, title, unit, keys in PANELS
        ]  # fmt: skip
        latest = samples[-1] if samples else {}
        totals = [{"key": key, "label": label, "value": latest.get(key)} for key, label in TOTALS]
        services = [{**s, "summary": service_summary(s)} for s in self.services()]
        return {"updated": latest.get("t"), "panels": panels, "totals": totals,
                "services": services}  # fmt: skip


def service_summary(service: dict[str, Any]) -> str:
    """One service's line: "consumer restarted 2x, last exit 70", "producer running"."""
    name, restarts, state = service["name"], service.get("restarts", 0), service.get("state")
    text = f"{name} restarted {restarts}x" if restarts else f"{name} {state}"
    if service.get("last_exit"):
        text += f", last {service['last_exit']}"
    if restarts and state != "running":
        text += f" ({state})"
    return text


def _last(points: list[tuple[float, float | None]]) -> float | None:
    return points[-1][1] if points else None


def _derived(samples: list[dict[str, float | None]]) -> dict[str, list[tuple[float, Any]]]:
    """Series by key: gauges as sampled, ``x/s`` as the rate of counter ``x`` between samples,
    and the aggregation ratios from the counters' increases."""
    series: dict[str, list[tuple[float, Any]]] = {}
    for before, after in itertools.pairwise(samples):
        t, span = after["t"], (after["t"] or 0) - (before["t"] or 0)
        assert t is not None
        for key in SERIES_KEYS:
            if key.endswith("/s"):
                name = key[:-2]
                a, b = after.get(name), before.get(name)
                value = None if a is None or b is None or span <= 0 else max(a - b, 0) / span
            elif key in ("producer.per_kinesis_record", "producer.per_call"):
                value = _ratio(before, after, "producer.kinesis_records" if
                               key.endswith("record") else "producer.calls")  # fmt: skip
            else:
                value = after.get(key)
            series.setdefault(key, []).append((t, None if value is None else round(value, 2)))
    return series


def _ratio(before: dict[str, float | None], after: dict[str, float | None], per: str) -> Any:
    put = (after.get("producer.put") or 0) - (before.get("producer.put") or 0)
    made = (after.get(per) or 0) - (before.get(per) or 0)
    return put / made if made > 0 else None


class DashboardServer:
    """Serves the page and ``/api/metrics`` on 127.0.0.1:``port`` from a thread. The port is
    taken at construction (an ``OSError`` if it is not free); ``start`` serves ``sampler``'s."""

    def __init__(self, port: int, sampler: Sampler | None = None) -> None:
        self.sampler = sampler
        page = PAGE.read_bytes()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", page)
                elif self.path in STATIC:
                    path, kind = STATIC[self.path]
                    self._send(200, f"{kind}; charset=utf-8", path.read_bytes())
                elif self.path == "/api/metrics" and server.sampler is not None:
                    body = json.dumps(server.sampler.snapshot()).encode()
                    self._send(200, "application/json", body)
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self, sampler: Sampler | None = None) -> None:
        self.sampler = sampler or self.sampler
        assert self.sampler is not None, "nothing to serve"
        self.sampler.start()
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        if self.sampler is not None and self.sampler._thread.is_alive():
            self.sampler.stop()


def sampler_for(stack: Any) -> Sampler:
    """The sampler of a running ``LocalStack`` (its processes, logs and stream)."""
    config = stack.config
    stream = StreamAdmin(stack.client("kinesis"), config.stream_name)

    def processes() -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {"producer": [], "consumer": [], "scaler": []}
        for process in list(stack.processes):
            service = "consumer" if process.name.startswith("consumer") else process.name
            if process.running():
                groups.setdefault(service, []).append(process.pid)
        return groups

    def open_shards() -> int:
        return len(stream.open_shards())

    def log_starts() -> dict[Path, int]:
        return {process.log_path: process.log_start for process in list(stack.processes)}

    return Sampler(
        f"{config.producer_url}/metrics",
        config.state_dir / "logs",
        processes,
        open_shards,
        log_starts=log_starts,
        services=stack.status,
        api_key=config.api_key,
    )
