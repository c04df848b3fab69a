"""``python -m local_stack``: run the pipeline in the foreground, supervised, until Ctrl-C or
SIGTERM (see ``local_stack.launcher``)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from local_stack.dashboard import DashboardServer, for_stack
from local_stack.launcher import run
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


def main() -> int:
    dashboard_port, config = _arguments()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    stack = LocalStack(config)
    say = sys.stderr.write
    say("starting the local stack (the KCL takes one to two minutes to lease its shards)...\n")
    started = time.monotonic()
    dashboard: DashboardServer | None = None

    def ready() -> None:
        nonlocal dashboard
        if dashboard_port:
            dashboard = for_stack(stack, dashboard_port)
            dashboard.start()
        say(
            f"\nready in {time.monotonic() - started:.0f}s\n"
            f'  producer        {config.producer_url}/  (POST {{"data": ...}})\n'
            f"  kinesis-mock    {config.kinesis_https} (TLS), {config.kinesis_http}\n"
            f"  DynamoDB Local  {config.dynamodb_url}  table '{config.records_table}'\n"
            f"  stream          {config.stream_name} ({config.shard_count} shards)\n"
            f"  shard scaler    {config.scaler} (decisions in logs/scaler.log)\n"
            f"  CloudWatch      {stack.observed.cloudwatch_url} (outputs.json: the stack "
            "outputs, for python -m infra.smoke --local)\n"
            f"  dashboard       {dashboard.url if dashboard else 'off'}\n"
            f"  logs            {config.state_dir / 'logs'}\n"
            "A service that exits is restarted; Ctrl-C stops everything (twice: at once).\n"
        )

    try:
        return run(stack, ready)
    except OSError as exc:  # the dashboard's port is taken
        say(f"the dashboard cannot listen on 127.0.0.1:{dashboard_port}: {exc}\n")
        return 1
    except KeyboardInterrupt:  # a stop signal while a failure was being reported
        return 1
    finally:
        if dashboard is not None:
            dashboard.stop()
        say("stopped.\n")


if __name__ == "__main__":
    sys.exit(main())
