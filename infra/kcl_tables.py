"""The three DynamoDB tables KCL 3 uses, as the KCL itself would create them (pure: the
stack creates them in AWS, the local stack in DynamoDB Local, from this one description).

Key schemas from KCL 3.1.3: the lease table keyed by ``leaseKey`` with the global secondary
index ``LeaseOwnerToLeaseKeyIndex`` (``leaseOwner`` hash, ``leaseKey`` range, KEYS_ONLY;
``DynamoDBLeaseRefresher``), ``<app>-WorkerMetricStats`` keyed by ``wid``
(``WorkerMetricStatsDAO``) and ``<app>-CoordinatorState`` keyed by ``key``
(``CoordinatorStateDAO``). A KCL that finds them adopts them and creates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LEASE_OWNER_INDEX = "LeaseOwnerToLeaseKeyIndex"


@dataclass(frozen=True)
class KclTable:
    name: str
    hash_key: str
    owner_index: bool = False  # the lease table's LeaseOwnerToLeaseKeyIndex

    def create_table_request(self) -> dict[str, Any]:
        """The DynamoDB CreateTable request (on demand), as boto3 takes it."""
        attributes = [{"AttributeName": self.hash_key, "AttributeType": "S"}]
        request: dict[str, Any] = {
            "TableName": self.name,
            "KeySchema": [{"AttributeName": self.hash_key, "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if self.owner_index:
            attributes.append({"AttributeName": "leaseOwner", "AttributeType": "S"})
            request["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": LEASE_OWNER_INDEX,
                    "KeySchema": [
                        {"AttributeName": "leaseOwner", "KeyType": "HASH"},
                        {"AttributeName": self.hash_key, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ]
        request["AttributeDefinitions"] = attributes
        return request


def kcl_tables(application_name: str) -> list[KclTable]:
    """Lease, worker metrics and coordinator state tables of a KCL application."""
    return [
        KclTable(application_name, "leaseKey", owner_index=True),
        KclTable(f"{application_name}-WorkerMetricStats", "wid"),
        KclTable(f"{application_name}-CoordinatorState", "key"),
    ]
