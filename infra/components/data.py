"""The stream (provisioned, KMS-encrypted), the tables, and what the KCL would create itself.

The KCL creates its lease, worker-metrics and coordinator tables and registers its enhanced
fan-out consumer on first start, and never deletes them: created here instead (same names and
key schemas, which the KCL adopts), ``pulumi destroy`` removes them with everything else.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.kcl_tables import LEASE_OWNER_INDEX, kcl_tables

STREAM_SHARD_METRICS = ["IncomingBytes", "IncomingRecords", "WriteProvisionedThroughputExceeded"]


@dataclass
class DataArgs:
    shard_count: int
    retention_hours: int
    shard_level_metrics: bool
    application_name: str
    on_demand: bool = False  # Kinesis sizes the stream; no shard count
    fan_out: bool = True  # the consumer reads with enhanced fan-out (its registered consumer)


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
            shard_count=None if args.on_demand else args.shard_count,
            retention_period=args.retention_hours,
            encryption_type="KMS",
            kms_key_id="alias/aws/kinesis",
            stream_mode_details={"stream_mode": "ON_DEMAND" if args.on_demand else "PROVISIONED"},
            shard_level_metrics=STREAM_SHARD_METRICS if args.shard_level_metrics else [],
            enforce_consumer_deletion=True,  # destroy deregisters the KCL's fan-out consumer
            opts=child.merge(pulumi.ResourceOptions(ignore_changes=["shard_count"])),
        )  # the scaler owns the shard count once the stream exists
        self.records = _table(f"{name}-records", "id", child, backups=True)
        self.quarantine = _table(f"{name}-records-quarantine", "id", child, backups=True)
        app = args.application_name
        self.kcl_tables: list[aws.dynamodb.Table] = []
        for table in kcl_tables(app):
            extra: dict[str, object] = {}
            if table.owner_index:
                extra = {
                    "attributes": [{"name": "leaseOwner", "type": "S"}],
                    "global_secondary_indexes": [
                        {
                            "name": LEASE_OWNER_INDEX,
                            "hash_key": "leaseOwner",
                            "range_key": table.hash_key,
                            "projection_type": "KEYS_ONLY",
                        }
                    ],
                }
            self.kcl_tables.append(_table(table.name, table.hash_key, child, **extra))
        self.lease_table = self.kcl_tables[0]
        self.efo_consumer: aws.kinesis.StreamConsumer | None = None
        if args.fan_out:
            self.efo_consumer = aws.kinesis.StreamConsumer(
                f"{name}-efo", name=app, stream_arn=self.stream.arn, opts=child
            )
        self.register_outputs({"stream": self.stream.name, "records": self.records.name})
