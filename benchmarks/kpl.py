"""Our producer core vs the official KPL, side by side (``python -m benchmarks.kpl``).

The same records (100 B, 1 KB, 10 KB of random data; unique random partition keys, or one hot
key for all) go through the official KPL (``software.amazon.kinesis:amazon-kinesis-producer``,
its Java API and native daemon, driven by ``benchmarks/kpl``'s harness calling
``addUserRecord``) and through our producer core in one Python process
(``benchmarks.kpl_ours``: the collector and encoder, no HTTP). Both put to the same null
Kinesis endpoint over TLS (``benchmarks.null_kinesis``: ListShards, PutRecords answered at
once on the shard the hash key falls in), with each side's defaults (aggregation to 51,200
B, 100 ms buffering, 500 records per PutRecords) except the per-shard rate limit, raised to
the same 1000x on both so that what is measured is CPU, not a limiter. The result is user
records per CPU-second of every process involved: the JVM and the native daemon for the KPL,
our Python process (all threads) for ours; not the endpoint's. CPU is read from /proc around
the measured run only (start-up and a warm-up run excluded). Contenders alternate round by
round, fresh processes each round; medians. The endpoint counts the PUT payload units each
side used. A last run of ours under py-spy shows where our time goes.

Needs the KPL harness built (``make bench`` runs Maven on ``benchmarks/kpl/pom.xml`` into
``.local/kpl``). Binds to 127.0.0.1 only; every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.http import stop
from benchmarks.null_kinesis import STATS_TARGET, spawn
from benchmarks.procstat import tree_cpu
from local_stack.certs import TlsFiles, ensure_tls
from local_stack.processes import port_open
from local_stack.stack import ROOT

NULL_PORT = 14998
KPL_DIR = ROOT / ".local" / "kpl"
PROFILE = ROOT / ".local" / "bench" / "ours-profile.txt"
PROJECT_PACKAGES = {"producer", "benchmarks", "common"}
RUN_TIMEOUT = 300.0  # seconds for one run, start-up included
RATE_LIMIT = 100_000  # percent of the shard limits, both sides: 1000x, i.e. no limiter
ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
    # the KPL's native daemon (AWS SDK for C++) asks the EC2 instance metadata service for a
    # region and credentials unless told not to: nothing but 127.0.0.1 is reached here
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass(frozen=True)
class Case:
    size: int
    hot_key: bool
    count: int  # records in a measured run

    @property
    def name(self) -> str:
        label = f"{self.size} B" if self.size < 1024 else f"{self.size // 1024} KB"
        return f"{label}, {'one hot key' if self.hot_key else 'random keys'}"


def cases(scale: float) -> list[Case]:
    counts = {100: 120_000, 1024: 50_000, 10 * 1024: 8_000}  # a few seconds each
    return [
        Case(size, hot, max(1_000, int(count * scale)))
        for size, count in counts.items()
        for hot in (False, True)
    ]


def endpoint_stats() -> Counter[str]:
    request = urllib.request.Request(
        f"https://127.0.0.1:{NULL_PORT}/", data=b"{}", headers={"X-Amz-Target": STATS_TARGET}
    )
    context = ssl.create_default_context(cafile=str(_tls().cert))
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return Counter(json.loads(response.read()))


def _tls() -> TlsFiles:
    return ensure_tls(ROOT / ".local" / "bench" / "tls")


def argv(contender: str, case: Case) -> list[str]:
    common = [
        "--port",
        str(NULL_PORT),
        "--size",
        str(case.size),
        "--count",
        str(case.count),
        "--warmup",
        str(max(case.count // 2, 1_000)),
        "--outstanding",
        str(outstanding(case)),
        "--rate-limit",
        str(RATE_LIMIT),
    ]
    if contender == "kpl":
        classpath = f"{KPL_DIR / 'classes'}:{KPL_DIR / 'lib' / '*'}"
        return [
            "java",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            classpath,
            "bench.KplHarness",
            *common,
            "--hot-key",
            str(case.hot_key).lower(),
            "--temp-dir",
            str(KPL_DIR / "tmp"),
        ]
    hot = ["--hot-key"] if case.hot_key else []
    return [sys.executable, "-m", "benchmarks.kpl_ours", *common, "--ca", str(_tls().cert), *hot]


def outstanding(case: Case) -> int:
    """Records not yet answered, both sides: 50,000 or 16 MiB of data, whichever is fewer
    (ours refuses records past its memory bound, PRODUCER_MAX_BUFFERED_BYTES = 64 MiB, which
    charges a record twice its data and 640 B: 32 MiB of 1 KB records passed it)."""
    return min(50_000, 16 * 1024 * 1024 // case.size)


@dataclass(frozen=True)
class Run:
    records: int
    failed: int
    cpu: float
    wall: float
    sent: Counter[str]  # what the endpoint counted during the run


def _expect(process: subprocess.Popen[str], word: str) -> str:
    assert process.stdout is not None
    while True:
        line = process.stdout.readline()
        if not line:
            argv = process.args  # started with an argv list (the stubs allow a path or bytes)
            raise RuntimeError(f"{argv[:3]!s} ended before {word}")  # type: ignore[index]  # an argv list
        if line.startswith(word):
            return line


def run_once(contender: str, case: Case, profile: Path | None = None) -> Run:
    """One measured run in a fresh process; with ``profile``, under py-spy (ours only)."""
    process = subprocess.Popen(
        argv(contender, case),
        cwd=ROOT,
        env={**os.environ, **ENV},
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    spy = None
    watchdog = threading.Timer(RUN_TIMEOUT, process.kill)  # a hung run fails, never hangs
    watchdog.start()
    try:
        _expect(process, "READY")
        if profile is not None:
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(process.pid),
                    "--format",
                    "raw",
                    "--rate",
                    "250",
                    "--output",
                    str(profile),
                    "--nonblocking",
                    "--gil",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # py-spy attached
        before, sent_before = tree_cpu(process.pid), endpoint_stats()
        assert process.stdin is not None
        process.stdin.write("GO\n")
        process.stdin.flush()
        _, ok, failed, seconds = _expect(process, "DONE").split()
        cpu = tree_cpu(process.pid) - before
        sent = endpoint_stats()
        sent.subtract(sent_before)
        process.stdin.close()
        process.wait(timeout=60)
        if spy is not None:
            spy.wait(timeout=60)
        return Run(int(ok), int(failed), cpu, float(seconds), sent)
    finally:
        watchdog.cancel()
        for child in (process, spy):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()


def measure(case: Case, rounds: int) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {"kpl": [], "ours": []}
    for _ in range(rounds):
        for contender in runs:
            runs[contender].append(run_once(contender, case))
    return runs


def per_cpu(runs: list[Run]) -> float:
    return statistics.median(r.records / r.cpu for r in runs)


def _frame(raw: str) -> tuple[str, str]:
    """(function (file), where) of a py-spy frame ``function (path:line)``, where py-spy
    gives paths relative to ``sys.path``: where is the project module (``producer/...``), else
    the package or standard library module (``botocore``, ``asyncio``, ``ssl``)."""
    function, _, location = raw.rpartition(" (")
    path = location.rsplit(":", 1)[0]
    top = path.split("/", 1)[0]
    where = path if top in PROJECT_PACKAGES else top.removesuffix(".py")
    return f"{function} ({path.rsplit('/', 1)[-1]})", where


def print_profile(collapsed: str, top: int = 12) -> None:
    """The hottest functions and modules of py-spy's raw output (collapsed stacks)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        samples += int(count)
        own[frames[-1][0]] += int(count)
        modules[frames[-1][1]] += int(count)
        for function in {f for f, _ in frames}:
            total[function] += int(count)
    print(
        f"\nWhere our time goes (py-spy --gil: {samples:,} samples of the thread holding the GIL;"
        " 100 B, random keys)"
    )
    print(f"  {'own':>6} {'total':>6}  function")
    for function, own_count in own.most_common(top):
        print(f"  {own_count / samples:>6.1%} {total[function] / samples:>6.1%}  {function}")
    print(
        "  own time by module: "
        + ", ".join(f"{where} {count / samples:.0%}" for where, count in modules.most_common(8))
    )


@contextlib.contextmanager
def null_endpoint() -> Iterator[None]:
    """The null Kinesis endpoint over TLS on NULL_PORT, stopped on exit."""
    if port_open("127.0.0.1", NULL_PORT):
        sys.exit(f"port {NULL_PORT} is in use: another benchmark running?")
    tls = _tls()
    null = spawn(NULL_PORT, lifetime=3600, tls=(str(tls.cert), str(tls.key)))
    try:
        yield
    finally:
        stop(null)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="records per run, x")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--profile-only", action="store_true", help="no KPL, no ratios")
    args = parser.parse_args()
    if not (KPL_DIR / "classes" / "bench" / "KplHarness.class").exists():
        sys.exit("the KPL harness is not built: `make bench` builds it (Maven, benchmarks/kpl)")
    (KPL_DIR / "tmp").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = []
    with null_endpoint():
        if not args.profile_only:
            results = [(case, measure(case, args.rounds)) for case in cases(args.scale)]
        if not args.no_profile:
            PROFILE.unlink(missing_ok=True)
            first = cases(args.scale)[0]  # 100 B, random keys; longer, for more samples
            run_once("ours", Case(first.size, first.hot_key, first.count * 3), profile=PROFILE)
    if results:
        report(results, args.rounds)
    if PROFILE.exists() and not args.no_profile:
        print_profile(PROFILE.read_text())
        print(f"  (collapsed stacks, for a flame graph: {PROFILE.relative_to(ROOT)})")
    print(f"\n(benchmarks.kpl took {time.monotonic() - started:.0f} s)")


def report(results: list[tuple[Case, dict[str, list[Run]]]], rounds: int) -> None:
    print(
        f"Producer core vs the official KPL 1.0.7, user records per CPU-second (median of"
        f" {rounds}; KPL = JVM + native daemon; ours = one Python process; null Kinesis, TLS)"
    )
    print(
        f"  {'records':<22} {'KPL':>8} {'ours':>8} {'ours/KPL':>8} {'wall/s KPL':>10}"
        f" {'ours':>8} {'units KPL':>9} {'ours':>6} {'calls KPL':>9} {'ours':>6}"
    )
    for case, runs in results:
        kpl, ours = per_cpu(runs["kpl"]), per_cpu(runs["ours"])
        failed = sum(r.failed for rs in runs.values() for r in rs)
        units = {c: statistics.median(r.sent["PayloadUnits"] for r in rs) for c, rs in runs.items()}
        calls = {c: statistics.median(r.sent["Calls"] for r in rs) for c, rs in runs.items()}
        wall = {c: statistics.median(r.records / r.wall for r in rs) for c, rs in runs.items()}
        print(
            f"  {case.name:<22} {kpl:>8,.0f} {ours:>8,.0f} {ours / kpl:>7.2f}x"
            f" {wall['kpl']:>10,.0f} {wall['ours']:>8,.0f} {units['kpl']:>9,.0f}"
            f" {units['ours']:>6,.0f} {calls['kpl']:>9,.0f} {calls['ours']:>6,.0f}"
            + (f"  FAILED RECORDS: {failed}" if failed else "")
        )
    print(
        "  (per run of each size: units = PUT payload units (25 KB), calls = PutRecords calls,"
        " as the endpoint counted them)"
    )


if __name__ == "__main__":
    main()
