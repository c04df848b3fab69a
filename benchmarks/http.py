"""HTTP path benchmark: the producer against the ceiling of its HTTP stack and a naive producer.

Every server runs alone on the same uvicorn settings (one worker, uvloop, httptools, no access
log) against ``benchmarks.null_kinesis`` (so the emulator is not the bottleneck; five shards,
32 for the batch rows so that the producer's own per-shard rate limit is not what they
measure), loaded by
wrk (one thread; 2,048 connections for ``POST /``, see CONTENDERS; 256 for the batch endpoint,
whose requests carry 100 records each)
from 127.0.0.1. Contenders alternate round by round; the table gives medians and the ratios
the goals are about.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import null_kinesis
from benchmarks.null_kinesis import spawn, wait_port
from benchmarks.procstat import tree_cpu
from local_stack.processes import port_open

NULL_PORT, SERVER_PORT = 14999, 18181
RECORD: dict[str, object] = {
    "data": {"order": 12345, "item": "x" * 64}
}  # ~100 bytes, like the encoder's case


@dataclass(frozen=True)
class Contender:
    name: str
    app: str  # uvicorn factory
    path: str
    records_per_request: int
    connections: int = 512
    workers: int = 0  # >0: served by ``python -m producer`` with PRODUCER_WORKERS=workers
    shards: int = null_kinesis.SHARDS  # the null Kinesis stream's open shards

    def body(self) -> str:
        if self.records_per_request == 1:
            return json.dumps(RECORD)
        return json.dumps({"records": [RECORD] * self.records_per_request})


# POST / answers once Kinesis has the record, after up to 100 ms of buffering: a connection
# carries at most ~10 requests/s, so 2,048 connections are needed to find the CPU's limit
# rather than the buffering's (at 512 the producer idles half the time). The bare servers get
# the same connections. The producer is served as in its image (``python -m producer``: its
# own HTTP protocol, producer.api.protocol, on uvicorn); the bare ones by uvicorn alone.
# The batch rows get a stream of BATCH_SHARDS: on five shards the producer's own per-shard rate
# limit (PRODUCER_RATE_LIMIT_PERCENT, 150% of 1 MiB/s a shard) held one worker at ~42,000
# records/s with a third of its core idle, and two workers (each limits itself) at twice that.
# And 256 connections: at 128, two workers waited on the answers' buffering (1.06 cores busy).
BATCH_SHARDS = 32
CONTENDERS = [
    Contender("bare 202 (FastAPI route)", "benchmarks.apps:bare", "/", 1, 2048),
    Contender("bare 202 (ASGI entry)", "benchmarks.apps:bare_asgi", "/", 1, 2048),
    Contender("producer POST /", "producer", "/", 1, 2048, workers=1),
    Contender("producer POST /batch (100)", "producer", "/batch", 100, 256, 1, BATCH_SHARDS),
    Contender("naive PutRecord", "benchmarks.apps:naive", "/", 1),
    # worker scaling: uvicorn's supervisor and two workers, against the one-worker row above
    Contender("POST /batch, 2 workers", "producer", "/batch", 100, 256, 2, BATCH_SHARDS),
]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "PRODUCER_STREAM_NAME": "bench",
        "PRODUCER_KINESIS_ENDPOINT": f"http://127.0.0.1:{NULL_PORT}",
        "PRODUCER_EMF_INTERVAL_SECONDS": "0",
    }


def write_post_script(script: Path, body: str) -> None:
    """A wrk Lua script that POSTs ``body`` as JSON."""
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body)}\n"
    )


def wrk(path: str, connections: int, seconds: int, script: Path) -> tuple[float, int]:
    """Load ``path`` on the benchmark server: requests/s and non-2xx answers."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            f"http://127.0.0.1:{SERVER_PORT}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk printed no Requests/sec line:\n{out}")
    rate = float(found.group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rate, int(bad.group(1)) if bad else 0


def start_server(
    app: str, extra_env: dict[str, str] | None = None, workers: int = 0
) -> subprocess.Popen[bytes]:
    """One uvicorn worker serving the factory ``app``, with the settings every contender gets;
    with ``workers``, ``python -m producer`` with that many workers instead."""
    if workers:
        command = [sys.executable, "-m", "producer"]
        extra_env = {
            "PRODUCER_HOST": "127.0.0.1",
            "PRODUCER_PORT": str(SERVER_PORT),
            "PRODUCER_WORKERS": str(workers),
            **(extra_env or {}),
        }
    else:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(SERVER_PORT),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    server = subprocess.Popen(
        command,
        env={**_env(), **(extra_env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(SERVER_PORT, server)
    return server


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM; a server that has not stopped a minute later is killed and reported (a request
    it never answered would keep it up)."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise RuntimeError(f"{process.args!s} did not stop within 60 s of SIGTERM") from None


def run_round(
    contender: Contender, seconds: int, script: Path, null: tuple[int, int]
) -> tuple[float, int, dict[str, float]]:
    """Requests/s, non-2xx answers, and the cores each side used over the measured run (the
    server with its workers, wrk, the null Kinesis endpoint at ``null``: port and pid)."""
    null_port, null_pid = null
    endpoint = {"PRODUCER_KINESIS_ENDPOINT": f"http://127.0.0.1:{null_port}"}
    server = start_server(contender.app, endpoint, workers=contender.workers)
    try:
        write_post_script(script, contender.body())
        wrk(contender.path, contender.connections, 2, script)  # warm-up
        before, null_before, children = tree_cpu(server.pid), tree_cpu(null_pid), os.times()
        started = time.monotonic()
        rate, bad = wrk(contender.path, contender.connections, seconds, script)
        wall, after = time.monotonic() - started, os.times()
        cores = {
            "server": (tree_cpu(server.pid) - before) / wall,
            "wrk": (
                after.children_user
                + after.children_system
                - children.children_user
                - children.children_system
            )
            / wall,
            "null Kinesis": (tree_cpu(null_pid) - null_before) / wall,
        }
        return rate, bad, cores
    finally:
        stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: `make bench` installs it (Debian package wrk)")
    # one null Kinesis endpoint per stream size the contenders use, on ports from NULL_PORT
    ports = {n: NULL_PORT + i for i, n in enumerate(sorted({c.shards for c in CONTENDERS}))}
    busy = [p for p in (*ports.values(), SERVER_PORT) if port_open("127.0.0.1", p)]
    if busy:
        sys.exit(f"ports {busy} are in use: another benchmark running?")
    lifetime = args.rounds * len(CONTENDERS) * (args.seconds + 15) + 60
    nulls = {n: spawn(port, lifetime=lifetime, shards=n) for n, port in ports.items()}
    rates: dict[str, list[float]] = {c.name: [] for c in CONTENDERS}
    errors: dict[str, int] = {c.name: 0 for c in CONTENDERS}
    cores: dict[str, dict[str, list[float]]] = {c.name: {} for c in CONTENDERS}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.rounds):
                for contender in CONTENDERS:
                    null = ports[contender.shards], nulls[contender.shards].pid
                    script = Path(tmp) / "post.lua"
                    rate, bad, used = run_round(contender, args.seconds, script, null)
                    rates[contender.name].append(rate * contender.records_per_request)
                    errors[contender.name] += bad
                    for side, value in used.items():
                        cores[contender.name].setdefault(side, []).append(value)
    finally:
        for process in nulls.values():
            stop(process)
    median = {name: statistics.median(values) for name, values in rates.items()}
    print("HTTP path, user records/s (median of rounds; wrk -t1; null Kinesis)")
    for c in CONTENDERS:
        print(
            f"  {c.name:<28} {median[c.name]:>10,.0f}   -c{c.connections:<5} {c.shards:>2} shards"
            f"  non-2xx: {errors[c.name]}"
        )
    single = median["producer POST /"] / median["bare 202 (FastAPI route)"]
    floor = median["producer POST /"] / median["bare 202 (ASGI entry)"]
    batch = median["producer POST /batch (100)"] / median["naive PutRecord"]
    print(f"  POST / vs bare FastAPI route:    {single:.0%}  (goal >= 70%)")
    print(f"  POST / vs bare ASGI entry:       {floor:.0%}  (uvicorn alone; goal >= 50%)")
    print(f"  batch vs naive PutRecord:        {batch:.0f}x  (goal >= 100x)")
    scaling = median["POST /batch, 2 workers"] / median["producer POST /batch (100)"]
    print(
        f"  POST /batch, 2 workers vs 1:     {scaling:.2f}x  (goal >= 1.8x; {os.cpu_count()}"
        " cores, shared with wrk and the null Kinesis)"
    )
    for name in ("producer POST /batch (100)", "POST /batch, 2 workers"):
        used = {side: statistics.median(v) for side, v in cores[name].items()}
        print(
            f"    {name}: cores used (median) "
            + ", ".join(f"{side} {value:.2f}" for side, value in used.items())
            + f"; {median[name] / used['server']:,.0f} records per server CPU-second"
        )


if __name__ == "__main__":
    main()
