"""``python -m infra.smoke``: after ``pulumi up``, is the pipeline really working?

Reads the stack outputs (``pulumi stack output --json`` in ``infra/``, or ``--outputs FILE``;
``--local`` reads the local stack's ``.local/stack/outputs.json``, whose endpoints it uses),
POSTs one record to the endpoint (with the API key: ``--api-key``, or the first key in the stack's
Secrets Manager secret), waits until the records table has it, then reports every
alarm's state and whether the KCL's lag metric (MillisBehindLatest, Operation=
ApplicationTracker, namespace = the application) exists in CloudWatch. Exit status 0 only when
the record was stored and the lag metric exists; alarms in ALARM are reported, not fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Literal

import boto3

from common.metric_catalog import KCL, KCL_APPLICATION_LAG

ROOT = Path(__file__).resolve().parent.parent
LOCAL_OUTPUTS = ROOT / ".local" / "stack" / "outputs.json"
LAG = {"Namespace": "", "MetricName": KCL["MillisBehindLatest"].name,
       "Dimensions": [{"Name": k, "Value": v} for k, v in KCL_APPLICATION_LAG.items()]}  # fmt: skip


def stack_outputs(path: Path | None) -> dict[str, Any]:
    if path is not None:
        return json.loads(path.read_text())
    done = subprocess.run(["pulumi", "stack", "output", "--json"], cwd=ROOT / "infra",
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout)


def _client(
    service: Literal["cloudwatch", "dynamodb", "kinesis", "secretsmanager"], outputs: dict[str, Any]
) -> Any:
    endpoint = outputs.get("endpoints", {}).get(service)
    verify = outputs.get("ca_bundle") if service == "kinesis" else None
    credentials = outputs.get("credentials", {})  # local stack only: its dummy key
    return boto3.client(service, region_name=outputs["region"], endpoint_url=endpoint,
                        verify=verify, **credentials)  # fmt: skip


def api_key_for(outputs: dict[str, Any], given: str | None) -> str | None:
    """The key to send: the one given, else the first in the stack's secret (the
    ``api_key_secret_arn`` output, ``{"keys": "k1,k2"}``), else none."""
    arn = outputs.get("api_key_secret_arn")
    if given or not arn:
        return given
    secret = _client("secretsmanager", outputs).get_secret_value(SecretId=arn)
    return str(json.loads(secret["SecretString"])["keys"].split(",")[0].strip())


def post_record(url: str, marker: str, api_key: str | None) -> str:
    body = json.dumps({"data": {"smoke": marker}}).encode()
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["X-Api-Key"] = api_key
    request = urllib.request.Request(url, body, headers, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return str(json.loads(response.read())["id"])


def wait_stored(ddb: Any, table: str, record_id: str, timeout: float) -> float | None:
    """Seconds until the item was there, or None."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        item = ddb.get_item(TableName=table, Key={"id": {"S": record_id}}, ConsistentRead=True)
        if "Item" in item:
            return time.monotonic() - started
        time.sleep(1)
    return None


def check(outputs: dict[str, Any], timeout: float, api_key: str | None) -> dict[str, Any]:
    """The report (also printed as JSON by ``main``)."""
    marker = f"smoke-{int(time.time())}"
    record_id = post_record(outputs["url"], marker, api_key)
    seconds = wait_stored(_client("dynamodb", outputs), outputs["records_table"], record_id,
                          timeout)  # fmt: skip
    cloudwatch = _client("cloudwatch", outputs)
    alarms = cloudwatch.describe_alarms(AlarmNames=list(outputs.get("alarm_names", []))[:100])
    lag = {**LAG, "Namespace": outputs["application_name"]}
    metrics = cloudwatch.list_metrics(**lag)["Metrics"]
    return {
        "record_id": record_id,
        "stored": seconds is not None,
        "stored_after_seconds": None if seconds is None else round(seconds, 1),
        "alarms": {a["AlarmName"]: a["StateValue"] for a in alarms["MetricAlarms"]},
        "lag_metric_exists": bool(metrics),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=Path, help="stack outputs JSON (default: pulumi)")
    parser.add_argument("--local", action="store_true", help=f"the local stack ({LOCAL_OUTPUTS})")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the item")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("PRODUCER_API_KEY") or None,
        help="X-Api-Key (default: $PRODUCER_API_KEY, else the first key in the stack's secret)",
    )
    args = parser.parse_args(argv)
    outputs = stack_outputs(LOCAL_OUTPUTS if args.local else args.outputs)
    report = check(outputs, args.timeout, api_key_for(outputs, args.api_key))
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0 if report["stored"] and report["lag_metric_exists"] else 1


if __name__ == "__main__":
    sys.exit(main())
