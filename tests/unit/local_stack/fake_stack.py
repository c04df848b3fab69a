"""``python -m tests.unit.local_stack.fake_stack STATE_DIR [failing|crash]``: a stand-in for the
local stack whose services are cheap Python processes shaped like the real ones, run through
the real launcher loop (``local_stack.launcher.run``) and supervisor. The launcher tests
signal it, SIGKILL it and read its pid file.

- ``polite`` stops on SIGTERM and says so in its log (the producer, the scaler);
- ``stubborn`` ignores SIGTERM (kinesis-mock); its grace is ``FAKE_GRACE`` seconds;
- ``parent`` starts a child of its own that ignores SIGTERM and SIGHUP (the KCL daemon and
  its record processors);
- with ``failing``, ``failing`` prints "boom" and exits 70 at once, every time;
- with ``crash``, the supervision loop raises after a few rounds (a bug in the launcher).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from local_stack.launcher import run
from local_stack.supervisor import RestartPolicy, Supervisor

PY = sys.executable
POLITE = (
    "import signal, sys, time\n"
    "def stop(*_):\n    print('got SIGTERM', flush=True)\n    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, stop)\ntime.sleep(600)\n"
)
STUBBORN = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)\n"
GRANDCHILD = (
    "import signal, time\n"
    "for sig in (signal.SIGTERM, signal.SIGHUP):\n    signal.signal(sig, signal.SIG_IGN)\n"
    "time.sleep(600)\n"
)
PARENT = f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {GRANDCHILD!r}])\n"
PARENT += "time.sleep(600)\n"
FAILING = "print('boom', flush=True)\nraise SystemExit(70)\n"


class FakeStack(Supervisor):
    def __init__(self, state_dir: Path, scenario: str) -> None:
        policy = RestartPolicy(first_delay=0.1, max_delay=0.4, healthy_after=30, max_quick_exits=3)
        super().__init__(state_dir, policy)
        self.scenario = scenario
        self.rounds = 0

    def start(self) -> None:
        self.begin()
        grace = float(os.environ.get("FAKE_GRACE", "1"))
        self.spawn("polite", [PY, "-c", POLITE], os.environ, grace=5)
        self.spawn("stubborn", [PY, "-c", STUBBORN], os.environ, grace=grace)
        self.spawn("parent", [PY, "-c", PARENT], os.environ, grace=1)
        if self.scenario == "failing":
            self.spawn("failing", [PY, "-c", FAILING], os.environ)

    def supervise(self) -> list[str]:
        self.rounds += 1
        if self.scenario == "crash" and self.rounds > 5:
            raise RuntimeError("a bug in the launcher")
        return super().supervise()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    state_dir, scenario = Path(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "")
    stack = FakeStack(state_dir, scenario)

    def ready() -> None:
        time.sleep(0.5)  # the parent has started its child
        sys.stderr.write("ready\n")

    return run(stack, ready, interval=0.1)


if __name__ == "__main__":
    sys.exit(main())
