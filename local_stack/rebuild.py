"""``python -m local_stack.rebuild --from MOMENT``: rebuild the records table of the running
local stack from the stream, as ``pulumi config set rebuildFrom MOMENT`` does in AWS.

With the stack running (``make run``, in another terminal), this creates the rebuild
application's three KCL tables and fan-out consumer (``consumer.rebuild``: a second application
named for the moment, starting AT_TIMESTAMP), runs its KCL worker against the stack (its calls
recorded like the other services'), waits until it has read every shard up to the moment this
command started (``consumer.rebuild.progress``), then stops the worker and removes its tables
and consumer, as removing ``rebuildFrom`` does. Records are upserted by id: the ones already
in the table are overwritten with the same item, none is duplicated. Its log:
``<state-dir>/logs/rebuild.log``. Exit status 0 once caught up; 1 on timeout; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from consumer.rebuild import parse_moment, rebuild_application, wait
from local_stack.observed import create_kcl_application, delete_kcl_application
from local_stack.ownership import RUN_VARIABLE
from local_stack.processes import ManagedProcess, StartupError
from local_stack.stack import CONSUMER_GRACE, ROOT, LocalStack, StackConfig


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local_stack.rebuild",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--from",
        dest="since",
        required=True,
        type=parse_moment,
        help="where to read from: ISO 8601 with a zone, or epoch seconds",
    )
    parser.add_argument("--state-dir", type=Path, default=StackConfig().state_dir)
    parser.add_argument("--timeout", type=float, default=900, help="seconds (default 900)")
    parser.add_argument(
        "--keep", action="store_true", help="leave the rebuild's tables and fan-out consumer"
    )
    args = parser.parse_args(argv)
    until = datetime.now(UTC)
    try:
        stack = LocalStack.attach(args.state_dir)
    except StartupError as exc:
        _say(str(exc))
        return 1
    cfg = stack.config
    application = rebuild_application(cfg.application_name, args.since)
    fan_out = cfg.retrieval_mode == "FANOUT"
    kinesis, ddb = stack.client("kinesis"), stack.client("dynamodb")
    _say(
        f"rebuilding {cfg.records_table} from {args.since.isoformat()} to {until.isoformat()} "
        f"as {application} ({cfg.retrieval_mode})"
    )
    create_kcl_application(ddb, kinesis, cfg.stream_name, application, fan_out)
    worker = ManagedProcess(
        "rebuild",
        [sys.executable, "-m", "consumer"],
        # the stack's run id: if the stack goes, its reaper ends this worker too
        {**stack.full_env(stack.rebuild_env(args.since)), RUN_VARIABLE: stack.run},
        cfg.state_dir / "logs" / "rebuild.log",
        grace=CONSUMER_GRACE,
        cwd=ROOT,
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    code = 1
    started = time.monotonic()
    try:
        worker.start()
        shards = wait(
            kinesis, ddb, cfg.stream_name, application, args.since, until, args.timeout, say=_say
        )
        code = 0 if shards and all(s.done for s in shards) else 1
        for shard in shards:
            _say(f"  {shard.shard_id}: {'done' if shard.done else 'NOT done'} ({shard.detail})")
        _say(
            f"{'caught up' if code == 0 else 'timed out'} after {time.monotonic() - started:.0f} s"
        )
    except KeyboardInterrupt:
        code = 130
    finally:
        worker.stop()  # SIGTERM: its processors checkpoint, the JVM ends
        if not args.keep:
            delete_kcl_application(ddb, kinesis, cfg.stream_name, application, fan_out)
            _say(f"removed {application}'s tables" + (" and fan-out consumer" if fan_out else ""))
    return code


if __name__ == "__main__":
    sys.exit(main())
