"""Every way out of the launcher leaves no process behind: one stop signal, two, SIGKILL of the
launcher (and of its reaper), a crash, a service that keeps failing. Run on the real launcher
loop and supervisor with cheap stand-in services (``fake_stack``); every process killed here is
one this test started (the launcher) or a member of the run it started (found by its run id).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from local_stack.ownership import PidFile, run_members, started
from local_stack.stack import ROOT
from tests.polling import eventually

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc (Linux)")


@dataclass
class Launched:
    proc: subprocess.Popen[bytes]
    state: Path
    out: Path
    run: str = ""
    pids: dict[str, int] | None = None

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def members(self) -> list[int]:
        return run_members(self.run)

    def reaper(self) -> int:
        """The reaper of this run: the process whose command line carries its run id."""
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                if self.run.encode() in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
        raise AssertionError("no reaper")


def _launch(state: Path, *args: str, grace: float = 1.0) -> Launched:
    out = state.parent / f"{state.name}-{time.monotonic_ns()}.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.unit.local_stack.fake_stack", str(state), *args],
            cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "FAKE_GRACE": str(grace)},
        )  # fmt: skip
    launched = Launched(proc, state, out)
    _until(lambda: "ready" in launched.output() or proc.poll() is not None, launched)
    record = PidFile.read(state / "pids.json")
    if record is not None:
        launched.run = record.run
        launched.pids = {p.name: p.pid for p in record.processes}
    return launched


def _until(condition: Callable[[], object], launched: Launched, timeout: float = 30) -> None:
    eventually(
        condition,
        timeout=timeout,
        interval=0.05,
        what=lambda: f"the launcher; its output:\n{launched.output()}",
    )


@pytest.fixture
def cleanup() -> Iterator[list[Launched]]:
    launched: list[Launched] = []
    yield launched
    for one in launched:  # a failed test must not leave its processes running
        if one.proc.poll() is None:
            one.proc.kill()
            one.proc.wait()
        for pid in run_members(one.run) if one.run else []:
            os.kill(pid, signal.SIGKILL)


def _gone(launched: Launched) -> bool:
    return not launched.members()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_one_stop_signal_stops_every_service_in_order(
    tmp_path: Path, cleanup: list[Launched], sig: signal.Signals
) -> None:
    # GIVEN a running stack whose services include one that ignores SIGTERM
    stack = _launch(tmp_path / "state")
    cleanup.append(stack)
    assert stack.pids is not None and set(stack.pids) == {"polite", "stubborn", "parent"}
    assert len(stack.members()) == 4  # and the parent's own child
    # WHEN it gets one stop signal (Ctrl-C, SIGTERM, a closed terminal)
    stack.proc.send_signal(sig)
    # THEN it exits 0 once every service stopped: the polite one on SIGTERM, the stubborn one
    # SIGKILLed after its grace, the parent's child with its process group
    assert stack.proc.wait(timeout=60) == 0, stack.output()
    assert f"{sig.name}: stopping" in stack.output()
    assert "got SIGTERM" in (stack.state / "logs" / "polite.log").read_text()
    assert _gone(stack)
    assert not (stack.state / "pids.json").exists()


def test_a_second_ctrl_c_kills_everything_at_once(tmp_path: Path, cleanup: list[Launched]) -> None:
    # GIVEN a service that ignores SIGTERM and would get ten minutes to stop
    stack = _launch(tmp_path / "state", grace=600)
    cleanup.append(stack)
    # WHEN Ctrl-C comes twice
    stack.proc.send_signal(signal.SIGINT)
    _until(lambda: "SIGINT: stopping" in stack.output(), stack)
    stack.proc.send_signal(signal.SIGINT)
    # THEN the second kills every process at once and the launcher exits (long before the
    # ten minutes of grace; the wait's timeout is only there to fail instead of hanging)
    assert stack.proc.wait(timeout=60) == 0, stack.output()
    assert "SIGINT again: killing every process now" in stack.output()
    assert _gone(stack)


def test_sigkill_of_the_launcher_leaves_nothing(tmp_path: Path, cleanup: list[Launched]) -> None:
    stack = _launch(tmp_path / "state")
    cleanup.append(stack)
    # WHEN the launcher is SIGKILLed (no handler of its own runs)
    stack.proc.kill()
    stack.proc.wait()
    # THEN within a few seconds no process of its run is left: its children got SIGKILL from
    # the kernel, the parent's child was ended by the reaper, which then removed the pid file
    _until(lambda: _gone(stack), stack, timeout=15)
    _until(lambda: not (stack.state / "pids.json").exists(), stack, timeout=15)
    assert "is gone: ended" in (stack.state / "logs" / "reaper.log").read_text()


def test_leftovers_of_a_run_whose_reaper_died_too_are_ended_by_the_next_run(
    tmp_path: Path, cleanup: list[Launched]
) -> None:
    # GIVEN a run whose launcher and reaper were both SIGKILLed
    earlier = _launch(tmp_path / "state")
    cleanup.append(earlier)
    pids = earlier.pids
    assert pids is not None
    os.kill(earlier.reaper(), signal.SIGKILL)
    earlier.proc.kill()
    earlier.proc.wait()
    # THEN the launcher's own children died with it (PR_SET_PDEATHSIG)...
    _until(lambda: all(started(pid) is None for pid in pids.values()), earlier)
    # ... but the child the parent service started is left over, and its pid file stayed
    (leftover,) = earlier.members()
    assert (earlier.state / "pids.json").exists()
    # WHEN the next run starts from the same state dir
    later = _launch(tmp_path / "state")
    cleanup.append(later)
    # THEN it names the leftover and ends it, and runs
    assert "ended what an earlier run left running: " in later.output()
    assert f"(pid {leftover})" in later.output()
    assert started(leftover) is None and later.proc.poll() is None
    later.proc.send_signal(signal.SIGTERM)
    assert later.proc.wait(timeout=60) == 0
    assert _gone(later)


def test_a_crash_of_the_launcher_still_stops_every_service(
    tmp_path: Path, cleanup: list[Launched]
) -> None:
    stack = _launch(tmp_path / "state", "crash")
    cleanup.append(stack)
    # WHEN its supervision loop raises THEN it exits non-zero with the traceback, after the stop
    assert stack.proc.wait(timeout=60) == 1
    assert "RuntimeError: a bug in the launcher" in stack.output()
    assert _gone(stack)


def test_a_service_that_keeps_failing_stops_the_stack_with_its_log_tail(
    tmp_path: Path, cleanup: list[Launched]
) -> None:
    stack = _launch(tmp_path / "state", "failing")
    cleanup.append(stack)
    # WHEN a service exits at once after every start THEN it is restarted with backoff, then
    # given up on: the stack stops cleanly, exit status 1, its log tail in the message
    assert stack.proc.wait(timeout=60) == 1, stack.output()
    output = stack.output()
    assert output.count("failing (exit 70) exited; restarting it in") == 2
    assert "failing (exit 70) exited 3 times in a row" in output
    assert "boom" in output.split("giving up")[1]
    assert _gone(stack)
