"""The stream (provisioned, KMS-encrypted), the tables, and what the KCL would create itself.

The KCL creates its lease, worker-metrics and coordinator tables and registers its enhanced
fan-out consumer on first start, and never deletes them: created here instead (same names and
key schemas, which the KCL adopts), ``pulumi destroy`` removes them with everything else.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

STREAM_SHARD_METRICS = ["IncomingBytes", "IncomingRecords", "WriteProvisionedThroughputExceeded"]
LEASE_OWNER_INDEX = "LeaseOwnerToLeaseKeyIndex"


@dataclass
class DataArgs:
    shard_count: int
    retention_hours: int
    shard_level_metrics: bool
    application_name: str


def _table(
    name: str, key: str, opts: pulumi.ResourceOptions, backups: bool = False, **extra: object
) -> aws.dynamodb.Table:
    """An on-demand, encrypted table; ``backups``: point-in-time recovery (the user's data)."""
    attributes = [{"name": key, "type": "S"}, *extra.pop("attributes", [])]  # type: ignore[misc]
    return aws.dynamodb.Table(
        name,
        name=name,
        billing_mode="PAY_PER_REQUEST",
        hash_key=key,
        attributes=attributes,
        server_side_encryption={"enabled": True},
        point_in_time_recovery={"enabled": backups},
        deletion_protection_enabled=False,
        opts=opts,
        **extra,  # type: ignore[arg-type]
    )


class Data(pulumi.ComponentResource):
    def __init__(self, name: str, args: DataArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kinesis-ingest:data:Data", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.stream = aws.kinesis.Stream(
            f"{name}-stream",
            name=f"{name}-stream",
            shard_count=args.shard_count,
            retention_period=args.retention_hours,
            encryption_type="KMS",
            kms_key_id="alias/aws/kinesis",
            stream_mode_details={"stream_mode": "PROVISIONED"},
            shard_level_metrics=STREAM_SHARD_METRICS if args.shard_level_metrics else [],
            enforce_consumer_deletion=True,  # destroy deregisters the KCL's fan-out consumer
            opts=child.merge(pulumi.ResourceOptions(ignore_changes=["shard_count"])),
        )  # the scaler owns the shard count once the stream exists
        self.records = _table(f"{name}-records", "id", child, backups=True)
        self.quarantine = _table(f"{name}-records-quarantine", "id", child, backups=True)
        app = args.application_name
        self.lease_table = _table(
            app,
            "leaseKey",
            child,
            attributes=[{"name": "leaseOwner", "type": "S"}],
            global_secondary_indexes=[
                {
                    "name": LEASE_OWNER_INDEX,
                    "hash_key": "leaseOwner",
                    "range_key": "leaseKey",
                    "projection_type": "KEYS_ONLY",
                }
            ],
        )
        self.worker_metrics_table = _table(f"{app}-WorkerMetricStats", "wid", child)
        self.coordinator_table = _table(f"{app}-CoordinatorState", "key", child)
        self.efo_consumer = aws.kinesis.StreamConsumer(
            f"{name}-efo", name=app, stream_arn=self.stream.arn, opts=child
        )
        self.register_outputs({"stream": self.stream.name, "records": self.records.name})

    @property
    def kcl_tables(self) -> list[aws.dynamodb.Table]:
        return [self.lease_table, self.worker_metrics_table, self.coordinator_table]
