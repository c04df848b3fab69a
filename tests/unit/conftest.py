"""Unit-level fixtures. One real DynamoDB Local for the session (only started when a test asks
for it): its answers are the oracle for the storability contract and the bisecting writer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local_stack.ephemeral import EphemeralDynamoDB


@pytest.fixture(scope="session")
def dynamodb_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EphemeralDynamoDB]:
    """DynamoDB Local in memory on a free port, with the tables ``records`` and ``quarantine``."""
    with EphemeralDynamoDB(tmp_path_factory.mktemp("dynamodb-local")) as server:
        for table in ("records", "quarantine"):
            server.create_table(table)
        yield server
