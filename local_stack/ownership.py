"""Which processes belong to a local stack run, the pid file that records them, and ending them.

Every process a stack starts carries ``RUN_VARIABLE=<run id>`` in its environment, and so does
everything those processes start (the KCL daemon's record processors inherit the JVM's
environment). On Linux that marker, read from ``/proc/<pid>/environ``, is how a process is
known to be this project's own: a recycled pid cannot carry it. Elsewhere (no ``/proc``) the pid
file's recorded start time of each process stands in for it.

The pid file (``<state dir>/pids.json``) holds the run id, the launcher and each service:
``{"run": ..., "launcher": {"pid": ..., "started": ...}, "processes": {name: {...}}}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_VARIABLE = "KINESIS_INGEST_STACK_RUN"
PROC = Path("/proc")


def started(pid: int) -> str | None:
    """When ``pid`` started, as a token that differs for a recycled pid; None if it is gone
    (a zombie counts as gone: it has ended, only its exit status waits to be collected)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        return None if fields[0] == "Z" else fields[19]  # starttime: clock ticks since boot
    except FileNotFoundError:
        return None  # gone (or no /proc: below)
    except OSError:
        pass
    if PROC.is_dir():
        return None
    done = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True)
    return done.stdout.strip() or None


def run_members(run: str) -> list[int]:
    """The live processes whose environment carries ``run`` (Linux; elsewhere an empty list)."""
    marker = f"{RUN_VARIABLE}={run}".encode()
    found = []
    for entry in PROC.glob("[0-9]*") if PROC.is_dir() else []:
        with contextlib.suppress(OSError):  # gone meanwhile, or another user's
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return [pid for pid in found if pid != os.getpid()]


def command(pid: int) -> str:
    """``pid``'s command line, shortened, for messages."""
    try:
        text = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        text = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True
        ).stdout
    text = " ".join(text.split())
    return text if len(text) <= 100 else text[:97] + "..."


def port_holders(port: int) -> list[int]:
    """The processes with a TCP socket listening on ``port`` (Linux, own processes only)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (PROC / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    holders = []
    for entry in PROC.glob("[0-9]*") if inodes else []:
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                holders.append(int(entry.name))
    return holders


@dataclass(frozen=True)
class Recorded:
    """A process as the pid file recorded it."""

    name: str
    pid: int
    started: str | None

    def alive(self) -> bool:
        """Still the very process recorded (not a recycled pid)."""
        return self.started is not None and started(self.pid) == self.started


@dataclass(frozen=True)
class PidFile:
    """What one run recorded: its id, its launcher, its services (the file's whole content)."""

    run: str
    launcher: Recorded
    processes: tuple[Recorded, ...]

    @classmethod
    def read(cls, path: Path) -> PidFile | None:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return cls(
                str(data["run"]),
                Recorded("launcher", int(data["launcher"]["pid"]), data["launcher"]["started"]),
                tuple(
                    Recorded(name, int(p["pid"]), p["started"])
                    for name, p in data["processes"].items()
                ),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none, or not ours (an older format): nothing to go by

    def write(self, path: Path) -> None:
        """Atomically: a reader (the reaper, a later run) never sees half a file."""
        data = {
            "run": self.run,
            "launcher": {"pid": self.launcher.pid, "started": self.launcher.started},
            "processes": {p.name: {"pid": p.pid, "started": p.started} for p in self.processes},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(data))
        partial.replace(path)

    def members(self) -> dict[int, str]:
        """pid -> name of every live process of this run: the marked ones, and the recorded
        ones that are still the processes recorded."""
        names = {p.pid: p.name for p in self.processes}
        found = {pid: names.get(pid, command(pid)) for pid in run_members(self.run)}
        found.update({p.pid: p.name for p in self.processes if p.alive()})
        found.pop(self.launcher.pid, None)
        return found

    def end(self, timeout: float = 10.0) -> dict[int, str]:
        """SIGKILL every live process of this run (each recorded one with its process group);
        returns what was alive. Waits up to ``timeout`` for them to be gone."""
        found = self.members()
        deadline = time.monotonic() + timeout
        while found and time.monotonic() < deadline:
            for pid in found:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            for recorded in self.processes:
                if recorded.pid in found:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(recorded.pid, signal.SIGKILL)  # each service leads its group
            time.sleep(0.1)
            if not self.members():
                break
        return found
