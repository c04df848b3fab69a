"""The DynamoDB sink against botocore's Stubber: exact request shapes, retries, deadline."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber

from consumer import config
from consumer import sink as sink_module
from consumer.replay import scan_all
from consumer.sink import DynamoDBSink, SinkWriteError
from local_stack.ephemeral import EphemeralDynamoDB
from tests.vtime import FakeClock


def _item(i: int, version: str = "v1") -> dict[str, Any]:
    return {"id": {"S": f"id-{i}"}, "data": {"S": version}}


def _puts(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"PutRequest": {"Item": item}} for item in items]


@pytest.fixture
def client() -> Any:
    return boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="y")  # fmt: skip


def _sink(client: Any, clock: FakeClock, deadline: float = 60.0) -> DynamoDBSink:
    # one chunk at a time: the Stubber answers in order (concurrency is tested on its own)
    return DynamoDBSink(
        "records", client, deadline, sleep=clock.sleep, clock=clock, max_in_flight=1
    )


def test_items_go_in_chunks_of_25(client: Any) -> None:
    # GIVEN 60 items
    items = [_item(i) for i in range(60)]
    clock = FakeClock()
    with Stubber(client) as stub:
        for chunk in (items[:25], items[25:50], items[50:]):
            stub.add_response("batch_write_item", {}, {"RequestItems": {"records": _puts(chunk)}})
        # WHEN written
        _sink(client, clock).write(items)
        # THEN three calls of 25, 25 and 10, in order, were made, with no waiting
        stub.assert_no_pending_responses()
    assert clock.sleeps == []


def test_nothing_to_write_makes_no_call(client: Any) -> None:
    with Stubber(client) as stub:
        _sink(client, FakeClock()).write([])
        stub.assert_no_pending_responses()


def test_unprocessed_items_are_retried_until_written(client: Any) -> None:
    # GIVEN DynamoDB leaves two items, then one, unprocessed
    items = [_item(i) for i in range(5)]
    clock = FakeClock()
    with Stubber(client) as stub:
        stub.add_response("batch_write_item", {"UnprocessedItems": {"records": _puts(items[3:])}},
                          {"RequestItems": {"records": _puts(items)}})  # fmt: skip
        stub.add_response("batch_write_item", {"UnprocessedItems": {"records": _puts(items[4:])}},
                          {"RequestItems": {"records": _puts(items[3:])}})  # fmt: skip
        stub.add_response("batch_write_item", {}, {"RequestItems": {"records": _puts(items[4:])}})
        # WHEN written
        _sink(client, clock).write(items)
        # THEN exactly the unprocessed ones were sent again until none was left
        stub.assert_no_pending_responses()
    # AND the pauses were jittered within the exponential bounds (0.05 * 2**attempt)
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 0.1
    assert 0 <= clock.sleeps[1] <= 0.2


@pytest.mark.parametrize(
    ("code", "status"),
    [("ProvisionedThroughputExceededException", 400), ("ThrottlingException", 400),
     ("RequestLimitExceeded", 400), ("InternalServerError", 500), ("SomethingNew", 503)],
)  # fmt: skip
def test_throttling_and_5xx_are_retried(client: Any, code: str, status: int) -> None:
    # GIVEN one throttling or server error, then success
    items = [_item(1)]
    with Stubber(client) as stub:
        stub.add_client_error("batch_write_item", code, http_status_code=status)
        stub.add_response("batch_write_item", {}, {"RequestItems": {"records": _puts(items)}})
        _sink(client, FakeClock()).write(items)
        stub.assert_no_pending_responses()


def test_duplicate_ids_collapse_to_the_last_version(client: Any) -> None:
    # GIVEN the same id twice in one call (a replayed record), the last version newest
    items = [_item(1, "old"), _item(2), _item(1, "new")]
    with Stubber(client) as stub:
        expected = {"RequestItems": {"records": _puts([_item(1, "new"), _item(2)])}}
        stub.add_response("batch_write_item", {}, expected)
        # WHEN written THEN one put per id, with the last version, where the id came first
        _sink(client, FakeClock()).write(items)
        stub.assert_no_pending_responses()


def test_duplicates_are_collapsed_across_chunks(client: Any) -> None:
    # GIVEN 30 items whose last 5 repeat the first 5 ids
    items = [_item(i) for i in range(25)] + [_item(i, "v2") for i in range(5)]
    expected = [_item(i, "v2") for i in range(5)] + [_item(i) for i in range(5, 25)]
    with Stubber(client) as stub:
        stub.add_response("batch_write_item", {}, {"RequestItems": {"records": _puts(expected)}})
        # WHEN written THEN a single call of the 25 distinct ids is enough
        _sink(client, FakeClock()).write(items)
        stub.assert_no_pending_responses()


def test_gives_up_at_the_deadline(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN DynamoDB never takes the item, and jitter that always picks the longest pause
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    items = [_item(1)]
    clock = FakeClock()
    with Stubber(client) as stub:
        for _ in range(200):
            stub.add_response("batch_write_item", {"UnprocessedItems": {"records": _puts(items)}})
        # WHEN written with a 5 s deadline THEN SinkWriteError, without sleeping past it
        with pytest.raises(SinkWriteError, match="unprocessed"):
            _sink(client, clock, deadline=5.0).write(items)
    # AND it had backed off exponentially: the next pause (2 s, the cap) would pass 5 s
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])


def test_throttling_until_the_deadline_fails(client: Any) -> None:
    clock = FakeClock()
    with Stubber(client) as stub:
        for _ in range(200):
            stub.add_client_error("batch_write_item", "ThrottlingException")
        with pytest.raises(SinkWriteError, match="ThrottlingException"):
            _sink(client, clock, deadline=3.0).write([_item(1)])
    assert clock.now <= 3.0


@pytest.mark.parametrize(
    "code", ["ResourceNotFoundException", "AccessDeniedException", "UnrecognizedClientException"]
)
def test_errors_not_about_an_item_fail_at_once(client: Any, code: str) -> None:
    # GIVEN an error no retry can fix WHEN written THEN SinkWriteError without waiting
    clock = FakeClock()
    with Stubber(client) as stub:
        stub.add_client_error("batch_write_item", code)
        with pytest.raises(SinkWriteError, match=code):
            _sink(client, clock).write([_item(1)])
    assert clock.sleeps == []


def test_default_client_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN settings for a local DynamoDB (and dummy credentials)
    monkeypatch.setenv("CONSUMER_STREAM_NAME", "s")
    monkeypatch.setenv("CONSUMER_REGION", "eu-west-1")
    monkeypatch.setenv("CONSUMER_DYNAMODB_ENDPOINT", "http://127.0.0.1:8000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    config.get_settings.cache_clear()
    try:
        # WHEN a sink is made without a client
        sink = DynamoDBSink("records")
    finally:
        config.get_settings.cache_clear()
    # THEN its client uses that region and endpoint, with the SDK's standard retries
    meta = sink._client.meta
    assert (meta.region_name, meta.endpoint_url) == ("eu-west-1", "http://127.0.0.1:8000")
    # botocore sets each Config option as an attribute; its stubs declare none of them
    retries = meta.config.retries  # type: ignore[attr-defined]  # set as an attribute
    assert retries == {"mode": "standard", "total_max_attempts": 6}  # 5 retries


class SlowTable:
    """BatchWriteItem that takes 50 ms and remembers how many calls overlapped; the first
    answer for ``flaky`` ids leaves them unprocessed once."""

    def __init__(self, flaky: frozenset[str] = frozenset()) -> None:
        self.stored: dict[str, Any] = {}
        self.active = self.most = 0
        self.flaky = set(flaky)
        self._lock = threading.Lock()

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, requests),) = RequestItems.items()
        assert len(requests) <= 25
        with self._lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.05)
        unprocessed = []
        with self._lock:
            self.active -= 1
            for request in requests:
                item = request["PutRequest"]["Item"]
                if item["id"]["S"] in self.flaky:
                    self.flaky.discard(item["id"]["S"])
                    unprocessed.append(request)
                else:
                    self.stored[item["id"]["S"]] = item
        return {"UnprocessedItems": {table: unprocessed} if unprocessed else {}}


def test_chunks_go_in_parallel_up_to_the_bound_and_all_are_written() -> None:
    # GIVEN 250 items (10 chunks), 4 calls at most in flight, 3 items unprocessed once
    table = SlowTable(flaky={"id-3", "id-77", "id-249"})
    sink = DynamoDBSink("records", table, 60.0, backoff_base=0.001, max_in_flight=4)
    items = [_item(i) for i in range(250)]
    # WHEN written
    started = time.monotonic()
    sink.write(items)
    elapsed = time.monotonic() - started
    # THEN every item is stored, with 4 calls overlapping and never more
    assert set(table.stored) == {f"id-{i}" for i in range(250)}
    assert table.most == 4
    assert elapsed < 10 * 0.05  # not one chunk after another
    assert sink.retries >= 1


def test_a_failed_chunk_fails_the_write_after_the_others_ended() -> None:
    class Failing(SlowTable):
        def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
            ((_, requests),) = RequestItems.items()
            if requests[0]["PutRequest"]["Item"]["id"]["S"] == "id-50":
                raise ParamValidationError(report="bad")
            return super().batch_write_item(RequestItems)

    table = Failing()
    sink = DynamoDBSink("records", table, 60.0, max_in_flight=3)
    with pytest.raises(SinkWriteError):
        sink.write([_item(i) for i in range(100)])
    assert table.active == 0  # no call left running behind the error


def test_an_item_dynamodb_refuses_is_bisected_out_and_the_rest_written(client: Any) -> None:
    # GIVEN four items of which DynamoDB refuses the last (ValidationException fails the call)
    items = [_item(i) for i in range(4)]
    with Stubber(client) as stub:
        refuse = {"service_error_code": "ValidationException",
                  "service_message": "Number overflow", "http_status_code": 400}  # fmt: skip
        stub.add_client_error(
            "batch_write_item",
            **refuse,
            expected_params={"RequestItems": {"records": _puts(items)}},
        )
        stub.add_response("batch_write_item", {}, {"RequestItems": {"records": _puts(items[:2])}})
        stub.add_client_error(
            "batch_write_item",
            **refuse,
            expected_params={"RequestItems": {"records": _puts(items[2:])}},
        )
        stub.add_response("batch_write_item", {}, {"RequestItems": {"records": _puts(items[2:3])}})
        stub.add_client_error(
            "batch_write_item",
            **refuse,
            expected_params={"RequestItems": {"records": _puts(items[3:])}},
        )
        # WHEN written
        outcome = _sink(client, FakeClock()).write(items)
        # THEN halves went until the refused item was alone; it is reported, the rest written
        stub.assert_no_pending_responses()
    assert outcome.refused == [(items[3], "ValidationException: Number overflow")]
    assert outcome.superseded == []


def _record_item(record_id: str, sequence: str, data: str, sub: int = 0) -> dict[str, Any]:
    """A records-table item as the consumer writes it, for a client's id."""
    return {"id": {"S": record_id}, "data": {"S": data}, "partition_key": {"S": record_id},
            "shard_id": {"S": "shardId-000000000001"}, "sequence_number": {"S": sequence},
            "sub_sequence_number": {"N": str(sub)}, "client_id": {"BOOL": True}}  # fmt: skip


def _cancel_then_succeed(stub: Stubber, reasons: str) -> None:
    """A cancelled transaction whose reasons are only in its message (as DynamoDB writes them
    for SDKs that do not model CancellationReasons), then success."""
    stub.add_client_error(
        "transact_write_items", "TransactionCanceledException",
        f"Transaction cancelled, please refer cancellation reasons for specific reasons "
        f"[{reasons}]")  # fmt: skip
    stub.add_response("transact_write_items", {})


def test_cancellation_reasons_are_read_from_the_message_when_not_modeled(client: Any) -> None:
    items = [_record_item("a", "5", "new"), _record_item("b", "5", "x")]
    clock = FakeClock()
    with Stubber(client) as stub:
        _cancel_then_succeed(stub, "ConditionalCheckFailed, None")
        outcome = _sink(client, clock).write(items)
        stub.assert_no_pending_responses()
    # THEN the first is superseded (a later copy is stored), the second written at once
    assert outcome.superseded == [items[0]] and outcome.refused == []
    assert clock.sleeps == []


def test_transaction_conflicts_are_retried(client: Any) -> None:
    items = [_record_item("a", "5", "x")]
    clock = FakeClock()
    with Stubber(client) as stub:
        _cancel_then_succeed(stub, "TransactionConflict")
        outcome = _sink(client, clock).write(items)
        stub.assert_no_pending_responses()
    assert outcome.superseded == [] and outcome.refused == []
    assert len(clock.sleeps) == 1  # backed off once


def test_transactions_hold_at_most_100_items_and_4_mb() -> None:
    small = [_record_item(f"s{i}", "5", "x") for i in range(250)]
    big = [_record_item(f"b{i}", "5", "x" * 380_000) for i in range(12)]
    assert [len(c) for c in sink_module._transactions(small)] == [100, 100, 50]
    assert [len(c) for c in sink_module._transactions(big)] == [11, 1]


# ---- against DynamoDB Local -----------------------------------------------------------


@pytest.fixture
def real(dynamodb_local: EphemeralDynamoDB) -> Iterator[tuple[DynamoDBSink, Any]]:
    """A sink on DynamoDB Local's ``records`` table (emptied first), and a client to read."""
    client = dynamodb_local.client(parameter_validation=False, retries={"max_attempts": 1})
    for item in scan_all(client, "records"):
        client.delete_item(TableName="records", Key={"id": item["id"]})
    yield DynamoDBSink("records", client, deadline_seconds=10, max_in_flight=4), client


def _stored(client: Any) -> dict[str, dict[str, Any]]:
    return {item["id"]["S"]: item for item in scan_all(client, "records")}


def test_dynamodbs_refusals_are_isolated_and_the_rest_stored(
    real: tuple[DynamoDBSink, Any],
) -> None:
    sink, client = real
    # GIVEN 60 items of which DynamoDB refuses three: a number out of its range, an item over
    # 400 KB and one nested too deep (a gap in the contract, or another writer's records);
    # two of them with client ids (written in a transaction)
    items = [_item(i) for i in range(57)]
    deep: dict[str, Any] = {"S": "leaf"}
    for _ in range(40):
        deep = {"M": {"k": deep}}
    poison = [{"id": {"S": "overflow"}, "data": {"N": "1E+200"}},
              {**_record_item("too-big", "7", "x" * 410_000)},
              {**_record_item("too-deep", "7", ""), "data": deep}]  # fmt: skip
    good_versioned = [_record_item(f"v{i}", "7", "fine") for i in range(5)]
    # WHEN written together
    outcome = sink.write(items[:30] + poison[:1] + good_versioned + poison[1:] + items[30:])
    # THEN exactly those three are refused, with DynamoDB's reasons, and the rest is stored
    assert sorted(item["id"]["S"] for item, _ in outcome.refused) == [
        "overflow", "too-big", "too-deep"]  # fmt: skip
    assert all("Validation" in why for _, why in outcome.refused)
    assert set(_stored(client)) == {f"id-{i}" for i in range(57)} | {f"v{i}" for i in range(5)}


def test_the_copy_with_the_latest_stream_position_wins(real: tuple[DynamoDBSink, Any]) -> None:
    sink, client = real
    # GIVEN a client id stored from sequence number 20
    sink.write([_record_item("order-1", "20", "second")])
    # WHEN an older copy comes again (a replay from an earlier checkpoint, a zombie worker)
    outcome = sink.write([_record_item("order-1", "19", "first"),
                          _record_item("order-1", "20", "first", sub=0)])  # fmt: skip
    # THEN it is superseded (within one write the last copy of an id counts)
    assert _stored(client)["order-1"]["data"] == {"S": "first"}  # the same position: rewritten
    outcome = sink.write([_record_item("order-1", "19", "older")])
    assert [i["id"]["S"] for i in outcome.superseded] == ["order-1"]
    assert _stored(client)["order-1"]["data"] == {"S": "first"}
    # AND a later position wins: a later sub-record, or a longer sequence number (a child shard)
    sink.write([_record_item("order-1", "20", "sub 3", sub=3)])
    assert _stored(client)["order-1"]["data"] == {"S": "sub 3"}
    assert sink.write([_record_item("order-1", "20", "sub 2", sub=2)]).superseded
    sink.write([_record_item("order-1", "100", "child")])
    assert _stored(client)["order-1"]["data"] == {"S": "child"}
    assert sink.write([_record_item("order-1", "99", "parent")]).superseded


def test_two_workers_writing_copies_leave_the_latest(real: tuple[DynamoDBSink, Any]) -> None:
    sink, client = real
    other = DynamoDBSink("records", client, deadline_seconds=30, max_in_flight=4)
    # GIVEN two workers (a lease handed over mid-batch) writing copies of the same 100 ids,
    # each from positions in its own order
    ids = [f"order-{i}" for i in range(100)]
    rng = random.Random(7)
    batches: list[list[list[dict[str, Any]]]] = [[], []]
    for worker in (0, 1):
        positions = list(range(1, 11))
        rng.shuffle(positions)
        for position in positions:
            batches[worker].append(
                [
                    _record_item(i, str(1000 + position * 2 + worker), f"{worker}@{position}")
                    for i in ids
                ]
            )

    # WHEN both write all their batches at the same time
    def run(writer: DynamoDBSink, mine: list[list[dict[str, Any]]]) -> None:
        for batch in mine:
            writer.write(batch)

    threads = [
        threading.Thread(target=run, args=(w, b))
        for w, b in zip((sink, other), batches, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN every id holds the copy from the latest position any of them wrote
    stored = _stored(client)
    assert {stored[i]["data"]["S"] for i in ids} == {"1@10"}
