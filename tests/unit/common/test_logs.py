"""JSON-lines logging to an injectable stream."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from common.logs import configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging("consumer", buffer, level="INFO")
    yield buffer
    root.handlers[:], root.level = handlers, level


def test_one_json_object_a_line_with_extras(stream: io.StringIO) -> None:
    # GIVEN logging configured for the consumer
    # WHEN a module logs with extra fields
    logging.getLogger("consumer.test").warning("hello %s", "world", extra={"shard_id": "s-1"})
    # THEN one JSON line carries when, how bad, who, where, what, and the extras
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["service"] == "consumer"
    assert entry["message"] == "hello world"
    assert entry["shard_id"] == "s-1"
    assert entry["location"].startswith("test_logs:test_one_json_object_a_line_with_extras:")
    assert datetime.fromisoformat(entry["timestamp"]).utcoffset() == timedelta(0)


def test_level_filters_and_exceptions_are_included(stream: io.StringIO) -> None:
    log = logging.getLogger("consumer.test")
    log.debug("not shown")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert "ValueError: boom" in entry["exception"]
