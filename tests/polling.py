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
import functools
import reprlib
import time
from collections.abc import Callable, Sized
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")

_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 300, 300, 10, 10
_SHORT.maxlevel = 3


def _truthy(value: Any) -> bool:
    return bool(value)


def _attempt(
    check: Callable[[], T], ignoring: tuple[type[BaseException], ...]
) -> tuple[T | None, BaseException | None]:
    """One call of ``check``: its value, or the ignored exception it raised."""
    try:
        return check(), None
    except ignoring as error:
        return None, error


class _Waiting(Generic[T]):
    """One wait: its deadline, what it accepts, the last value seen, its failure message."""

    def __init__(
        self, timeout: float, what: str | Callable[[], str], until: Callable[[T], bool]
    ) -> None:
        self.started = time.monotonic()
        self.timeout, self.what, self.until = timeout, what, until
        self.value: T | None = None
        self.last = "nothing yet (check() never returned)"

    def settled(self, attempt: tuple[T | None, BaseException | None]) -> bool:
        """Whether the attempt's value is the one awaited (kept in ``value``); raises the
        failure once the time is up."""
        value, error = attempt
        if error is not None:
            self.last = f"{type(error).__name__}: {_SHORT.repr(str(error))[1:-1]}"
        elif self.until(cast(T, value)):  # no error: check() returned a T
            self.value = value
            return True
        else:
            self.last = _SHORT.repr(value)
            if isinstance(value, Sized) and not isinstance(value, str | bytes):
                self.last = f"({len(value)} of them) {self.last}"
        if time.monotonic() - self.started >= self.timeout:
            raise self.failure()
        return False

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
    waiting = _Waiting(timeout, what, until)
    while not waiting.settled(_attempt(check, ignoring)):
        time.sleep(interval)
    return cast(T, waiting.value)  # settled: until() accepted it


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
    waiting = _Waiting(timeout, what, until)
    attempt = functools.partial(_attempt, check, ignoring)
    while not waiting.settled(await asyncio.to_thread(attempt) if in_thread else attempt()):
        await asyncio.sleep(interval)
    return cast(T, waiting.value)  # settled: until() accepted it
