"""End to end on the local stack (``python -m benchmarks.end_to_end``): how many 100-byte
records per second the whole pipeline stores, and which process limits it.

It starts the local stack (kinesis-mock, DynamoDB Local, the KCL daemon and its record
processors, the producer, the scaler in dry-run; on ports of its own, 127.0.0.1 only), then
runs the load generator (``loadgen``, as ``make load``: open loop, ``small`` shape, 100
records per ``POST /batch``) at rising rates, ``--seconds`` each. For every step it prints:
the records per second stored in DynamoDB while the load ran (sustained), p50/p99 end-to-end
latency (a record's ``stored_at`` minus when the load generator was due to send it, so any
queueing in front of the producer counts; a record not stored ``--drain`` seconds after the
step counts as infinitely late), and the CPU of every process over the step, from /proc: the
busiest one, and whether one is at a full core. It stops after the first step whose p99
passes 5 s, or at the last rate: at most ``len(--rates)`` x (``--seconds`` + ``--drain``) plus
the stack's start (about 80 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from dataclasses import dataclass

from benchmarks.procstat import Proc, snapshot, tree
from common.stats import percentile
from consumer.replay import scan_all
from loadgen.run import Plan, send
from loadgen.stored import missing_after, stored_items
from local_stack.stack import ROOT, LocalStack, StackConfig

RATES = (1_000, 2_000, 4_000, 8_000, 16_000)  # records/s, rising
P99_LIMIT_MS = 5_000.0
BATCH = 100
WARM_UP = 5.0  # seconds of each step not counted in the sustained rate
CONFIG = StackConfig(
    state_dir=ROOT / ".local" / "bench" / "stack",
    kinesis_tls_port=24567,
    kinesis_plain_port=24568,
    dynamodb_port=28000,
    producer_port=28080,
    stream_name="bench-stream",
)


class CpuSampler:
    """Reads every process's CPU time at the start and end of a window (a thread keeps the
    latest reading, so a process that exits in the window still counts until it went)."""

    def __init__(self) -> None:
        self._first: dict[int, Proc] = {}
        self._last: dict[int, Proc] = {}
        self._started = self._ended = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._first, self._started = snapshot(), time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._last.update(snapshot())
        self._ended = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._last.update(snapshot())

    def percent(self) -> dict[int, float]:
        """Per pid, the share of one core it used in the window (100: a full core)."""
        seconds = max(self._ended - self._started, 1e-9)
        return {
            pid: (proc.cpu - (self._first[pid].cpu if pid in self._first else 0.0))
            / seconds * 100
            for pid, proc in self._last.items()
        }  # fmt: skip


def labels(stack: LocalStack) -> dict[int, str]:
    """The stack's processes (and their children) by pid, and this one (the load generator)."""
    procs = snapshot()
    names = {os.getpid(): "load generator (this process)"}
    for managed in stack.processes:
        if managed.pid is None:
            continue
        for proc in tree(procs, managed.pid):
            names[proc.pid] = managed.name if proc.pid == managed.pid else (
                f"{managed.name}/{proc.name}"
            )  # fmt: skip
    return names


@dataclass
class Step:
    rate: int
    offered: float  # records/s the load generator managed to send
    acked: int
    stored: int
    sustained: float  # records/s stored while the load ran (after WARM_UP)
    p50_ms: float | None
    p99_ms: float | None
    cpu: list[tuple[str, float]]  # (process, % of a core), busiest first

    def bottleneck(self) -> str:
        name, share = self.cpu[0]
        total = sum(s for _, s in self.cpu)
        where = f"{name} {share:.0f}%"
        if share >= 90:
            where += " (a full core)"
        return where + f"; all {total:.0f}% of {os.cpu_count() * 100}%"  # type: ignore[operator]


def stored_times(ddb: object, table: str, ids: set[str]) -> dict[str, float]:
    """``stored_at`` (epoch ms) of each of ``ids`` in ``table`` (one scan: the table holds a
    few hundred thousand items, far fewer calls than BatchGetItem by id)."""
    found: dict[str, float] = {}
    for item in scan_all(ddb, table):
        record_id = item["id"]["S"]
        if record_id in ids:
            found[record_id] = float(item["stored_at"]["N"])
    return found


def wait_stored(ddb: object, table: str, ids: list[str], drain: float) -> None:
    """Until the last acknowledged records (a sample of 500) are stored, or ``drain`` s."""
    sample = ids[-500:]
    deadline = time.monotonic() + drain
    while sample and time.monotonic() < deadline:
        found = {i["id"]["S"] for i in stored_items(ddb, table, sample, projection="id")}
        sample = [i for i in sample if i not in found]
        if sample:
            time.sleep(1)


def warm_up(stack: LocalStack, wait: float) -> float:
    """A trickle until it is stored: the KCL's first deliveries after start take far longer
    than later ones (README, "Troubleshooting"). Seconds it took."""
    started = time.monotonic()
    cfg = stack.config
    tally = asyncio.run(send(Plan(cfg.producer_url, 200, 1_000, "small", BATCH)))
    missing = missing_after(stack.client("dynamodb"), cfg.records_table, tally.ids, wait)
    if missing or tally.acked != tally.sent:
        raise RuntimeError(
            f"warm-up: {tally.sent - tally.acked} not acknowledged, {len(missing)} not stored"
        )
    return time.monotonic() - started


def run_step(stack: LocalStack, rate: int, seconds: float, drain: float) -> Step:
    cfg = stack.config
    plan = Plan(cfg.producer_url, rate, int(rate * seconds), "small", BATCH)
    started_ms = time.time() * 1000
    with CpuSampler() as sampler:
        tally = asyncio.run(send(plan))
    names = labels(stack)
    ddb = stack.client("dynamodb")
    wait_stored(ddb, cfg.records_table, tally.ids, drain)
    due = dict(zip(tally.ids, tally.due_ms, strict=True))
    stored = stored_times(ddb, cfg.records_table, set(due))
    latency = sorted(stored[i] - due[i] for i in stored)
    latency += [float("inf")] * (tally.acked - len(stored))  # not stored: never
    window = (started_ms + WARM_UP * 1000, started_ms + seconds * 1000)
    in_window = sum(1 for at in stored.values() if window[0] <= at <= window[1])
    cpu = sorted(
        ((names.get(pid, ""), share) for pid, share in sampler.percent().items() if pid in names),
        key=lambda x: -x[1],
    )
    return Step(
        rate=rate,
        offered=tally.sent / max(tally.elapsed, 1e-9),
        acked=tally.acked,
        stored=len(stored),
        sustained=in_window / (window[1] - window[0]) * 1000,
        p50_ms=percentile(latency, 50),
        p99_ms=percentile(latency, 99),
        cpu=cpu,
    )


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "never" if value == float("inf") else f"{value / 1000:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES))
    parser.add_argument("--seconds", type=float, default=20.0, help="per step")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for stored")
    args = parser.parse_args()
    started = time.monotonic()
    print("End to end on the local stack, 100-byte records, POST /batch of 100 (loadgen)")  # noqa: T201
    print(  # noqa: T201
        f"  {'rate/s':>7} {'sent/s':>8} {'acked':>8} {'stored':>8} {'stored/s':>9}"
        f" {'p50':>7} {'p99':>7}  busiest process (% of a core)"
    )
    with LocalStack(CONFIG) as stack:
        ready = time.monotonic() - started
        warm = warm_up(stack, 180)
        for rate in sorted(args.rates):
            step = run_step(stack, rate, args.seconds, args.drain)
            print(  # noqa: T201
                f"  {step.rate:>7,} {step.offered:>8,.0f} {step.acked:>8,} {step.stored:>8,}"
                f" {step.sustained:>9,.0f} {_ms(step.p50_ms):>7} {_ms(step.p99_ms):>7}"
                f"  {step.bottleneck()}",
                flush=True,
            )
            print(  # noqa: T201
                "           " + ", ".join(f"{n} {s:.0f}%" for n, s in step.cpu[:5] if s >= 5)
            )
            if step.p99_ms is None or step.p99_ms > P99_LIMIT_MS:
                break
    print(  # noqa: T201
        f"  (stack ready in {ready:.0f} s, warm-up stored in {warm:.0f} s;"
        f" benchmarks.end_to_end took {time.monotonic() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
