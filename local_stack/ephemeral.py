"""DynamoDB Local alone, on a free ephemeral port: for the tests and benchmarks that need the
real server (its answers are the oracle for the storability contract) but not the whole stack.

Several local stacks may run on one machine at once, so the port is never a fixed one: the
kernel picks a free port, and a start that loses the port to someone else in between is tried
again on another. The server ends with the context, and with its owner however that ends (it
is started like the stack's processes: ``PR_SET_PDEATHSIG``, see ``local_stack.processes``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from local_stack.processes import ManagedProcess, StartupError, free_port, port_open, wait_until
from local_stack.stack import HOST, LOCAL_CREDENTIALS, ROOT, dynamodb_local_argv


class EphemeralDynamoDB:
    """DynamoDB Local (in memory) on a free port while the context lasts."""

    def __init__(self, log_dir: Path | None = None):
        self._log_dir = log_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.process: ManagedProcess | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def client(self, **config: Any) -> Any:
        """A low-level client for this server (any key works: ``-sharedDb``)."""
        return boto3.client(
            "dynamodb",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(**config),
        )

    def create_table(self, name: str) -> None:
        """A table keyed by the string ``id``, like the records and quarantine tables."""
        self.client().create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )

    def __enter__(self) -> EphemeralDynamoDB:
        if self._log_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="dynamodb-local-")
            self._log_dir = Path(self._tmp.name)
        env = {**os.environ, **LOCAL_CREDENTIALS}
        for attempt in range(3):
            self.port = free_port()
            log = self._log_dir / f"dynamodb-local-{self.port}.log"
            self.process = ManagedProcess(
                "dynamodb-local", dynamodb_local_argv(self.port), env, log, grace=10
            )
            self.process.start(cwd=ROOT)
            try:
                wait_until("DynamoDB Local", lambda: port_open(HOST, self.port), 60, self.process)
                return self
            except StartupError:
                self.process.stop()
                if attempt == 2:
                    self._cleanup()
                    raise
        raise AssertionError("unreachable")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.stop()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
