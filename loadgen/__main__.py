"""``python -m loadgen``: send records at a rate to the local stack or a deployed endpoint, with a
progress bar, then a summary: sent, acknowledged, rejected, stored, latency percentiles.

    python -m loadgen --rate 500 --duration 60 --shape orders
    python -m loadgen --url https://ingest.example.com --api-key "$KEY" --rate 2000 \\
        --count 100000 --batch 100 --table my-stack-records

Without ``--url`` it sends to the local stack running from ``--state-dir`` (default
``.local/stack``, where ``make run`` keeps it), found through its endpoints file, whatever its
ports. "Stored" reads the records table (that stack's DynamoDB Local for a local URL, with the
AWS credentials in the environment for a deployed one) until every acknowledged id is there or
``--wait-stored`` seconds passed; ``--no-check-stored`` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any, TextIO

from loadgen.run import Plan, Tally, send
from loadgen.shapes import SHAPES
from loadgen.stored import count_stored
from local_stack import endpoints

LOCAL_DYNAMODB = "http://127.0.0.1:8000"


def is_local(url: str) -> bool:
    """A URL on this machine: localhost, 127.0.0.0/8 or ::1."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadgen", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--url", help="the producer (default: the running local stack's)")
    parser.add_argument("--state-dir", type=Path, help="the local stack's (default .local/stack)")
    parser.add_argument("--rate", type=float, default=100, help="records per second")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--duration", type=float, help="seconds to send for (default 10)")
    amount.add_argument("--count", type=int, help="records to send")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="mixed")
    parser.add_argument("--batch", type=int, default=1, help="records per request (>1: /batch)")
    parser.add_argument("--concurrency", type=int, default=256, help="requests in flight at most")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("PRODUCER_API_KEY") or None,
        help="sent as X-Api-Key (default: $PRODUCER_API_KEY, as `make run` was given)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--table", help="the records table, to count stored (default: records)")
    parser.add_argument(
        "--dynamodb-endpoint",
        help="DynamoDB endpoint (default: the local stack's for a local --url, else AWS)",
    )
    parser.add_argument("--region", help="for the table (default: the stack's, or us-east-1)")
    parser.add_argument("--wait-stored", type=float, default=120, help="seconds, at most")
    parser.add_argument("--no-check-stored", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.batch < 1 or args.batch > 500 or args.concurrency < 1:
        parser.error("--rate must be > 0, --batch 1..500, --concurrency >= 1")
    if args.count is None:
        args.count = max(1, round(args.rate * (args.duration or 10)))
    if args.count < 1:
        parser.error("--count must be >= 1")
    _where(parser, args)
    return args


def _where(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill in the URL, table, region and DynamoDB endpoint: a local URL's records are in the
    running stack's DynamoDB Local (never in AWS), a deployed URL's in AWS."""
    found = endpoints.find(args.state_dir)
    if args.url is None:
        if found is None:
            parser.error(endpoints.none_running(args.state_dir) + "; or give --url")
        args.url = found.producer
    local = is_local(args.url)
    if local and found is not None and _port(args.url) != _port(found.producer):
        found = None  # another stack than the one found: only the default ports are known
    args.table = args.table or (found.records_table if found else "records")
    args.region = args.region or (found.region if found else "us-east-1")
    if args.dynamodb_endpoint is None and local:
        args.dynamodb_endpoint = found.dynamodb if found else LOCAL_DYNAMODB


def _port(url: str) -> int | None:
    parts = urllib.parse.urlsplit(url)
    return parts.port or {"http": 80, "https": 443}.get(parts.scheme)


class ProgressBar:
    """A bar on a terminal (redrawn in place), a line every 5 s elsewhere (logs, CI)."""

    def __init__(self, out: TextIO, planned: int) -> None:
        self.out, self.planned = out, planned
        self.tty = out.isatty()
        self._last_line = 0.0

    def __call__(self, tally: Tally) -> None:
        done = tally.sent / max(self.planned, 1)
        rate = tally.sent / max(tally.elapsed, 1e-9)
        p99 = tally.percentile(99)
        text = (
            f"{tally.sent:>9,}/{self.planned:,} sent  {rate:7,.0f}/s  acked {tally.acked:,}"
            f"  rejected {sum(tally.rejected.values()):,}  failed {tally.failed:,}"
        )
        if p99 is not None:
            text += f"  p99 {p99:,.0f} ms"
        if self.tty:
            width = 30
            bar = "#" * int(done * width) + "." * (width - int(done * width))
            self.out.write(f"\r[{bar}] {done:4.0%} {text}")
            if tally.ended is not None:
                self.out.write("\n")
        elif tally.ended is not None or time.monotonic() - self._last_line >= 5:
            self._last_line = time.monotonic()
            self.out.write(f"{done:4.0%} {text}\n")
        self.out.flush()


def summary(plan: Plan, tally: Tally, stored: int | None, stored_note: str) -> dict[str, Any]:
    def ms(p: float) -> float | None:
        value = tally.percentile(p)
        return None if value is None else round(value, 1)

    return {
        "url": plan.url,
        "shape": plan.shape,
        "target_rate": plan.rate,
        "achieved_rate": round(tally.sent / max(tally.elapsed, 1e-9), 1),
        "seconds": round(tally.elapsed, 1),
        "sent": tally.sent,
        "acknowledged": tally.acked,
        "rejected": sum(tally.rejected.values()),
        "rejected_by": dict(tally.rejected),
        "failed": tally.failed,
        "failed_by": dict(tally.failed_by),
        "stored": stored,
        "stored_note": stored_note,
        "latency_ms": {"p50": ms(50), "p90": ms(90), "p99": ms(99), "max": ms(100)},
    }


def _print_table(result: dict[str, Any], out: TextIO) -> None:
    latency = result["latency_ms"]
    rows = [
        (
            "sent",
            f"{result['sent']:,} records in {result['seconds']} s "
            f"({result['achieved_rate']:,}/s, target {result['target_rate']:,}/s)",
        ),
        ("acknowledged", f"{result['acknowledged']:,}"),
        ("rejected", f"{result['rejected']:,} {result['rejected_by'] or ''}".strip()),
        ("failed", f"{result['failed']:,} (no answer) {result['failed_by'] or ''}".strip()),
        (
            "stored",
            f"{result['stored']:,} {result['stored_note']}".strip()
            if result["stored"] is not None
            else result["stored_note"],
        ),
        (
            "latency",
            "  ".join(f"{k} {v} ms" for k, v in latency.items())
            if latency["p50"] is not None
            else "n/a (nothing acknowledged)",
        ),
    ]
    for name, value in rows:
        out.write(f"{name:>13}  {value}\n")


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    plan = Plan(
        args.url.rstrip("/"),
        args.rate,
        args.count,
        args.shape,
        args.batch,
        args.concurrency,
        args.api_key,
        args.seed,
    )
    tally = asyncio.run(send(plan, ProgressBar(sys.stderr, plan.count)))
    stored, note = None, "not checked (--no-check-stored)"
    if not args.no_check_stored:
        stored, note = count_stored(
            tally.ids, args.table, args.dynamodb_endpoint, args.region, args.wait_stored
        )
    result = summary(plan, tally, stored, note)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        _print_table(result, sys.stdout)
    complete = tally.acked == tally.sent and (stored is None or stored == tally.acked)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
