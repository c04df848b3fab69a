"""The stream (provisioned, KMS-encrypted), the tables, and what the KCL would create itself.

The KCL creates its lease, worker-metrics and coordinator tables and registers its enhanced
fan-out consumer on first start, and never deletes them: created here instead (same names and
key schemas, which the KCL adopts), ``pulumi destroy`` removes them with everything else. The
same for a rebuild's second application (``rebuild_application``): removing ``rebuildFrom``
from the config removes its tables and fan-out consumer. The scaler's state item has its own
small table (``scaler.state``), keyed by stream name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from common.metric_catalog import KINESIS
from consumer.records import TTL_ATTRIBUTE
from infra.kcl_tables import LEASE_OWNER_INDEX, kcl_tables

# the Kinesis metrics the catalogue reads per shard (enhanced shard-level monitoring)
STREAM_SHARD_METRICS = [m.name for m in KINESIS if m.published_under(("StreamName", "ShardId"))]


@dataclass
class DataArgs:
    shard_count: int
    retention_hours: int
    shard_level_metrics: bool
    application_name: str
    on_demand: bool = False  # Kinesis sizes the stream; no shard count
    fan_out: bool = True  # the consumer reads with enhanced fan-out (its registered consumer)
    item_ttl: bool = False  # DynamoDB's TTL on the records table's expires_at
    scaler_state: bool = True  # the scaler's state table (provisioned streams have a scaler)
    rebuild_application: str = ""  # a second KCL application's tables and fan-out consumer


def _table(
    name: str, key: str, opts: pulumi.ResourceOptions, backups: bool = False, **extra: Any
) -> aws.dynamodb.Table:
    """An on-demand, encrypted table; ``backups``: point-in-time recovery (the user's data)."""
    attributes = [{"name": key, "type": "S"}, *extra.pop("attributes", [])]
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
        **extra,
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
        # DynamoDB deletes an item within days after its expires_at (epoch seconds) passed
        # (DynamoDB Developer Guide, "Time to Live")
        ttl = {"ttl": {"attribute_name": TTL_ATTRIBUTE, "enabled": True}} if args.item_ttl else {}
        self.records = _table(f"{name}-records", "id", child, backups=True, **ttl)
        self.quarantine = _table(f"{name}-records-quarantine", "id", child, backups=True)
        self.scaler_state = (
            _table(f"{name}-scaler-state", "stream", child) if args.scaler_state else None
        )
        self.kcl_tables, self.efo_consumer = self._kcl_application(
            f"{name}-efo", args.application_name, args.fan_out, child
        )
        self.rebuild_tables: list[aws.dynamodb.Table] = []
        self.rebuild_efo_consumer: aws.kinesis.StreamConsumer | None = None
        if args.rebuild_application:
            self.rebuild_tables, self.rebuild_efo_consumer = self._kcl_application(
                f"{name}-rebuild-efo", args.rebuild_application, args.fan_out, child
            )
        self.register_outputs({"stream": self.stream.name, "records": self.records.name})

    def _kcl_application(
        self, consumer: str, app: str, fan_out: bool, child: pulumi.ResourceOptions
    ) -> tuple[list[aws.dynamodb.Table], aws.kinesis.StreamConsumer | None]:
        """A KCL application's three tables and, reading with fan-out, its consumer."""
        tables = []
        for table in kcl_tables(app):
            extra: dict[str, Any] = {}
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
            tables.append(_table(table.name, table.hash_key, child, **extra))
        efo = None
        if fan_out:
            efo = aws.kinesis.StreamConsumer(
                consumer, name=app, stream_arn=self.stream.arn, opts=child
            )
        return tables, efo
