"""CPU time per process from /proc, for benchmarks that count every process involved."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    ppid: int
    name: str  # the command's name (comm), e.g. java, python, node
    cpu: float  # user + system seconds so far (all its threads)


def snapshot() -> dict[int, Proc]:
    """Every live process now."""
    procs: dict[int, Proc] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        fields = rest.split()
        cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        procs[int(entry.name)] = Proc(int(entry.name), int(fields[1]), name, cpu)
    return procs


def tree(procs: dict[int, Proc], root: int) -> list[Proc]:
    """``root`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        if pid in procs:
            found.append(procs[pid])
        frontier.extend(children.get(pid, []))
    return found


def tree_cpu(root: int) -> float:
    """User + system CPU seconds of ``root`` and its live descendants."""
    return sum(p.cpu for p in tree(snapshot(), root))
