"""Waiting for something that happens in another process or thread: the one polling helper.

``eventually(check, timeout=..., interval=..., what=...)`` calls ``check()`` every ``interval``
seconds until its value is what was awaited (truthy, or ``until(value)``), and returns that
value. After ``timeout`` seconds it fails (``AssertionError``) saying what it waited for, for
how long, and the last value ``check()`` returned (or the last exception it raised among the
``ignoring`` ones). Any other exception from ``check()`` fails at once: a check asserts what
must hold while waiting (``assert proc.poll() is None, "chromium exited"``).

``eventually_async`` is the same inside a coroutine: it sleeps with ``asyncio.sleep``, so the
tasks the test started (traffic, senders) keep running while it waits; ``check`` itself is
called as it is (a blocking one in a thread with ``in_thread=True``).

Never to measure speed: a timeout is a bound far above the expected time on a busy machine.
"""

from __future__ import annotations

import asyncio
import reprlib
import time
from collections.abc import Callable, Sized
from typing import Any, TypeVar

T = TypeVar("T")

_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 300, 300, 10, 10
_SHORT.maxlevel = 3


def _truthy(value: Any) -> bool:
    return bool(value)


class _Waiting:
    """One wait: its deadline, its last value, its failure message."""

    def __init__(self, timeout: float, what: str | Callable[[], str]) -> None:
        self.started = time.monotonic()
        self.timeout = timeout
        self.what = what
        self.last: str = "nothing yet (check() never returned)"

    def over(self) -> bool:
        return time.monotonic() - self.started >= self.timeout

    def seen(self, value: Any) -> None:
        self.last = _SHORT.repr(value)
        if isinstance(value, Sized) and not isinstance(value, str | bytes):
            self.last = f"({len(value)} of them) {self.last}"

    def raised(self, error: BaseException) -> None:
        self.last = f"{type(error).__name__}: {_SHORT.repr(str(error))[1:-1]}"

    def failure(self) -> AssertionError:
        what = self.what() if callable(self.what) else self.what
        waited = time.monotonic() - self.started
        return AssertionError(
            f"timed out after {waited:.1f} s (timeout {self.timeout:g} s) waiting for {what}; "
            f"last seen: {self.last}"
        )


def eventually(
    check: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.5,
    what: str | Callable[[], str],
    until: Callable[[T], bool] = _truthy,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """``check()``'s first value that ``until`` accepts, polled every ``interval`` seconds for up
    to ``timeout`` seconds (checked at least once, and once more at the deadline); ``what`` (a
    text, or a function giving one when it fails: a log's tail) names what is awaited."""
    waiting = _Waiting(timeout, what)
    while True:
        try:
            value = check()
        except ignoring as error:
            waiting.raised(error)
        else:
            if until(value):
                return value
            waiting.seen(value)
        if waiting.over():
            raise waiting.failure()
        time.sleep(interval)


async def eventually_async(
    check: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.5,
    what: str | Callable[[], str],
    until: Callable[[T], bool] = _truthy,
    ignoring: tuple[type[BaseException], ...] = (),
    in_thread: bool = False,
) -> T:
    """``eventually`` in a coroutine: the event loop runs on while it waits; ``in_thread`` calls
    a blocking ``check`` (boto3, subprocess) in a thread, as ``asyncio.to_thread`` does."""
    waiting = _Waiting(timeout, what)
    while True:
        try:
            value = await asyncio.to_thread(check) if in_thread else check()
        except ignoring as error:
            waiting.raised(error)
        else:
            if until(value):
                return value
            waiting.seen(value)
        if waiting.over():
            raise waiting.failure()
        await asyncio.sleep(interval)
