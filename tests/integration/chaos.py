"""Local chaos on a stack started by ``python -m local_stack``: SIGKILL one service, then measure
how long until it serves again. Every pid killed here comes from that stack's own pid file or
its consumer's process group, never from a pattern (other stacks run on the same machine)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loadgen.stored import stored_items
from local_stack.ownership import run_members
from local_stack.processes import port_open
from local_stack.stack import LocalStack
from tests.polling import eventually


@dataclass
class Phase:
    """One service killed: what, how long until it served again, which acks fell in it."""

    service: str
    pid: int
    served_after: float
    first_ack: int  # index into the acknowledged ids: this phase's are [first_ack, last_ack)
    last_ack: int = 0


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``condition()`` held (checked every 0.2 s; not serving yet is not yet);
    fails after ``timeout``."""
    started = time.monotonic()
    eventually(
        condition, timeout=timeout, interval=0.2, what=what, ignoring=(OSError, httpx.HTTPError)
    )
    return time.monotonic() - started


def record_processors(consumer_pid: int) -> list[int]:
    """The KCL's record processors: the consumer's process group, less the JVM itself."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        pgid = int(stat[stat.rindex(")") + 2 :].split()[2])
        pid = int(entry.name)
        if pgid == consumer_pid and pid != consumer_pid and b"consumer.processor" in cmdline:
            found.append(pid)
    return found


def probe_stored(
    producer_url: str, ddb: Any, table: str, api_key: str | None = None
) -> Callable[[], bool]:
    """POST one record now (retried until acknowledged); the condition: it is stored."""
    record_id = ""

    def stored() -> bool:
        nonlocal record_id
        if not record_id:
            response = httpx.post(
                f"{producer_url}/",
                json={"data": {"probe": True}},
                headers={"X-Api-Key": api_key} if api_key else {},
                timeout=30,
            )
            if response.status_code != 200:
                return False
            record_id = response.json()["id"]
        return bool(stored_items(ddb, table, [record_id], projection="id"))

    return stored


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def leftovers(stack: LocalStack) -> dict[str, object]:
    """What of a stopped stack is still there: processes of its run, open ports (none, after a
    clean stop: every process got SIGTERM, and SIGKILL after its grace)."""
    cfg = stack.config
    ports = (cfg.kinesis_tls_port, cfg.kinesis_plain_port, cfg.dynamodb_port, cfg.producer_port)
    left: dict[str, object] = {}
    if run_members(stack.run):
        left["processes"] = run_members(stack.run)
    if any(port_open("127.0.0.1", p) for p in ports):
        left["ports"] = [p for p in ports if port_open("127.0.0.1", p)]
    return left
