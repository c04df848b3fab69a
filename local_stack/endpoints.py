"""Where a running local stack is: ``<state dir>/endpoints.json``, written by the stack once its
producer answers and removed when it stops, beside the pid file (``pids.json``).

The tools (``python -m loadgen``, ``python -m local_stack.items``, ``python -m consumer.replay
--local``) read it instead of assuming the default ports: a stack started with other ports
(``make run ARGS='--producer-port 9080 ...'``) is found the same way. ``find`` believes the
file only while the run that wrote it still has its launcher (the pid file's), so a file left
by a SIGKILLed run is not taken for a running stack.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from local_stack.ownership import PidFile

DEFAULT_STATE_DIR = Path(__file__).resolve().parent.parent / ".local" / "stack"
FILE = "endpoints.json"
LOCAL_CREDENTIALS: dict[str, Any] = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


@dataclass(frozen=True)
class Endpoints:
    """One running stack's addresses and names."""

    run: str
    producer: str  # http://127.0.0.1:8080
    kinesis: str  # https, verified with ``kinesis_ca_bundle``
    kinesis_ca_bundle: str
    dynamodb: str
    dashboard: str | None
    region: str
    stream: str
    records_table: str
    quarantine_table: str

    def client(self, service: Literal["kinesis", "dynamodb"]) -> Any:
        """A boto3 client for the stack's Kinesis (verified TLS) or DynamoDB."""
        import boto3

        kinesis = service == "kinesis"
        return boto3.client(
            service,
            endpoint_url=self.kinesis if kinesis else self.dynamodb,
            region_name=self.region,
            verify=self.kinesis_ca_bundle if kinesis else None,
            **LOCAL_CREDENTIALS,
        )


def write(state_dir: Path, endpoints: Endpoints) -> Path:
    """Atomically, so a tool never reads half a file."""
    path = state_dir / FILE
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(asdict(endpoints), indent=2) + "\n")
    partial.replace(path)
    return path


def remove(state_dir: Path) -> None:
    (state_dir / FILE).unlink(missing_ok=True)


def find(state_dir: Path | None = None) -> Endpoints | None:
    """The endpoints of the stack running from ``state_dir`` (default ``.local/stack``), or
    None when none runs there."""
    directory = state_dir or DEFAULT_STATE_DIR
    pids = PidFile.read(directory / "pids.json")
    if pids is None or not pids.launcher.alive():
        return None
    try:
        data = json.loads((directory / FILE).read_text())
        found = Endpoints(**data)
    except (OSError, ValueError, TypeError):
        return None  # not written yet (the producer is starting), or another format
    return found if found.run == pids.run else None


def none_running(state_dir: Path | None) -> str:
    """What a tool says when it finds no stack."""
    return (
        f"no local stack is running from {state_dir or DEFAULT_STATE_DIR} (make run starts "
        "one; --state-dir names another's)"
    )
