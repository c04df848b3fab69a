"""Time under the test's control, in one place.

``FakeClock``: for code that takes its clock (and its ``sleep``) as an argument; the test moves
the time itself, so a minute passes at once and exactly.

``VirtualTimeLoop`` (``run``): for asyncio code, an event loop whose clock jumps to the next
timer whenever nothing is ready to run, so seconds of producer time (TTLs, rate limits,
backoff) pass in milliseconds and come out the same on a busy machine as on an idle one.
Only for code whose waiting is all on the loop (timers, futures): blocking calls must not go
to threads (the collector takes a ``call`` that runs them on the loop, see ``in_loop``). A
loop that would wait forever (nothing scheduled, nothing ready) raises instead of hanging, and
one given a ``wall_limit`` raises once it has run that long in real time (code that keeps
setting timers a hair ahead never idles: it spins, and would hold the suite).
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class FakeClock:
    """A clock that moves only when the test moves it. Called, it gives the time (in place of
    ``time.monotonic`` or ``time.time``); ``now`` may be set; ``advance`` moves it on;
    ``sleep`` (in place of ``time.sleep``) moves it on at once and records how long in
    ``sleeps``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class WouldHang(RuntimeError):
    """Nothing is ready and no timer is set: a real loop would wait forever here."""


class TookTooLong(RuntimeError):
    """The run went on past its ``wall_limit`` of real time."""


class _JumpingSelector(selectors.SelectSelector):
    def __init__(self, loop: VirtualTimeLoop, wall_limit: float | None) -> None:
        super().__init__()
        self._loop = loop
        self._until = None if wall_limit is None else time.monotonic() + wall_limit
        self._limit = wall_limit

    def select(self, timeout: float | None = None) -> list[Any]:
        # every turn of the loop passes here: raised here, it ends the run (raised in a
        # callback, asyncio would log it and go on)
        if self._until is not None and time.monotonic() > self._until:
            raise TookTooLong(
                f"still running after {self._limit:g} s of real time, at virtual time "
                f"{self._loop.now:.9f}"
            )
        ready = super().select(0)  # the loop's own wake-up pipe
        if ready or self._loop.has_ready():
            return ready
        if timeout is None:
            raise WouldHang("the event loop would wait forever: nothing is scheduled")
        # at least a microsecond, as on a real clock: a timer set a rounding error ahead must
        # not keep time standing still
        self._loop.now += max(timeout, 1e-6)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, wall_limit: float | None = None) -> None:
        self.now = 1000.0
        super().__init__(_JumpingSelector(self, wall_limit))
        # timers fire when their time has come, not a clock resolution early (time would not
        # move on for a timer set a rounding error ahead)
        self._clock_resolution = 0.0

    def time(self) -> float:
        return self.now

    def has_ready(self) -> bool:
        return bool(self._ready)  # type: ignore[attr-defined]  # asyncio's private run queue


def run(main: Coroutine[Any, Any, T], wall_limit: float | None = None) -> T:
    """``asyncio.run`` on virtual time; ``TookTooLong`` after ``wall_limit`` real seconds."""
    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(wall_limit)) as runner:
        return runner.run(main)


def in_loop(latency: float = 0.0) -> Callable[..., Awaitable[Any]]:
    """A ``call`` for the collector: the (fake, non-blocking) client call runs on the loop,
    halfway through ``latency`` virtual seconds of round trip."""

    async def call(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        await asyncio.sleep(latency / 2)
        result = fn(*args, **kwargs)
        await asyncio.sleep(latency / 2)
        return result

    return call
