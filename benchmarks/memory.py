"""Memory under overload: the producer's peak RSS at 10x the load Kinesis can take vs at a
load it can take, side by side in one run (``python -m benchmarks.memory``).

Kinesis is ``benchmarks.null_kinesis`` answering each call after ``--delay`` seconds, so it,
not the producer's CPU, is the bottleneck. wrk sends batches of 100 records, first at a
nominal rate, then with 10x the connections. The producer must stay bounded (its buffer bound,
``PRODUCER_MAX_BUFFERED_*``) and answer 503 for what does not fit, instead of growing.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.http import (
    NULL_PORT,
    RECORD,
    SERVER_PORT,
    _wait_port,
    start_server,
    stop,
    write_post_script,
    wrk,
)  # fmt: skip

# wrk's load is closed-loop (a connection waits for its answer), so the records awaiting
# Kinesis are at most connections x 100: a bound of 2,000 sits between the nominal load (4
# connections: 400) and 10x that (4,000). The default bound (200,000) behaves the same, later.
BOUND = 2_000


def _rss_peak_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def _phase(connections: int, seconds: int, delay: float, script: Path) -> dict[str, float]:
    """A fresh producer under one load; its peak RSS and what it answered."""
    null = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.null_kinesis", "--port", str(NULL_PORT),
         "--delay", str(delay), "--lifetime", str(seconds + 120)],
    )  # fmt: skip
    server = None
    try:
        _wait_port(NULL_PORT, null)
        server = start_server(
            "producer.main:create_app", {"PRODUCER_MAX_BUFFERED_RECORDS": str(BOUND)}
        )
        idle = _rss_peak_mib(server.pid)
        rate, rejected = wrk("/batch", connections, seconds, script)
        metrics = subprocess.run(
            ["curl", "-s", f"http://127.0.0.1:{SERVER_PORT}/metrics"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        overloaded = re.search(r"producer_user_records_overloaded_total (\d+)", metrics)
        put = re.search(r"producer_user_records_put_total (\d+)", metrics)
        return {
            "idle": idle,
            "peak": _rss_peak_mib(server.pid),
            "records_offered_per_s": rate * 100,
            "non_2xx": rejected,
            "overloaded": int(overloaded.group(1)) if overloaded else 0,
            "put": int(put.group(1)) if put else 0,
        }
    finally:
        if server is not None:
            stop(server)
        null.terminate()
        null.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds per PutRecords call")
    parser.add_argument("--connections", type=int, default=4, help="nominal load")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "batch.lua"
        write_post_script(script, json.dumps({"records": [RECORD] * 100}))
        nominal = _phase(args.connections, args.seconds, args.delay, script)
        overload = _phase(args.connections * 10, args.seconds, args.delay, script)
    print(  # noqa: T201
        f"Memory under overload (Kinesis answers after {args.delay} s; batches of 100;"
        f" PRODUCER_MAX_BUFFERED_RECORDS={BOUND})"
    )
    for name, phase in (("nominal", nominal), ("10x overload", overload)):
        print(  # noqa: T201
            f"  {name:<13} peak RSS {phase['peak']:6.1f} MiB (idle {phase['idle']:.1f}),"
            f" records put {phase['put']:,}, refused 503 {phase['overloaded']:,},"
            f" non-2xx responses {phase['non_2xx']:,}"
        )
    print(f"  peak RSS ratio overload/nominal: {overload['peak'] / nominal['peak']:.2f}")  # noqa: T201


if __name__ == "__main__":
    main()
