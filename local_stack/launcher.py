"""The foreground loop of ``python -m local_stack``: start, supervise, stop on every way out.

The first SIGINT (Ctrl-C), SIGTERM or SIGHUP stops the stack in order, each process within its
grace; any further one SIGKILLs every process at once. A service that cannot be kept running
stops the stack too (exit status 1), as does a crash of this loop (the exception propagates
after the stop). If this process itself is SIGKILLed, its children get SIGKILL from the kernel
(``PR_SET_PDEATHSIG``) and the reaper ends the rest.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Protocol

from local_stack.processes import StartupError
from local_stack.supervisor import ServiceFailed

log = logging.getLogger("local_stack")
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Foreground(Protocol):
    def start(self) -> None: ...
    def supervise(self) -> list[str]: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...


class Stop(KeyboardInterrupt):
    """The first stop signal (a KeyboardInterrupt, so no ``except Exception`` swallows it)."""


def _say(text: str) -> None:
    os.write(2, text.encode())  # from a signal handler: no locks (logging takes one)


def run(stack: Foreground, on_ready: Callable[[], None], interval: float = 0.5) -> int:
    """Start ``stack``, call ``on_ready``, supervise until a stop signal (0) or a failure (1)."""

    def now(signum: int, _frame: object) -> None:
        _say(f"\n{signal.Signals(signum).name} again: killing every process now\n")
        stack.kill()

    def first(signum: int, _frame: object) -> None:
        for sig in SIGNALS:
            signal.signal(sig, now)
        _say(f"\n{signal.Signals(signum).name}: stopping (Ctrl-C again kills everything now)\n")
        raise Stop(signal.Signals(signum).name)

    for sig in SIGNALS:
        signal.signal(sig, first)
    code = 1
    try:
        stack.start()
        on_ready()
        while True:
            for event in stack.supervise():
                log.warning("%s", event)
            time.sleep(interval)
    except Stop:
        code = 0
    except ServiceFailed as exc:
        log.error("%s\nstopping the stack", exc)
    except StartupError as exc:
        log.error("the local stack did not start: %s", exc)
    finally:
        for sig in SIGNALS:
            signal.signal(sig, now)  # from here on, a signal means "now"
        stack.stop()
    return code
