"""The DynamoDB sink against botocore's Stubber: exact request shapes, retries, deadline."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from consumer.sink import DynamoDBSink, SinkWriteError


def _item(i: int, version: str = "v1") -> dict[str, Any]:
    return {"id": {"S": f"id-{i}"}, "data": {"S": version}}


def _puts(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"PutRequest": {"Item": item}} for item in items]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def client() -> Any:
    return boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="y")  # fmt: skip


def _sink(client: Any, clock: FakeClock, deadline: float = 60.0) -> DynamoDBSink:
    return DynamoDBSink("records", client, deadline, sleep=clock.sleep, clock=clock)


def test_items_go_in_chunks_of_25(client: Any) -> None:
    # GIVEN 60 items
    items = [_item(i) for i in range(60)]
    with Stubber(client) as stub:
        for chunk in (items[:25], items[25:50], items[50:]):
            stub.add_response("batch_write_item", {}, {"RequestItems": {"records": _puts(chunk)}})
        # WHEN written
        _sink(client, FakeClock()).write(items)
        # THEN three calls of 25, 25 and 10, in order, were made
        stub.assert_no_pending_responses()


def test_unprocessed_items_are_retried_until_written(client: Any) -> None:
    items = [_item(i) for i in range(5)]
    clock = FakeClock()
    with Stubber(client) as stub:
        stub.add_response("batch_write_item", {"UnprocessedItems": {"records": _puts(items[3:])}},
                          {"RequestItems": {"records": _puts(items)}})  # fmt: skip
        stub.add_response("batch_write_item", {"UnprocessedItems": {"records": _puts(items[4:])}},
                          {"RequestItems": {"records": _puts(items[3:])}})  # fmt: skip
        stub.add_response("batch_write_item", {}, {"RequestItems": {"records": _puts(items[4:])}})
        _sink(client, clock).write(items)
        stub.assert_no_pending_responses()
    assert len(clock.sleeps) == 2


def test_throttling_is_retried(client: Any) -> None:
    items = [_item(1)]
    with Stubber(client) as stub:
        stub.add_client_error("batch_write_item", "ProvisionedThroughputExceededException")
        stub.add_response("batch_write_item", {}, {"RequestItems": {"records": _puts(items)}})
        _sink(client, FakeClock()).write(items)
        stub.assert_no_pending_responses()


def test_duplicate_ids_collapse_to_the_last_version(client: Any) -> None:
    items = [_item(1, "old"), _item(2), _item(1, "new")]
    with Stubber(client) as stub:
        expected = {"RequestItems": {"records": _puts([_item(1, "new"), _item(2)])}}
        stub.add_response("batch_write_item", {}, expected)
        _sink(client, FakeClock()).write(items)
        stub.assert_no_pending_responses()


def test_gives_up_at_the_deadline(client: Any) -> None:
    items = [_item(1)]
    clock = FakeClock()
    with Stubber(client) as stub:
        for _ in range(200):
            stub.add_response("batch_write_item", {"UnprocessedItems": {"records": _puts(items)}})
        with pytest.raises(SinkWriteError, match="unprocessed"):
            _sink(client, clock, deadline=5.0).write(items)
    assert clock.now <= 5.0


def test_non_retryable_errors_fail_at_once(client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_client_error("batch_write_item", "ResourceNotFoundException")
        with pytest.raises(SinkWriteError, match="ResourceNotFoundException"):
            _sink(client, FakeClock()).write([_item(1)])
