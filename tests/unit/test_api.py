"""The producer's HTTP contract, served in-process against a fake Kinesis."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from producer.config import ProducerSettings
from producer.main import create_app
from producer.shards import ShardMap
from tests.fakes import FakeKinesis, even_shards
from tests.kpl import sub_records


def _client(kinesis: FakeKinesis, **settings: object) -> TestClient:
    conf = ProducerSettings(stream_name="s", max_buffered_time_ms=5, **settings)  # type: ignore[arg-type]
    return TestClient(create_app(conf, client=kinesis))


@pytest.fixture
def kinesis() -> FakeKinesis:
    return FakeKinesis(even_shards(5))


@pytest.fixture
def client(kinesis: FakeKinesis) -> Iterator[TestClient]:
    with _client(kinesis) as test_client:
        yield test_client


def _stored_envelopes(kinesis: FakeKinesis) -> list[dict[str, object]]:
    return [
        json.loads(data)
        for stored in kinesis.stored
        for _, _, data in sub_records(stored.data, stored.partition_key)
    ]


def test_reference_request_is_stored_and_answered_with_its_id(
    client: TestClient, kinesis: FakeKinesis
) -> None:
    # WHEN the AWS reference design's request is posted
    response = client.post("/", json={"data": "hello"})
    # THEN the answer names the id and the shard Kinesis stored it on
    assert response.status_code == 200
    body = response.json()
    assert body["shard_id"] == ShardMap(kinesis.open_shards).shard_for(body["id"]).shard_id
    envelopes = _stored_envelopes(kinesis)
    assert [(e["id"], e["data"]) for e in envelopes] == [(body["id"], "hello")]


def test_caller_partition_key_routes_the_record(client: TestClient, kinesis: FakeKinesis) -> None:
    response = client.post("/", json={"data": {"a": 1}, "partition_key": "customer-42"})
    assert response.status_code == 200
    expected = ShardMap(kinesis.open_shards).shard_for("customer-42").shard_id
    assert response.json()["shard_id"] == expected
    assert kinesis.stored[0].partition_key == "customer-42"


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({"dat": "x"}, "body.data", "Field required"),
        ({"data": "x", "extra": 1}, "body.extra", "Extra inputs are not permitted"),
        ({"data": "x", "partition_key": ""}, "body.partition_key", "at least 1 character"),
        ([1, 2], "body", "valid dictionary"),
    ],
)
def test_bad_records_get_a_422_naming_the_problem(
    client: TestClient, kinesis: FakeKinesis, body: object, field: str, problem: str
) -> None:
    response = client.post("/", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert any(d["field"] == field and problem in d["problem"] for d in detail), detail
    assert kinesis.stored == []


def test_malformed_json_gets_a_422(client: TestClient) -> None:
    response = client.post("/", content=b'{"data": ', headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_record"
    assert "JSON decode error" in response.text


def test_oversize_body_gets_a_413(kinesis: FakeKinesis) -> None:
    with _client(kinesis, max_body_bytes=2048) as client:
        response = client.post("/", json={"data": "x" * 4096})
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert kinesis.stored == []


def test_record_over_the_kinesis_limit_gets_a_413(kinesis: FakeKinesis) -> None:
    with _client(kinesis, max_body_bytes=4 * 1024 * 1024) as client:
        response = client.post("/", json={"data": "x" * (1024 * 1024)})
    assert response.status_code == 413
    assert response.json()["error"] == "record_too_large"


def test_not_accepted_within_ttl_is_a_503_with_retry_after() -> None:
    kinesis = FakeKinesis(even_shards(2), fail=lambda _: "ProvisionedThroughputExceededException")
    with _client(kinesis, record_ttl_ms=200) as client:
        response = client.post("/", json={"data": 1})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"] == "not_accepted"


def test_health(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
