"""The local stack's AWS surface beyond the emulators, as a deployed stack has it:

- a CloudWatch API (moto's server) where the KCL publishes its metrics (``metricsLevel``
  SUMMARY, as in AWS), the scaler reads metrics and the alarms live;
- the resources ``pulumi up`` creates before any service starts: the KCL's three tables and
  its fan-out consumer (so the KCL adopts them, as it does in AWS), the stream's retention,
  the scaler's state table and notification topic, the consumer's ECS service as Application
  Auto Scaling knows it (in moto: the scaler sets its maximum task count as in AWS; nothing
  scales the one local consumer process by it), and the alarms;
- each service's own access key id, and the recording of every AWS call it makes (the IAM
  call contract): the Python services through botocore's plugin hook, the KCL's Java SDK
  through a wire tap in front of the emulators it talks to;
- ``outputs.json``: the stack outputs (``python -m infra.smoke --local`` reads them).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from common.metric_catalog import ALB
from infra.kcl_tables import kcl_tables
from infra.settings import InfraSettings
from local_stack.processes import free_port
from local_stack.recording.calls import CALLS_DIR_ENV, SERVICE_ENV

# Access key ids (any secret): who is calling, for the recordings. Not 12 digits: kinesis-mock
# would take such a key for an account id.
KEYS = {
    "producer": "LOCALPRODUCER",
    "consumer": "LOCALCONSUMER",  # the record processors (Python)
    "kcl": "LOCALKCLDAEMON",  # the MultiLangDaemon's JVM: the consumer's task role too
    "scaler": "LOCALSCALER",
    "rebuild": "LOCALREBUILD",  # a rebuild's record processors (python -m local_stack.rebuild)
    "rebuild-kcl": "LOCALREBUILDKCL",  # and its KCL daemon: the rebuild task's role
}
PLUGIN = "aws_calls=local_stack.recording.botocore_plugin"
# what `pulumi up` would create, named as the local stack names it
SCALER_STATE_TABLE = "scaler-state"
SCALING_TOPIC = "scaling"
ECS_CLUSTER, CONSUMER_SERVICE = "local", "consumer"
CONSUMER_TASKS = (1, 15)  # the consumer's scalable target's bounds (consumerMin/MaxTasks)
RETENTION_HOURS = InfraSettings.model_fields["retention_hours"].default


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

    @property
    def consumer_service(self) -> str:
        """The consumer's ECS service as Application Auto Scaling names it."""
        return f"service/{ECS_CLUSTER}/{CONSUMER_SERVICE}"

    def topic_arn(self) -> str:
        """moto's account for access keys that are not 12 digits (``free_port``'s note)."""
        return f"arn:aws:sns:{self.config.region}:123456789012:{SCALING_TOPIC}"

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
            "scaler_state_table": SCALER_STATE_TABLE,
            "scaling_topic": SCALING_TOPIC,
            "consumer_service": self.consumer_service,
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
                "--key", f"{KEYS['kcl']}=consumer",
                "--key", f"{KEYS['rebuild-kcl']}=rebuild"]  # fmt: skip
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

    def consumer_env(self, service: str = "consumer") -> dict[str, str]:
        """The KCL through the tap, publishing its metrics as in AWS."""
        return {
            **self.service_env(service),
            "CONSUMER_KINESIS_ENDPOINT": self.tapped("kinesis"),
            "CONSUMER_DYNAMODB_ENDPOINT": self.tapped("dynamodb"),
            "CONSUMER_CLOUDWATCH_ENDPOINT": self.tapped("cloudwatch"),
            "CONSUMER_METRICS_LEVEL": "SUMMARY",
        }

    @staticmethod
    def kcl_jvm_options(who: str = "kcl") -> list[str]:
        """The KCL's own key: JVM system properties come before the environment (which the
        record processors read) in the AWS SDK's default credentials chain."""
        return [f"-Daws.accessKeyId={KEYS[who]}", "-Daws.secretAccessKey=local"]

    def scaler_env(self, dynamodb_url: str) -> dict[str, str]:
        """Where the scaler keeps its state, tells its decisions and sets the consumer's
        maximum: the same settings as in AWS, pointed at DynamoDB Local and moto."""
        return {
            "SCALER_STATE_TABLE": SCALER_STATE_TABLE,
            "SCALER_DYNAMODB_ENDPOINT": dynamodb_url,
            "SCALER_NOTIFICATION_TOPIC_ARN": self.topic_arn(),
            "SCALER_SNS_ENDPOINT": self.cloudwatch_url,
            "SCALER_CONSUMER_SERVICE": self.consumer_service,
            "SCALER_CONSUMER_MIN_TASKS": str(CONSUMER_TASKS[0]),
            "SCALER_CONSUMER_MAX_TASKS": str(CONSUMER_TASKS[1]),
            "SCALER_APPLICATION_AUTOSCALING_ENDPOINT": self.cloudwatch_url,
        }

    # ---- what `pulumi up` creates --------------------------------------------------------
    def create_kcl_resources(self, ddb: Any, kinesis: Any) -> None:
        """The KCL's tables and fan-out consumer (the alarms: ``create_alarms``, later: the KCL
        does not need them to start)."""
        cfg = self.config
        create_kcl_application(ddb, kinesis, cfg.stream_name, cfg.application_name,
                               cfg.retrieval_mode == "FANOUT")  # fmt: skip

    def create_operating_resources(self, ddb: Any, kinesis: Any, aws: Any) -> None:
        """The stream's retention, the scaler's state table and topic, the consumer's scalable
        target (``aws(service)``: a client of the local CloudWatch API, moto, for other
        services too)."""
        kinesis.increase_stream_retention_period(
            StreamName=self.config.stream_name, RetentionPeriodHours=RETENTION_HOURS
        )
        ddb.create_table(
            TableName=SCALER_STATE_TABLE, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "stream", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "stream", "KeyType": "HASH"}],
        )  # fmt: skip
        aws("sns").create_topic(Name=SCALING_TOPIC)
        ecs = aws("ecs")
        ecs.create_cluster(clusterName=ECS_CLUSTER)
        ecs.register_task_definition(family=CONSUMER_SERVICE, containerDefinitions=[
            {"name": CONSUMER_SERVICE, "image": "local", "memory": 2048}])  # fmt: skip
        ecs.create_service(cluster=ECS_CLUSTER, serviceName=CONSUMER_SERVICE,
                           taskDefinition=CONSUMER_SERVICE, desiredCount=1)  # fmt: skip
        aws("application-autoscaling").register_scalable_target(
            ServiceNamespace="ecs", ResourceId=self.consumer_service,
            ScalableDimension="ecs:service:DesiredCount", MinCapacity=CONSUMER_TASKS[0],
            MaxCapacity=CONSUMER_TASKS[1],
        )  # fmt: skip

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
            "scaling_topic_arn": self.topic_arn(),
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


def create_kcl_application(ddb: Any, kinesis: Any, stream: str, application: str,
                           fan_out: bool) -> None:  # fmt: skip
    """A KCL application's three tables and, with enhanced fan-out, its registered consumer
    (ACTIVE before this returns), as the stack creates them (``infra.kcl_tables``)."""
    for table in kcl_tables(application):
        try:
            ddb.create_table(**table.create_table_request())
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise
    if not fan_out:
        return
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    kinesis.register_stream_consumer(StreamARN=arn, ConsumerName=application)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName=application)
        if found["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE":
            return
        time.sleep(0.5)


def delete_kcl_application(ddb: Any, kinesis: Any, stream: str, application: str,
                           fan_out: bool) -> None:  # fmt: skip
    """What ``create_kcl_application`` made (as `pulumi up` does once rebuildFrom is gone)."""
    for table in kcl_tables(application):
        with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):
            ddb.delete_table(TableName=table.name)
    if fan_out:
        arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"][
            "StreamARN"
        ]
        with contextlib.suppress(kinesis.exceptions.ResourceNotFoundException):
            kinesis.deregister_stream_consumer(StreamARN=arn, ConsumerName=application)
        # DELETING first, then gone (as `pulumi up` waits for it)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName=application)
            except kinesis.exceptions.ResourceNotFoundException:
                return
            time.sleep(0.5)


def create_alarms(cloudwatch: Any, cfg: Any) -> list[str]:
    """The stack's alarms (``alarm_specs``, as Pulumi creates them), named ``<stream>-<key>``;
    the load balancer's do not exist locally and are left out."""
    from infra.components.observability import alarm_specs

    names = []
    for spec in alarm_specs(cfg.stream_name, cfg.application_name, "", "", cfg.records_table,
                            retention_hours=RETENTION_HOURS,
                            retrieval_mode=cfg.retrieval_mode):  # fmt: skip
        if spec.namespace == ALB.name:
            continue
        name = f"{cfg.stream_name}-{spec.key}"
        cloudwatch.put_metric_alarm(
            AlarmName=name, AlarmDescription=spec.text, Namespace=spec.namespace,
            MetricName=spec.metric, Statistic=spec.stat, Period=spec.period,
            EvaluationPeriods=spec.periods, Threshold=spec.threshold,
            ComparisonOperator=spec.comparison, TreatMissingData="notBreaching",
            Dimensions=[{"Name": k, "Value": str(v)} for k, v in spec.dimensions.items()],
        )  # fmt: skip
        names.append(name)
    return names
