"""The supervisor's restart policy and bookkeeping, on real short-lived processes and a fake
clock; the pid file and what counts as this project's own process; the stack's stop graces."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack import stack as stack_module
from local_stack.certs import TlsFiles
from local_stack.ownership import RUN_VARIABLE, PidFile, Recorded, port_holders, started
from local_stack.processes import ManagedProcess, StartupError
from local_stack.stack import LocalStack, StackConfig
from local_stack.supervisor import RestartPolicy, ServiceFailed, Supervisor
from tests.polling import eventually
from tests.vtime import FakeClock

PY = sys.executable
SLEEP = [PY, "-c", "import time; time.sleep(600)"]


def _wait_exit(process: ManagedProcess) -> None:
    assert process.proc is not None
    process.proc.wait(timeout=30)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def supervisor(tmp_path: Path, clock: FakeClock) -> Iterator[Supervisor]:
    policy = RestartPolicy(first_delay=1, max_delay=4, healthy_after=60, max_quick_exits=5)
    running = Supervisor(tmp_path, policy, clock)
    running.begin()
    yield running
    running.stop()


def test_backoff_doubles_per_quick_exit_up_to_the_cap_then_gives_up() -> None:
    policy = RestartPolicy(first_delay=1, max_delay=30, max_quick_exits=5)
    assert [policy.delay(n) for n in range(7)] == [1, 1, 2, 4, 8, None, None]
    assert RestartPolicy(first_delay=1, max_delay=3).delay(4) == 3


def test_an_exited_service_is_restarted_after_its_backoff_and_the_others_keep_running(
    supervisor: Supervisor, clock: FakeClock
) -> None:
    # GIVEN two services, one of which is killed
    steady = supervisor.spawn("steady", SLEEP, os.environ)
    victim = supervisor.spawn("victim", SLEEP, os.environ)
    first_pid, steady_pid = victim.pid, steady.pid
    victim.signal(signal.SIGKILL)
    _wait_exit(victim)
    # WHEN the supervisor looks
    events = supervisor.supervise()
    # THEN it notes the exit and schedules a restart, without touching the other
    assert events == ["victim (killed by SIGKILL) exited; restarting it in 1 s"]
    status = {s["name"]: s for s in supervisor.status()}
    assert status["victim"]["state"] == "restarting"
    assert status["victim"]["last_exit"] == "killed by SIGKILL"
    assert supervisor.supervise() == []  # not yet: the backoff
    # AND once the backoff is over it starts it again, counted
    clock.advance(1)
    assert supervisor.supervise() == [f"victim restarted (pid {victim.pid}), 1x so far"]
    assert victim.running() and victim.pid != first_pid
    assert steady.running() and steady.pid == steady_pid
    status = {s["name"]: s for s in supervisor.status()}
    assert (status["victim"]["state"], status["victim"]["restarts"]) == ("running", 1)
    # AND the pid file records the new process
    recorded = PidFile.read(supervisor.pid_file)
    assert recorded is not None
    assert {p.name: p.pid for p in recorded.processes} == {"steady": steady_pid,
                                                          "victim": victim.pid}  # fmt: skip


def test_a_service_failing_right_after_each_start_stops_the_stack_with_its_log_tail(
    supervisor: Supervisor, clock: FakeClock
) -> None:
    failing = supervisor.spawn("failing", [PY, "-c", "print('no config'); exit(70)"], os.environ)
    delays = []
    with pytest.raises(ServiceFailed) as failed:
        for _ in range(10):
            _wait_exit(failing)
            events = supervisor.supervise()  # notes the exit, or raises
            delays.append(float(events[0].split(" in ")[1].removesuffix(" s")))
            clock.advance(delays[-1])
            supervisor.supervise()  # starts it again
    # THEN it was restarted with a doubling backoff, then given up on at the fifth exit
    assert delays == [1, 2, 4, 4]
    message = str(failed.value)
    assert "failing (exit 70) exited 5 times in a row, each within 60 s of its start" in message
    assert "no config" in message and str(failing.log_path) in message


def test_a_run_that_lasted_starts_the_count_afresh(
    supervisor: Supervisor, clock: FakeClock
) -> None:
    service = supervisor.spawn("service", SLEEP, os.environ)

    def kill_and_look() -> str:
        service.signal(signal.SIGKILL)
        _wait_exit(service)
        event = supervisor.supervise()[0]
        clock.advance(5)
        supervisor.supervise()  # started again
        return event

    # GIVEN two exits soon after a start (the backoff grows)
    assert [kill_and_look()[-6:] for _ in range(2)] == ["in 1 s", "in 2 s"]
    # WHEN it then runs for longer than healthy_after before it exits
    clock.advance(61)
    # THEN the next restart comes after the first delay again, the count started afresh
    assert kill_and_look().endswith("in 1 s") and service.quick_exits == 0


def test_a_service_that_cannot_be_restarted_stops_the_stack_saying_why(
    supervisor: Supervisor,
) -> None:
    emulator = supervisor.spawn("emulator", SLEEP, os.environ, no_restart="it keeps data in memory")
    emulator.signal(signal.SIGKILL)
    _wait_exit(emulator)
    with pytest.raises(ServiceFailed, match=r"emulator \(killed by SIGKILL\) cannot be restarted: "
                                            r"it keeps data in memory"):  # fmt: skip
        supervisor.supervise()
    assert [s["restartable"] for s in supervisor.status()] == [False]


def test_stop_kills_what_ignores_sigterm_after_its_grace_and_the_rest_of_its_group(
    supervisor: Supervisor,
) -> None:
    # GIVEN a service that ignores SIGTERM and started a child of its own
    code = ("import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            "print(child.pid, flush=True)\ntime.sleep(600)\n")  # fmt: skip
    stubborn = supervisor.spawn("stubborn", [PY, "-c", code], os.environ, grace=0.5)
    printed = eventually(
        lambda: stubborn.log_tail().strip(),
        timeout=30,
        interval=0.05,
        what="the stubborn service to print its child's pid",
    )
    child = int(printed.split()[-1])
    proc = stubborn.proc
    # WHEN the stack stops
    supervisor.stop()
    # THEN it was SIGKILLed after its grace, and its child is gone with it
    assert proc is not None and proc.returncode == -signal.SIGKILL
    assert started(child) is None
    # AND the run's reaper has ended and the pid file is gone
    assert not supervisor.pid_file.exists()


def test_restart_by_hand_can_change_the_environment(supervisor: Supervisor) -> None:
    service = supervisor.spawn("service", [PY, "-c", "import os; print(os.environ['WHO'])"],
                               {**os.environ, "WHO": "first"})  # fmt: skip
    _wait_exit(service)
    supervisor.restart("service", {"WHO": "second"})
    _wait_exit(service)
    assert service.log_tail().split() == ["first", "second"] and service.restarts == 1


# ---- the pid file and what is this project's own ---------------------------------------------


def test_pid_file_round_trip_and_a_recycled_pid_is_not_ours(tmp_path: Path) -> None:
    me = os.getpid()
    mine, recycled = Recorded("mine", me, started(me)), Recorded("recycled", me, "1")
    record = PidFile("run-1", Recorded("launcher", me, started(me)), (mine, recycled))
    record.write(tmp_path / "pids.json")
    assert PidFile.read(tmp_path / "pids.json") == record
    # a live pid whose start time differs from the recorded one is some other process
    assert [p.alive() for p in record.processes] == [True, False]
    (tmp_path / "pids.json").write_text('{"kinesis-mock": 123}')  # an older format
    assert PidFile.read(tmp_path / "pids.json") is None


def test_the_run_marker_finds_processes_the_services_started_themselves(tmp_path: Path) -> None:
    # GIVEN a process of run "r1" (not recorded: as a record processor the KCL started)
    env = {**os.environ, RUN_VARIABLE: "r1"}
    with subprocess.Popen(SLEEP, env=env, start_new_session=True) as marked, \
         subprocess.Popen(SLEEP, start_new_session=True) as unmarked:  # fmt: skip
        record = PidFile("r1", Recorded("launcher", 1, "0"), ())
        try:
            # THEN it is a member of the run, the unmarked one is not; ending the run ends it only
            assert set(record.members()) == {marked.pid}
            assert set(record.end()) == {marked.pid}
            assert marked.wait(timeout=10) == -signal.SIGKILL
            assert unmarked.poll() is None
        finally:
            unmarked.kill()
            marked.kill()


def test_a_second_launcher_on_a_running_stacks_state_dir_is_refused(tmp_path: Path) -> None:
    # GIVEN the pid file of a run whose launcher still runs (a process of this test)
    with subprocess.Popen(SLEEP, start_new_session=True) as other:
        try:
            PidFile("r0", Recorded("launcher", other.pid, started(other.pid)), ()).write(
                tmp_path / "pids.json"
            )
            # WHEN a new supervisor begins in the same state dir THEN it refuses, naming it
            refused = Supervisor(tmp_path)
            with pytest.raises(StartupError, match=f"already running: launcher pid {other.pid}"):
                refused.begin()
            refused.stop()  # as LocalStack.__enter__ does after a failed start
            # AND left it and its pid file alone
            assert other.poll() is None and (tmp_path / "pids.json").exists()
        finally:
            other.kill()


def test_port_holders_names_the_listening_process() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert port_holders(server.getsockname()[1]) == [os.getpid()]


# ---- the stack's stop graces ---------------------------------------------------------------


def test_the_consumer_gets_longer_to_stop_than_the_kcl_takes_to_shut_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a stack that does not really start processes
    monkeypatch.setattr(ManagedProcess, "start", lambda self, cwd=None: None)
    stack = LocalStack(StackConfig(state_dir=tmp_path))
    stack.tls = TlsFiles(*(tmp_path / n for n in ("c", "k", "j", "t")))
    # WHEN a consumer worker is added (as start() adds the first)
    worker = stack.add_consumer("consumer-2")
    # THEN SIGKILL comes only after the KCL's own shutdown grace (its final checkpoints)
    kcl_grace = int(worker.env["CONSUMER_SHUTDOWN_GRACE_MILLIS"]) / 1000
    assert worker.grace > kcl_grace
    # AND kinesis-mock, which ignores SIGTERM, is not waited for long
    assert stack_module.KINESIS_MOCK_GRACE <= 5
