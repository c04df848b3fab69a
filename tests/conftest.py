"""What every kind of test shares (unit, integration, infra, install).

- Each test gets the kind of its directory as a marker (``-m unit``, ``-m "not integration"``),
  so a test file needs no ``pytestmark`` of its own to be selected by kind.
- The root logger is put back after each test: an entry point run in-process
  (``configure_logging``) points it at the test's captured stderr, which pytest closes after
  the test, and a later test that logs would then fail on a closed file. Which test ran
  before must never matter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
KINDS = ("unit", "integration", "infra", "install")  # the directories under tests/


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = item.path.relative_to(TESTS).parts[0] if item.path.is_relative_to(TESTS) else ""
        if kind in KINDS:
            item.add_marker(kind)


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level
