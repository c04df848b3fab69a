"""The tests' polling helper (``tests/polling.py``): what it returns, when it gives up, and what
its failure says. Files at the top of ``tests/unit`` test the tests' own shared modules."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.polling import eventually, eventually_async


def test_returns_the_first_value_that_is_awaited() -> None:
    # GIVEN a check whose values grow
    values = itertools.count()
    # WHEN polled until a value over 2 THEN that value comes back, the first such one
    assert (
        eventually(
            lambda: next(values),
            until=lambda n: n > 2,
            timeout=10,
            interval=0,
            what="a value over 2",
        )
        == 3
    )
    # AND without ``until``, the first truthy value
    falsy_then_an_answer: list[object] = ["", None, [], "here"]
    answers = iter(falsy_then_an_answer)
    assert eventually(lambda: next(answers), timeout=10, interval=0, what="an answer") == "here"


def test_fails_naming_what_it_awaited_and_the_last_value_seen() -> None:
    # GIVEN a check that never gets there
    values = itertools.count()
    # WHEN its time is up THEN the failure says what was awaited, for how long, the last value
    with pytest.raises(AssertionError) as failed:
        eventually(
            lambda: [next(values)] * 3,
            until=lambda v: v[0] < 0,
            timeout=0.2,
            interval=0.01,
            what="a negative count",
        )
    message = str(failed.value)
    assert "waiting for a negative count" in message and "timeout 0.2 s" in message
    last = int(message.split("last seen: (3 of them) [")[1].split(",")[0])
    assert last > 0  # polled more than once, the last value reported


def test_a_description_given_as_a_function_is_read_when_it_fails() -> None:
    log = ["starting"]
    with pytest.raises(AssertionError, match="the service; its log: starting, still starting"):
        eventually(
            lambda: log.append("still starting"),
            timeout=0.05,
            interval=0.01,
            what=lambda: f"the service; its log: {', '.join(log[:2])}",
        )


def test_ignored_exceptions_are_retried_and_reported_others_fail_at_once() -> None:
    # GIVEN a check that raises OSError twice, then answers
    calls = itertools.count()

    def connect() -> str:
        if next(calls) < 2:
            raise ConnectionRefusedError("refused")
        return "connected"

    # THEN OSError is waited out
    assert (
        eventually(connect, timeout=10, interval=0, what="a connection", ignoring=(OSError,))
        == "connected"
    )
    # AND when it never stops, the last one is in the failure
    with pytest.raises(AssertionError, match="last seen: ConnectionRefusedError: refused"):
        eventually(_refuse, timeout=0.05, interval=0.01, what="a connection", ignoring=(OSError,))
    # AND any other exception (an assertion of the check: a process died) ends it at once
    with pytest.raises(AssertionError, match="the server exited"):
        eventually(_server_exited, timeout=60, interval=0.01, what="the server")


def _refuse() -> str:
    raise ConnectionRefusedError("refused")


def _server_exited() -> bool:
    raise AssertionError("the server exited with 1")


def test_the_async_helper_lets_the_loop_run_while_it_waits() -> None:
    # GIVEN a task that sets a flag after a few turns of the loop
    async def scenario() -> int:
        done: list[int] = []

        async def later() -> None:
            await asyncio.sleep(0.05)
            done.append(7)

        task = asyncio.create_task(later())
        value = await eventually_async(lambda: done, timeout=10, interval=0.01, what="the flag")
        await task
        return value[0]

    # THEN it sees what the task did (a blocking wait would never see it)
    assert asyncio.run(scenario()) == 7
    # AND a blocking check can run in a thread, failing as the other one does
    with pytest.raises(AssertionError, match="waiting for nothing"):
        asyncio.run(
            eventually_async(lambda: 0, timeout=0.05, interval=0.01, what="nothing", in_thread=True)
        )
