"""``python -m local_stack`` (what ``make run`` runs; options: ``make run ARGS='...'``): the
pipeline on this machine in the foreground, supervised, until Ctrl-C or SIGTERM (see
``local_stack.launcher``).

Every port is checked before anything starts; each stage is reported as it completes (the
emulators, the stream and tables, the producer, the KCL's leases and record processors), then
one record posted through the producer is looked for in DynamoDB ("first record stored N s
after start"). The endpoints go to <state dir>/endpoints.json, where the tools find them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from local_stack.launcher import run
from local_stack.stack import LocalStack, StackConfig

DASHBOARD_PORT = 8090


def _arguments(argv: list[str] | None) -> tuple[StackConfig, float | None]:
    defaults = StackConfig()
    parser = argparse.ArgumentParser(
        prog="python -m local_stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=defaults.state_dir,
        help="certificates, logs, pid and endpoints files (%(default)s)",
    )
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
        parser.add_argument(
            flag, type=int, default=getattr(defaults, name), help="default %(default)s"
        )
    parser.add_argument(
        "--dashboard-port", type=int, default=DASHBOARD_PORT, help="the live dashboard; 0: none"
    )
    parser.add_argument(
        "--no-first-record",
        action="store_true",
        help="do not post a record of its own at start (to see when the first one is stored)",
    )
    parser.add_argument("--started-at", type=float, help=argparse.SUPPRESS)  # make run's start
    args = parser.parse_args(argv)
    config = StackConfig(
        state_dir=args.state_dir,
        shard_count=args.shards,
        stream_name=args.stream,
        retrieval_mode=args.retrieval_mode,
        scaler=args.scaler,
        kinesis_tls_port=args.kinesis_tls_port,
        kinesis_plain_port=args.kinesis_plain_port,
        dynamodb_port=args.dynamodb_port,
        producer_port=args.producer_port,
        dashboard_port=args.dashboard_port,
        first_record=not args.no_first_record,
    )
    return config, args.started_at


def main(argv: list[str] | None = None) -> int:
    config, started_at = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    started = started_at if started_at and started_at <= time.time() else time.time()

    def say(text: str) -> None:
        sys.stderr.write(f"[{time.time() - started:5.1f} s] {text}\n")
        sys.stderr.flush()

    stack = LocalStack(config, progress=say, started_at=started)
    sys.stderr.write(f"starting the local stack from {config.state_dir} (Ctrl-C stops it)\n")

    key_note = ", header X-Api-Key: $PRODUCER_API_KEY" if config.api_key else ""

    def ready() -> None:
        dashboard = stack.dashboard.url if stack.dashboard else "off (--dashboard-port 0)"
        sys.stderr.write(
            f"\nready in {stack.elapsed():.0f}s\n"
            f'  producer        {config.producer_url}/  (POST {{"data": ...}}){key_note}\n'
            f"  kinesis-mock    {config.kinesis_https} (TLS), {config.kinesis_http}\n"
            f"  DynamoDB Local  {config.dynamodb_url}  table '{config.records_table}'\n"
            f"  stream          {config.stream_name} ({config.shard_count} shards)\n"
            f"  shard scaler    {config.scaler} (decisions in logs/scaler.log)\n"
            f"  CloudWatch      {stack.observed.cloudwatch_url} (outputs.json: the stack "
            "outputs, for python -m infra.smoke --local)\n"
            f"  dashboard       {dashboard}\n"
            f"  logs            {config.state_dir / 'logs'}\n"
            f"  endpoints       {config.state_dir / 'endpoints.json'} (loadgen, items and "
            "replay --local read it)\n"
            "A service that exits is restarted; Ctrl-C stops everything (twice: at once).\n"
        )

    try:
        return run(stack, ready)
    except KeyboardInterrupt:  # a stop signal while a failure was being reported
        return 1
    finally:
        sys.stderr.write("stopped.\n")


if __name__ == "__main__":
    sys.exit(main())
