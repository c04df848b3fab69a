"""The local stack's AWS surface beyond the emulators, as a deployed stack has it:

- a CloudWatch API (moto's server) where the KCL publishes its metrics (``metricsLevel``
  SUMMARY, as in AWS), the scaler reads metrics and the alarms live;
- the resources ``pulumi up`` creates before any service starts: the KCL's three tables and
  its fan-out consumer (so the KCL adopts them, as it does in AWS), and the alarms;
- each service's own access key id, and the recording of every AWS call it makes (the IAM
  call contract): the Python services through botocore's plugin hook, the KCL's Java SDK
  through a wire tap in front of the emulators it talks to;
- ``outputs.json``: the stack outputs (``python -m infra.smoke --local`` reads them).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from infra.kcl_tables import kcl_tables
from local_stack.recording.calls import CALLS_DIR_ENV, SERVICE_ENV

# Access key ids (any secret): who is calling, for the recordings. Not 12 digits: kinesis-mock
# would take such a key for an account id.
KEYS = {
    "producer": "LOCALPRODUCER",
    "consumer": "LOCALCONSUMER",  # the record processors (Python)
    "kcl": "LOCALKCLDAEMON",  # the MultiLangDaemon's JVM: the consumer's task role too
    "scaler": "LOCALSCALER",
}
PLUGIN = "aws_calls=local_stack.recording.botocore_plugin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Observed:
    """Owned by ``LocalStack``: ``start`` after the emulators are up, ``stop`` at the end."""

    def __init__(self, config: Any, cloudwatch_port: int) -> None:
        self.config = config
        self.cloudwatch_port = cloudwatch_port
        base = os.environ.get(CALLS_DIR_ENV)
        root = Path(base) if base else Path(config.state_dir) / "aws-calls"
        self.calls_dir = root / f"{config.stream_name}-{uuid.uuid4().hex[:8]}"
        # where the recorder listens for the KCL: one port per API it forwards to
        self.ports = {api: free_port() for api in ("kinesis", "dynamodb", "cloudwatch")}

    @property
    def cloudwatch_url(self) -> str:
        return f"http://127.0.0.1:{self.cloudwatch_port}"

    def tapped(self, api: str) -> str:
        return f"http://127.0.0.1:{self.ports[api]}"

    def stack_facts(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "stream": cfg.stream_name,
            "records_table": cfg.records_table,
            "quarantine_table": cfg.quarantine_table,
            "application": cfg.application_name,
            "retrieval_mode": cfg.retrieval_mode,
            "scaler": cfg.scaler,
            "region": cfg.region,
        }

    def recorder_argv(self) -> list[str]:
        """The wire tap's process (``local_stack.recording.tap``): in front of kinesis-mock's
        cleartext port, DynamoDB Local and the CloudWatch API, recording the KCL's calls."""
        cfg = self.config
        self.calls_dir.mkdir(parents=True, exist_ok=True)
        stack_file = self.calls_dir / "stack.json"
        stack_file.write_text(json.dumps(self.stack_facts()))
        upstream = {"kinesis": cfg.kinesis_plain_port, "dynamodb": cfg.dynamodb_port,
                    "cloudwatch": self.cloudwatch_port}  # fmt: skip
        argv = [sys.executable, "-m", "local_stack.recording.tap", "--stack", str(stack_file),
                "--log-dir", str(self.calls_dir),
                "--key", f"{KEYS['kcl']}=consumer"]  # fmt: skip
        for api, port in upstream.items():
            argv += ["--listen", f"{api}:{self.ports[api]}:{port}"]
        return argv

    # ---- environments ------------------------------------------------------------------
    def service_env(self, service: str) -> dict[str, str]:
        """A Python service's key and call recording (any boto3 client it makes)."""
        return {
            "AWS_ACCESS_KEY_ID": KEYS[service],
            "AWS_SECRET_ACCESS_KEY": "local",
            SERVICE_ENV: service,
            CALLS_DIR_ENV: str(self.calls_dir),
            "BOTOCORE_EXPERIMENTAL__PLUGINS": PLUGIN,
        }

    def consumer_env(self) -> dict[str, str]:
        """The KCL through the tap, publishing its metrics as in AWS."""
        return {
            **self.service_env("consumer"),
            "CONSUMER_KINESIS_ENDPOINT": self.tapped("kinesis"),
            "CONSUMER_DYNAMODB_ENDPOINT": self.tapped("dynamodb"),
            "CONSUMER_CLOUDWATCH_ENDPOINT": self.tapped("cloudwatch"),
            "CONSUMER_METRICS_LEVEL": "SUMMARY",
        }

    @staticmethod
    def kcl_jvm_options() -> list[str]:
        """The KCL's own key: JVM system properties come before the environment (which the
        record processors read) in the AWS SDK's default credentials chain."""
        return [f"-Daws.accessKeyId={KEYS['kcl']}", "-Daws.secretAccessKey=local"]

    # ---- what `pulumi up` creates --------------------------------------------------------
    def create_kcl_resources(self, ddb: Any, kinesis: Any) -> None:
        """The KCL's tables and fan-out consumer (the alarms: ``create_alarms``, later: the KCL
        does not need them to start)."""
        cfg = self.config
        for table in kcl_tables(cfg.application_name):
            try:
                ddb.create_table(**table.create_table_request())
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ResourceInUseException":
                    raise
        if cfg.retrieval_mode == "FANOUT":
            arn = kinesis.describe_stream_summary(StreamName=cfg.stream_name)[
                "StreamDescriptionSummary"
            ]["StreamARN"]
            kinesis.register_stream_consumer(StreamARN=arn, ConsumerName=cfg.application_name)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                found = kinesis.describe_stream_consumer(
                    StreamARN=arn, ConsumerName=cfg.application_name
                )
                if found["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE":
                    break
                time.sleep(0.5)

    def create_alarms(self, cloudwatch: Any) -> list[str]:
        """The alarms, in the local CloudWatch; returns their names."""
        return create_alarms(cloudwatch, self.config)

    def write_outputs(self, path: Path, alarms: list[str], tls_cert: Path,
                      dashboard_url: str = "") -> None:  # fmt: skip
        cfg = self.config
        outputs = {
            "url": f"{cfg.producer_url}/",
            "dashboard_url": dashboard_url,
            "stream_name": cfg.stream_name,
            "records_table": cfg.records_table,
            "quarantine_table": cfg.quarantine_table,
            "region": cfg.region,
            "application_name": cfg.application_name,
            "alarm_names": alarms,
            # local only: where the AWS APIs are, and how to verify the Kinesis endpoint
            "endpoints": {
                "kinesis": cfg.kinesis_https,
                "dynamodb": cfg.dynamodb_url,
                "cloudwatch": self.cloudwatch_url,
            },
            "ca_bundle": str(tls_cert),
            "credentials": {"aws_access_key_id": "LOCALSMOKE", "aws_secret_access_key": "x"},
        }
        path.write_text(json.dumps(outputs, indent=2))


def create_alarms(cloudwatch: Any, cfg: Any) -> list[str]:
    """The stack's alarms (``alarm_specs``, as Pulumi creates them), named ``<stream>-<key>``;
    the load balancer's do not exist locally and are left out."""
    from infra.components.observability import alarm_specs

    names = []
    for spec in alarm_specs(cfg.stream_name, cfg.application_name, "", "", cfg.records_table):
        if spec.namespace == "AWS/ApplicationELB":
            continue
        name = f"{cfg.stream_name}-{spec.key}"
        cloudwatch.put_metric_alarm(
            AlarmName=name, AlarmDescription=spec.text, Namespace=spec.namespace,
            MetricName=spec.metric, Statistic=spec.stat, Period=60,
            EvaluationPeriods=spec.minutes, Threshold=spec.threshold,
            ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching",
            Dimensions=[{"Name": k, "Value": str(v)} for k, v in spec.dimensions.items()],
        )  # fmt: skip
        names.append(name)
    return names
