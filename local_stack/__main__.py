"""``python -m local_stack``: run the pipeline in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from local_stack.dashboard import for_stack
from local_stack.processes import StartupError
from local_stack.stack import LocalStack, StackConfig

DASHBOARD_PORT = 8090


def _arguments() -> tuple[int, StackConfig]:
    defaults = StackConfig()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=defaults.state_dir)
    parser.add_argument("--shards", type=int, default=defaults.shard_count)
    parser.add_argument("--stream", default=defaults.stream_name)
    parser.add_argument(
        "--retrieval-mode", choices=("FANOUT", "POLLING"), default=defaults.retrieval_mode
    )
    parser.add_argument(
        "--scaler",
        choices=("off", "dry-run", "on"),
        default=defaults.scaler,
        help="the shard scaler: dry-run logs decisions; on reshards (use --retrieval-mode POLLING)",
    )
    for name in ("kinesis_tls_port", "kinesis_plain_port", "dynamodb_port", "producer_port"):
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, default=getattr(defaults, name))
    parser.add_argument(
        "--dashboard-port", type=int, default=DASHBOARD_PORT, help="the live dashboard; 0: none"
    )
    args = parser.parse_args()
    return args.dashboard_port, StackConfig(
        state_dir=args.state_dir,
        shard_count=args.shards,
        stream_name=args.stream,
        retrieval_mode=args.retrieval_mode,
        scaler=args.scaler,
        kinesis_tls_port=args.kinesis_tls_port,
        kinesis_plain_port=args.kinesis_plain_port,
        dynamodb_port=args.dynamodb_port,
        producer_port=args.producer_port,
    )


def _stop_on_signal(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    dashboard_port, config = _arguments()
    signal.signal(signal.SIGTERM, _stop_on_signal)
    stack = LocalStack(config)
    say = sys.stderr.write
    say("starting the local stack (the KCL takes one to two minutes to lease its shards)...\n")
    started = time.monotonic()
    try:
        with stack:
            dashboard = for_stack(stack, dashboard_port) if dashboard_port else None
            if dashboard is not None:
                dashboard.start()
            try:
                say(
                    f"\nready in {time.monotonic() - started:.0f}s\n"
                    f'  producer        {config.producer_url}/  (POST {{"data": ...}})\n'
                    f"  kinesis-mock    {config.kinesis_https} (TLS), {config.kinesis_http}\n"
                    f"  DynamoDB Local  {config.dynamodb_url}  table '{config.records_table}'\n"
                    f"  stream          {config.stream_name} ({config.shard_count} shards)\n"
                    f"  shard scaler    {config.scaler} (decisions in logs/scaler.log)\n"
                    f"  dashboard       {dashboard.url if dashboard else 'off'}\n"
                    f"  logs            {config.state_dir / 'logs'}\n"
                    "Ctrl-C stops everything.\n"
                )
                while not stack.failed():
                    time.sleep(1)
                for process in stack.failed():
                    say(f"{process.name} exited:\n{process.log_tail()}\n")
                return 1
            finally:
                if dashboard is not None:
                    dashboard.stop()
    except KeyboardInterrupt:
        say("stopping...\n")
        return 0
    except StartupError as exc:
        say(f"the local stack did not start: {exc}\n")
        return 1
    except OSError as exc:  # the dashboard's port is taken
        say(f"the dashboard cannot listen on 127.0.0.1:{dashboard_port}: {exc}\n")
        return 1
    finally:
        say("stopped.\n")


if __name__ == "__main__":
    sys.exit(main())
