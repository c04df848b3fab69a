"""Child processes the local stack owns: each in its own process group, always stopped."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from local_stack.ownership import started


class StartupError(RuntimeError):
    """A component did not come up; the message carries the tail of its log."""


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when the thread that forked it ends
    (``prctl(PR_SET_PDEATHSIG)``, Linux): with the launcher, even when it is SIGKILLed. None
    where there is no prctl (the reaper and the pid file still cover those systems)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the launcher died between fork and prctl
            os._exit(1)

    return set_in_child


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class ManagedProcess:
    """One child process with its output in a log file; it can be started again once ended.

    Contract: ``stop`` sends SIGTERM to the process alone (as ECS and docker stop do to PID 1,
    so the KCL daemon can shut its record processors down in order), waits up to ``grace``
    seconds, then SIGKILLs whatever is left of its process group; it is idempotent. ``kill``
    SIGKILLs the group at once. Each start is a new session (Ctrl-C in the terminal reaches the
    launcher only, which stops the children in order), and a child forked from the main thread
    dies with the launcher (``PR_SET_PDEATHSIG`` fires when the forking *thread* ends, so one
    forked from a short-lived thread does without it; the reaper covers it). ``no_restart``
    says why the process cannot be restarted (empty: it can).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        grace: float = 15.0,
        no_restart: str = "",
        cwd: Path | None = None,
    ):
        self.name = name
        self.grace = grace
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.no_restart = no_restart
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_start = 0
        self.started_at = 0.0  # time.monotonic() of the last start
        self.started_token: str | None = None  # ownership.started() of the last start
        self.restarts = 0
        self.last_exit: str | None = None
        self.quick_exits = 0  # exits in a row soon after a start (the supervisor's count)
        self.restart_at: float | None = None  # when the supervisor starts it again

    def start(self, cwd: Path | None = None) -> None:
        self.cwd = cwd or self.cwd
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # the log is appended to across runs: where this run's lines begin
        if self.proc is None:
            self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        main = threading.current_thread() is threading.main_thread()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_parent_death_signal() if main else None,
            )
        self.started_at = time.monotonic()
        self.started_token = started(self.proc.pid)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_description(self) -> str:
        """How it ended: ``exit 70``, ``killed by SIGKILL``; ``running`` if it has not."""
        code = None if self.proc is None else self.proc.poll()
        if code is None:
            return "running" if self.proc is not None else "not started"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
        return f"exit {code}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(self.log_start, size - 64 * 1024))  # this run's lines, the last ones
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL its process group now (a second Ctrl-C); ``stop`` still reaps it."""
        self.signal(signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=self.grace)
        self.signal(signal.SIGKILL)  # whatever of its group is left
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on right now (the kernel's pick, from its ephemeral
    range)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(
    what: str, ready: Callable[[], bool], timeout: float, process: ManagedProcess | None = None
) -> None:
    """Poll ``ready`` until true; fail fast with the log tail if ``process`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.running():
            raise StartupError(
                f"{process.name} exited while waiting for {what}:\n{process.log_tail()}"
            )
        try:
            if ready():
                return
        except Exception:  # not ready yet: connection refused, table missing, ...
            pass
        time.sleep(0.5)
    tail = f":\n{process.log_tail()}" if process is not None else ""
    raise StartupError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")
