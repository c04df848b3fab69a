"""Supervision like ECS for the local stack's processes.

A service that exits is started again after a backoff, the others keep running (ECS restarts
a failed container in place when its task definition has a restart policy: AWS ECS API
reference, ``ContainerRestartPolicy``); one that cannot be restarted without losing data (an
in-memory emulator) or keeps failing right after each start ends the stack, named with its log
tail. Every run is recorded in a pid file, and a reaper process ends the run's processes when
the launcher is gone however it went (see ``local_stack.ownership`` and ``local_stack.reaper``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_stack.ownership import RUN_VARIABLE, PidFile, Recorded, command, started
from local_stack.processes import ManagedProcess, StartupError

log = logging.getLogger("local_stack")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ServiceFailed(RuntimeError):
    """A service the stack cannot keep running; the message says why, with its log tail."""


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff between restarts: ``first_delay`` doubled for every exit in a row that came less
    than ``healthy_after`` seconds after its start, up to ``max_delay``; after the
    ``max_quick_exits``-th such exit in a row, give up. A run that lasted ``healthy_after``
    seconds starts the count afresh."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    healthy_after: float = 60.0
    max_quick_exits: int = 5

    def delay(self, quick_exits: int) -> float | None:
        """Seconds to wait before the next start; None: give up."""
        if quick_exits >= self.max_quick_exits:
            return None
        return float(min(self.first_delay * 2 ** max(quick_exits - 1, 0), self.max_delay))


class Supervisor:
    """Owns every process it starts; ``stop`` leaves none behind, ``supervise`` restarts.

    Call ``begin`` once before the first ``spawn``, ``supervise`` every second or so from the
    launcher's main thread, and ``stop`` (or ``kill``, then ``stop``) at the end.
    """

    def __init__(
        self,
        state_dir: Path,
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state_dir = state_dir
        self.policy = policy or RestartPolicy()
        self.clock = clock
        self.processes: list[ManagedProcess] = []
        self.run = uuid.uuid4().hex
        self._reaper: subprocess.Popen[bytes] | None = None
        self._began = False  # the pid file is this run's (not a running one's it refused)

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "pids.json"

    # ---- lifecycle -----------------------------------------------------------------------
    def begin(self) -> None:
        """End what an earlier run from this state dir left behind (refuse if that run's
        launcher still lives), record this run, and start its reaper."""
        self._end_leftovers()
        self._began = True
        self._write_pids()
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / "reaper.log", "ab") as out:
            self._reaper = subprocess.Popen(
                [sys.executable, "-m", "local_stack.reaper", str(self.pid_file), self.run],
                cwd=PROJECT_ROOT,
                stdin=subprocess.PIPE,  # its end of file is the launcher's end
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # not in the terminal's group: Ctrl-C is not for it
            )

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        grace: float = 15.0,
        no_restart: str = "",
        cwd: Path | None = None,
    ) -> ManagedProcess:
        """Start ``name`` and supervise it; ``no_restart`` says why it cannot be restarted."""
        process = ManagedProcess(
            name,
            argv,
            {**env, RUN_VARIABLE: self.run},
            self.state_dir / "logs" / f"{name}.log",
            grace,
            no_restart,
            cwd,
        )
        self.processes.append(process)
        self._start(process)
        return process

    def _start(self, process: ManagedProcess) -> None:
        process.start()
        process.started_at = self.clock()
        self._write_pids()

    def supervise(self) -> list[str]:
        """One round: note what exited, start again what is due. Returns what happened, for the
        launcher to print; raises ``ServiceFailed`` when the stack has to stop."""
        now, events = self.clock(), []
        for process in list(self.processes):
            if process.restart_at is not None:
                if now >= process.restart_at:
                    process.restart_at = None
                    process.restarts += 1
                    self._start(process)
                    events.append(
                        f"{process.name} restarted (pid {process.pid}), {process.restarts}x so far"
                    )
            elif process.proc is not None and not process.running():
                events.append(self._exited(process, now))
        return events

    def _exited(self, process: ManagedProcess, now: float) -> str:
        process.stop()  # its process group: what it started may outlive it (record processors)
        process.last_exit = process.exit_description()
        what = f"{process.name} ({process.last_exit})"
        if process.no_restart:
            raise ServiceFailed(
                f"{what} cannot be restarted: {process.no_restart}.\n{self._tail(process)}"
            )
        quick = now - process.started_at < self.policy.healthy_after
        process.quick_exits = process.quick_exits + 1 if quick else 0
        delay = self.policy.delay(process.quick_exits)
        if delay is None:
            raise ServiceFailed(
                f"{what} exited {process.quick_exits} times in a row, each within "
                f"{self.policy.healthy_after:.0f} s of its start: giving up.\n{self._tail(process)}"
            )
        process.restart_at = now + delay
        return f"{what} exited; restarting it in {delay:.0f} s"

    @staticmethod
    def _tail(process: ManagedProcess) -> str:
        return f"The end of its log ({process.log_path}):\n{process.log_tail()}"

    def restart(self, name: str, env: Mapping[str, str] | None = None) -> ManagedProcess:
        """Stop ``name`` (if it runs) and start it again, with ``env`` changed if given."""
        process = self.process(name)
        process.stop()
        process.env.update(env or {})
        process.restart_at = None
        process.restarts += 1
        self._start(process)
        return process

    def stop(self) -> None:
        """Stop in reverse order of start, each within its grace; then the reaper finds
        nothing to do, and the pid file goes."""
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        if self._reaper is not None:
            assert self._reaper.stdin is not None
            self._reaper.stdin.close()
            try:
                self._reaper.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._reaper.kill()
            self._reaper = None
        if self._began:
            self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL every process group now (a second Ctrl-C); safe in a signal handler."""
        for process in list(self.processes):
            process.kill()

    # ---- views ---------------------------------------------------------------------------
    def process(self, name: str) -> ManagedProcess:
        """The component called ``name`` (kinesis-mock, dynamodb-local, consumer, ...)."""
        return next(p for p in self.processes if p.name == name)

    def failed(self) -> list[ManagedProcess]:
        return [p for p in self.processes if not p.running() and p.restart_at is None]

    def status(self) -> list[dict[str, Any]]:
        """Per service, for the dashboard: state, pid, restarts, how it last ended."""
        return [
            {
                "name": p.name,
                "pid": p.pid,
                "restarts": p.restarts,
                "last_exit": p.last_exit,
                "restartable": not p.no_restart,
                "state": "running"
                if p.running()
                else "restarting"
                if p.restart_at is not None
                else "exited",
            }
            for p in list(self.processes)
        ]

    # ---- the pid file --------------------------------------------------------------------
    def _write_pids(self) -> None:
        me = os.getpid()
        PidFile(
            self.run,
            Recorded("launcher", me, started(me)),
            tuple(
                Recorded(p.name, p.pid, p.started_token)
                for p in self.processes
                if p.pid is not None
            ),
        ).write(self.pid_file)

    def _end_leftovers(self) -> None:
        earlier = PidFile.read(self.pid_file)
        if earlier is None:
            return
        launcher = earlier.launcher
        if launcher.pid != os.getpid() and launcher.alive():
            raise StartupError(
                f"a local stack from {self.state_dir} is already running: launcher pid "
                f"{launcher.pid} ({command(launcher.pid)}). Stop it first (Ctrl-C where it "
                f"runs, or kill {launcher.pid}), or start this one with another --state-dir "
                "and other ports"
            )
        ended = earlier.end()
        if ended:
            log.warning(
                "ended what an earlier run left running: %s",
                ", ".join(f"{name} (pid {pid})" for pid, name in sorted(ended.items())),
            )
