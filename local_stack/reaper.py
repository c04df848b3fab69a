"""``python -m local_stack.reaper PID_FILE RUN``: ends a stack run's processes once its launcher
is gone, however it went (Ctrl-C, SIGTERM, SIGKILL, a crash).

The launcher starts it with a pipe on stdin and never writes to it: end of file means the
launcher closed it (after its own clean stop, when there is nothing left to do) or died.
Then every live process of run ``RUN`` is SIGKILLed: the marked ones (``ownership.RUN_VARIABLE``,
which covers what the services started themselves, like the KCL's record processors) and the
recorded ones that are still the processes recorded. A pid file already rewritten by a later
run is left alone.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from local_stack.ownership import PidFile


def main() -> int:
    pid_file, run = Path(sys.argv[1]), sys.argv[2]
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # only the launcher's end ends it
    sys.stdin.buffer.read()
    record = PidFile.read(pid_file)
    if record is None or record.run != run:
        return 0
    ended = record.end()
    if ended:
        names = ", ".join(f"{name} (pid {pid})" for pid, name in sorted(ended.items()))
        sys.stderr.write(f"launcher pid {record.launcher.pid} is gone: ended {names}\n")
    if not record.members():
        pid_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
