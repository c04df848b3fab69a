"""End to end on the local stack (``python -m benchmarks.end_to_end``): how many 100-byte
records per second the whole pipeline stores, and which process limits it.

It starts the local stack (kinesis-mock, DynamoDB Local, the KCL daemon and its record
processors, the producer, the scaler in dry-run; on ports of its own, 127.0.0.1 only), sends
a trickle until it is stored (the KCL's first deliveries are slow), then runs the load
generator (``loadgen``, as ``make load``: open loop, ``small`` shape, 100 records per
``POST /batch``) at rising rates, ``--seconds`` each. Per step, from a uniform sample of
5,000 acknowledged records read back by id: the share stored once the step drained (up to
``--drain`` s), the records per second stored while the load ran (sustained), and p50/p99
end-to-end latency (a record's ``stored_at`` minus when the load generator was due to send
it, so queueing in front of the producer counts; a record not stored counts as never); and
the CPU of every process of the stack and of the load generator over the step, from /proc:
the busiest one, whether one is at a full core, and the machine's share. It stops after the
first step whose p99 passes 5 s, or after the last rate: at most ``len(--rates)`` x
(``--seconds`` + ``--drain`` + a few s) plus the stack's start and warm-up (about 80 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import threading
import time
from dataclasses import dataclass

from benchmarks.procstat import Proc, snapshot, tree
from common.stats import percentile
from loadgen.run import Plan, send
from loadgen.stored import missing_after, stored_items
from local_stack.stack import ROOT, LocalStack, StackConfig

RATES = (1_000, 2_000, 4_000, 6_000, 8_000, 12_000)  # records/s, rising
P99_LIMIT_MS = 5_000.0
BATCH = 100
WARM_UP = 5.0  # seconds of each step not counted in the sustained rate
SAMPLE = 5_000  # acknowledged records per step whose stored time is read
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
            pid: (proc.cpu - (self._first[pid].cpu if pid in self._first else 0.0)) / seconds * 100
            for pid, proc in self._last.items()
        }


def labels(stack: LocalStack) -> dict[int, str]:
    """The stack's processes (and their children) by pid, and this one (the load generator)."""
    procs = snapshot()
    names = {os.getpid(): "load generator (this process)"}
    for managed in stack.processes:
        if managed.pid is None:
            continue
        for proc in tree(procs, managed.pid):
            names[proc.pid] = (
                managed.name if proc.pid == managed.pid else (f"{managed.name}/{proc.name}")
            )
    return names


@dataclass
class Step:
    rate: int
    offered: float  # records/s the load generator managed to send
    acked: int
    stored_share: float  # of the sampled acknowledged records, stored after the drain
    sustained: float  # records/s stored while the load ran (after WARM_UP), from the sample
    p50_ms: float | None
    p99_ms: float | None
    cpu: dict[int, float]  # pid -> % of a core over the step
    names: dict[int, str]  # pid -> process

    def busiest(self) -> str:
        """The busiest process; whether it is at a full core; the machine's share used."""
        pid = max(self.cpu, key=self.cpu.__getitem__)
        share, total = self.cpu[pid], sum(self.cpu.values())
        capacity = (os.cpu_count() or 1) * 100
        text = f"{self.names[pid]} {share:.0f}%" + (" (a full core)" if share >= 90 else "")
        text += f"; all {total:.0f}% of {capacity}%"
        return text + (" (every core busy)" if total >= 0.9 * capacity else "")

    def by_process(self, top: int = 6) -> str:
        """CPU per process name, same-named processes summed (x count, busiest of them)."""
        groups: dict[str, list[float]] = {}
        for pid, share in self.cpu.items():
            groups.setdefault(self.names[pid], []).append(share)
        ordered = sorted(groups.items(), key=lambda g: -sum(g[1]))[:top]
        return ", ".join(
            f"{name} {sum(s):.0f}%"
            if len(s) == 1
            else f"{name} x{len(s)} {sum(s):.0f}% (max {max(s):.0f}%)"
            for name, s in ordered
        )


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
    # a uniform sample of the acknowledged records: their stored times by id (BatchGetItem),
    # a bounded read whatever the rate
    due = dict(
        random.Random(rate).sample(
            list(zip(tally.ids, tally.due_ms, strict=True)), min(SAMPLE, tally.acked)
        )
    )
    items = stored_items(ddb, cfg.records_table, list(due), projection="id, stored_at")
    stored = {i["id"]["S"]: float(i["stored_at"]["N"]) for i in items}
    latency = sorted(at - due[record_id] for record_id, at in stored.items())
    latency += [float("inf")] * (len(due) - len(stored))  # not stored after the drain: never
    window = (started_ms + WARM_UP * 1000, started_ms + seconds * 1000)
    in_window = sum(1 for at in stored.values() if window[0] <= at <= window[1])
    share = tally.acked / max(len(due), 1)  # acknowledged records per sampled one
    cpu = sampler.percent()
    return Step(
        rate=rate,
        offered=tally.sent / max(tally.elapsed, 1e-9),
        acked=tally.acked,
        stored_share=len(stored) / max(len(due), 1),
        sustained=in_window * share / (window[1] - window[0]) * 1000,
        p50_ms=percentile(latency, 50),
        p99_ms=percentile(latency, 99),
        cpu={pid: cpu[pid] for pid in names if pid in cpu},
        names=names,
    )


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "never" if value == float("inf") else f"{value / 1000:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES))
    parser.add_argument("--seconds", type=float, default=15.0, help="per step")
    parser.add_argument("--drain", type=float, default=45.0, help="seconds to wait for stored")
    args = parser.parse_args()
    started = time.monotonic()
    print("End to end on the local stack, 100-byte records, POST /batch of 100 (loadgen)")
    print(
        f"  {'rate/s':>7} {'sent/s':>8} {'acked':>8} {'stored':>7} {'stored/s':>9}"
        f" {'p50':>7} {'p99':>7}  busiest process (% of a core over the step)"
    )
    with LocalStack(CONFIG) as stack:
        ready = time.monotonic() - started
        warm = warm_up(stack, 180)
        for rate in sorted(args.rates):
            step = run_step(stack, rate, args.seconds, args.drain)
            print(
                f"  {step.rate:>7,} {step.offered:>8,.0f} {step.acked:>8,}"
                f" {step.stored_share:>7.1%} {step.sustained:>9,.0f} {_ms(step.p50_ms):>7}"
                f" {_ms(step.p99_ms):>7}  {step.busiest()}\n           {step.by_process()}",
                flush=True,
            )
            if step.p99_ms is None or step.p99_ms > P99_LIMIT_MS:
                break
    print(
        f"  (stack ready in {ready:.0f} s, warm-up stored in {warm:.0f} s;"
        f" benchmarks.end_to_end took {time.monotonic() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
