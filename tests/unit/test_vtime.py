"""The virtual-time loop (``tests/vtime.py``) when the code under test never finishes."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests import vtime


async def spin() -> None:
    """A loop that keeps setting a timer a hair ahead: virtual time creeps on, nothing ends."""
    while True:
        await asyncio.sleep(1e-9)


def test_a_run_that_spins_fails_at_its_wall_limit_instead_of_holding_the_suite() -> None:
    # GIVEN code that sets timers for ever without finishing (never idle, so no WouldHang)
    started = time.monotonic()
    # WHEN it runs on virtual time with a limit of real time
    # THEN it fails at the limit, saying how far virtual time got
    with pytest.raises(vtime.TookTooLong, match="real time"):
        vtime.run(spin(), wall_limit=0.5)
    assert time.monotonic() - started < 5


def test_a_run_within_its_wall_limit_returns_its_result() -> None:
    async def work() -> float:
        await asyncio.sleep(3600)  # an hour of virtual time, at once
        return asyncio.get_running_loop().time()

    assert vtime.run(work(), wall_limit=5) == pytest.approx(1000.0 + 3600, abs=1e-3)
