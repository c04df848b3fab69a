"""Child processes the local stack owns: started in their own process group, always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class StartupError(RuntimeError):
    """A component did not come up; the message carries the tail of its log."""


class ManagedProcess:
    """One child process with its output in a log file.

    Contract: ``stop`` sends SIGTERM to the process alone (as ECS and docker stop do to PID 1,
    so the KCL daemon can shut its record processors down in order), waits up to ``grace``
    seconds, then SIGKILLs whatever is left of its process group; it is idempotent.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        grace: float = 15.0,
    ):
        self.name = name
        self.grace = grace
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_start = 0

    def start(self, cwd: Path) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # the log is appended to across runs: where this run's lines begin
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

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
