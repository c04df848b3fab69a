"""The producer's HTTP contract, served in-process against a fake Kinesis."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from unittest.mock import ANY

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from common.storable import (
    MAX_ITEM_BYTES,
    NotStorable,
    attribute,
    check_record,
    dumps_exact,
    loads,
)
from producer.api.fastpath import parse
from producer.api.ingest import plain_record
from producer.api.models import RecordIn
from producer.config import ProducerSettings
from producer.main import create_app
from producer.shards import ShardMap
from tests.fakes import FakeKinesis, even_shards
from tests.kpl import sub_records


def _client(kinesis: FakeKinesis, **settings: object) -> TestClient:
    conf = ProducerSettings(stream_name="s", max_buffered_time_ms=5, **settings)
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


def test_non_json_content_type_gets_a_415(client: TestClient, kinesis: FakeKinesis) -> None:
    # WHEN curl's default form content type is sent
    response = client.post(
        "/", content=b'{"data": 1}', headers={"content-type": "application/x-www-form-urlencoded"}
    )
    # THEN the answer says what to send instead, and nothing was stored
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]
    assert kinesis.stored == []


def test_batch_answers_each_record_and_a_bad_one_costs_nothing(
    client: TestClient, kinesis: FakeKinesis
) -> None:
    # GIVEN a batch with good records around a bad one
    records = [{"data": 1}, {"nodata": 2}, {"data": {"x": 3}, "partition_key": "k"}, "oops"]
    # WHEN posted
    response = client.post("/batch", json={"records": records})
    # THEN every good record is stored and answered, the bad ones say why, in request order
    assert response.status_code == 200
    body = response.json()
    assert body["failed_record_count"] == 2
    good, bad, keyed, junk = body["records"]
    assert good["shard_id"] and keyed["shard_id"]
    assert bad["error"] == "invalid_record" and bad["detail"][0]["field"] == "data"
    assert junk["error"] == "invalid_record"
    stored = {e["id"]: e["data"] for e in _stored_envelopes(kinesis)}
    assert stored == {good["id"]: 1, keyed["id"]: {"x": 3}}


def test_batch_over_the_limit_gets_a_413(kinesis: FakeKinesis) -> None:
    with _client(kinesis, max_batch_records=3) as client:
        response = client.post("/batch", json={"records": [{"data": i} for i in range(4)]})
    assert response.status_code == 413
    assert kinesis.stored == []


def test_overload_is_refused_with_503_not_buffered() -> None:
    # GIVEN a Kinesis that accepts nothing and a bound of 100 records awaiting it
    kinesis = FakeKinesis(even_shards(2), fail=lambda _: "ProvisionedThroughputExceededException")
    with _client(kinesis, max_buffered_records=100, record_ttl_ms=300) as client:
        # WHEN 150 records arrive at once
        body = client.post("/batch", json={"records": [{"data": i} for i in range(150)]}).json()
        # THEN 100 were taken (and failed at the TTL) and 50 were refused at once as overloaded
        errors = [r["error"] for r in body["records"]]
        assert errors.count("not_accepted") == 100
        assert errors.count("overloaded") == 50
        # AND a single record is refused with 503 + Retry-After while the buffer is full
        single = client.post("/", json={"data": "x"})
        assert single.status_code == 503


def test_api_key_is_required_when_configured(kinesis: FakeKinesis) -> None:
    with _client(kinesis, api_key="s3cret") as client:
        missing = client.post("/", json={"data": 1})
        wrong = client.post("/", json={"data": 1}, headers={"x-api-key": "s3cre"})
        right = client.post("/", json={"data": 1}, headers={"x-api-key": "s3cret"})
        health = client.get("/health")
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["error"] == "unauthorized"
    assert right.status_code == 200
    assert health.status_code == 200
    assert len(_stored_envelopes(kinesis)) == 1


def test_ready_turns_503_while_draining(client: TestClient) -> None:
    assert client.get("/ready").status_code == 200
    client.app.state.draining = True  # type: ignore[attr-defined]  # client.app: our FastAPI app
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["error"] == "draining"


def test_openapi_documents_both_record_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/", "/batch", "/health", "/ready"} <= set(paths)


def test_metrics_endpoint_counts_requests(client: TestClient) -> None:
    client.post("/batch", json={"records": [{"data": 1}, {"data": 2}, {"bad": 3}]})
    text = client.get("/metrics").text
    assert "producer_user_records_received_total 2" in text
    assert "producer_user_records_put_total 2" in text


def test_metrics_count_answers_by_status_class_on_both_ways_in() -> None:
    kinesis = FakeKinesis(even_shards(2), fail=lambda _: "ProvisionedThroughputExceededException")
    with _client(kinesis, api_key="k", record_ttl_ms=100) as client:
        key = {"x-api-key": "k"}
        client.post("/", json={"dat": 1}, headers=key)  # 422, FastAPI's validation
        client.post("/", content=b"x", headers={**key, "content-type": "text/plain"})  # 415
        client.post("/", json={"data": 1})  # 401, no key
        client.post("/", json={"data": 1}, headers=key)  # 503: not accepted within the TTL
        text = client.get("/metrics", headers=key).text
    assert "producer_requests_total 4" in text
    assert "producer_responses4xx_total 3" in text
    assert "producer_responses503_total 1" in text
    assert "producer_responses5xx_total 0" in text


# Request bodies (JSON texts) the fast path must leave to FastAPI's validation, or may serve.
RECORD_CORPUS = [
    '{"data": 1}', '{"data": null}', '{"data": [1, {"a": "b"}]}',
    '{"data": "x", "partition_key": null}', '{"data": "x", "partition_key": "%s"}' % ("k" * 256),
    '{"data": "x", "partition_key": "%s"}' % ("k" * 257), '{"data": "x", "partition_key": ""}',
    '{"data": "x", "partition_key": 5}', '{"data": "x", "partition_key": ["k"]}',
    '{"data": "x", "extra": 1}', '{"partition_key": "k"}',
    '{"data": 1, "partition_key": "k", "z": 1}',
    "{}", "[]", '"data"', "3", "null", '{"data": NaN}', '{"data": {"deep": [Infinity]}}',
    '{"data": 1e400}', '{"data": 123456789012345678901}', '{"data": -9223372036854775809}',
    '{"data": "\\ud800"}', '{"data": 1, "data": 2}',
    # client ids: 1-128 of [A-Za-z0-9._:-]
    '{"data": 1, "id": "order-1"}', '{"data": 1, "id": "a.B_c:9-z"}', '{"data": 1, "id": ""}',
    '{"data": 1, "id": "a b"}', '{"data": 1, "id": "%s"}' % ("i" * 128),
    '{"data": 1, "id": "%s"}' % ("i" * 129), '{"data": 1, "id": 5}', '{"data": 1, "id": null}',
    '{"data": 1, "id": "abc\\n"}', '{"data": 1, "id": "\u00e9"}', '{"data": 1, "id": "x/y"}',
    '{"data": 1, "id": "k", "partition_key": "p"}', '{"data": 1, "id": "k", "extra": 1}',
    '{"id": "k", "partition_key": "p"}',
    # numbers: kept exactly whichever parser reads them
    '{"data": 0.1}', '{"data": 1e2}', '{"data": -0.0}', '{"data": 1e-320}',
    '{"data": 123456789.123456789}', '{"data": 0.30000000000000001}',
    '{"data": 1.2345678901234567890123}', '{"data": 1234567890123456}',
    '{"data": 999999999999999}', '{"data": 9.99999999999999e125}', '{"data": [0.1, 1.5e-7]}',
]  # fmt: skip


@pytest.mark.parametrize("text", RECORD_CORPUS)
def test_the_fast_path_never_takes_what_the_route_refuses_nor_changes_it(text: str) -> None:
    # the fast path: orjson, then the plain-record check; the route: the exact parser, then
    # pydantic
    parsed = parse(text.encode())
    fields = None if parsed is None else plain_record(parsed)
    try:
        record = RecordIn.model_validate(loads(text))
    except (ValidationError, json.JSONDecodeError):
        assert fields is None
    else:
        if fields is not None:  # the same record, and the same numbers reach the consumer
            assert fields[:2] == (record.id, record.partition_key)
            assert loads(dumps_exact(fields[2])) == loads(dumps_exact(record.data))


@pytest.mark.parametrize("seed", range(5))
def test_every_number_the_fast_path_reads_reaches_the_consumer_exactly(seed: int) -> None:
    # GIVEN numbers of 1 to 20 significant digits, at exponents around DynamoDB's range
    rng = random.Random(seed)
    for _ in range(2000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 20)))
        point = rng.randint(0, len(digits))
        text = (digits[:point] or "0") + ("." + digits[point:] if point < len(digits) else "")
        text = rng.choice(["", "-"]) + text + rng.choice(["", f"e{rng.randint(-140, 140)}"])
        body = b'{"data": %s}' % text.encode()
        # WHEN the fast path reads it (or leaves it to the exact parser)
        fields = parse(body)
        if fields is None:
            continue
        # THEN the contract judges it as it judges the exact number, and what the producer
        # writes into the envelope is that exact number
        exact = Decimal(text)
        try:
            attribute(exact)
        except NotStorable:
            with pytest.raises(NotStorable):
                attribute(fields["data"])
            continue
        assert Decimal(dumps_exact(fields["data"]).decode()) == exact, text
        assert attribute(fields["data"])[1] == attribute(exact)[1], text


@pytest.mark.parametrize(
    ("body", "problem"),
    [(b'{"data": {"x": NaN}}', "NaN"), (b'{"data": [1e400]}', "1E+400"),
     (b'{"data": "\\ud800"}', "surrogate"), (b'{"data": {"\\udfff": 1}}', "surrogate")],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/", "/batch"])
def test_values_json_cannot_hold_are_refused_not_rewritten(
    client: TestClient, kinesis: FakeKinesis, body: bytes, problem: str, path: str
) -> None:
    # GIVEN what Python's JSON parser reads but no JSON text can carry to the consumer
    if path == "/batch":
        body = b'{"records": [%s, {"data": 1}]}' % body
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    # THEN the record is refused naming the problem (the batch's good record is stored)
    if path == "/":
        assert response.status_code == 422
        assert problem in response.json()["detail"][0]["problem"]
        assert kinesis.stored == []
    else:
        bad, good = response.json()["records"]
        assert problem in bad["detail"][0]["problem"]
        assert [e["data"] for e in _stored_envelopes(kinesis)] == [1]
        assert good["id"] == _stored_envelopes(kinesis)[0]["id"]


def test_integers_beyond_64_bits_are_stored_exactly(
    client: TestClient, kinesis: FakeKinesis
) -> None:
    big = 2**70 + 1
    single = client.post("/", content=b'{"data": %d}' % big,
                         headers={"content-type": "application/json"})  # fmt: skip
    batch = client.post("/batch", json={"records": [{"data": big}, {"data": 1}]})
    assert single.status_code == batch.status_code == 200
    assert [e["data"] for e in _stored_envelopes(kinesis)].count(big) == 2


def test_a_chunked_body_over_the_limit_gets_a_413(kinesis: FakeKinesis) -> None:
    # GIVEN no Content-Length to check up front (a chunked upload)
    def chunks() -> Iterator[bytes]:
        yield b'{"data": "'
        for _ in range(8):
            yield b"x" * 1024
        yield b'"}'

    with _client(kinesis, max_body_bytes=4096) as client:
        response = client.post("/", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert kinesis.stored == []


def test_both_ways_in_answer_alike(kinesis: FakeKinesis) -> None:
    # GIVEN the same record served by the fast path and, with the fast path stood aside, by
    # the FastAPI route
    with _client(kinesis) as client:
        fast = client.post("/", json={"data": {"a": 1}, "partition_key": "k"})
        client.app.fast_path = False  # type: ignore[attr-defined]  # the fast path stands aside
        routed = client.post("/", json={"data": {"a": 1}, "partition_key": "k"})
    # THEN both are stored and answered with the same fields and types
    assert fast.status_code == routed.status_code == 200
    assert fast.headers["content-type"] == routed.headers["content-type"]
    assert fast.json().keys() == routed.json().keys()
    assert fast.json()["shard_id"] == routed.json()["shard_id"]
    assert len(_stored_envelopes(kinesis)) == 2


def _post(client: TestClient, path: str, body: bytes) -> Any:
    return client.post(path, content=body, headers={"content-type": "application/json"})


def _nested(levels: int) -> bytes:
    return b'{"a": ' * levels + b"1" + b"}" * levels


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [(b"1e126", "body.data", "magnitude 1E+126"), (b"-1E+126", "body.data", "magnitude"),
     (b"1e-131", "body.data", "1E-131"), (b"[1, 1.5e-131]", "body.data.1", "smallest"),
     (b'{"n": 1234567890123456789012345678901234567.89}', "body.data.n", "39 significant"),
     (b'{"%s": 1}' % (b"k" * 70_000), "body.data.kkkkkkkkkkkkkkkkkkkk...(70,000 characters)",
      "map key of 70,000 bytes"),
     (b'{"": 1}', "body.data.", "empty map key"),
     (b"1" * 5000, "body.data", "5000 significant digits"),
     (_nested(32), "body.data" + ".a" * 31, "nested deeper"),
     (_nested(1000), "body.data" + ".a" * 31, "nested deeper"),
     (_nested(5000), "body.0", "nested deeper than the parser reads")],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/", "/batch"])
def test_records_dynamodb_could_not_store_are_refused_at_the_door(
    client: TestClient, kinesis: FakeKinesis, data: bytes, field: str, problem: str, path: str
) -> None:
    # GIVEN a record whose data DynamoDB would refuse (the issue's poison cases among them)
    record = b'{"data": %s}' % data
    # WHEN posted alone, or in a batch after a good record
    if path == "/":
        response = _post(client, path, record)
    else:
        response = _post(client, path, b'{"records": [{"data": "good"}, %s]}' % record)
    # THEN a 422 names the field and the problem, never a 5xx; in a batch the good one is kept
    if path == "/" or "parser" in problem:  # too deep to parse: the request itself is refused
        assert response.status_code == 422, response.text[:300]
        (detail,) = response.json()["detail"]
        assert problem in detail["problem"]
        assert detail["field"] == field or "parser" in problem
        assert kinesis.stored == []
    else:
        assert response.status_code == 200, response.text[:300]
        _, bad = response.json()["records"]
        assert bad["error"] == "invalid_record"
        assert bad["detail"] == [{"field": field.removeprefix("body."), "problem": ANY}]
        assert problem in bad["detail"][0]["problem"]
        assert [e["data"] for e in _stored_envelopes(kinesis)] == ["good"]


@pytest.mark.parametrize("levels", [31, 33, 255, 980, 1023, 1024, 5000])
def test_deep_nesting_never_gets_a_500(client: TestClient, levels: int) -> None:
    # GIVEN data nested deeper than orjson or Python's parser read (the issue's 980-1023 gave
    # 500: orjson could not write the envelope, and the fallback hit the recursion limit)
    response = _post(client, "/", b'{"data": %s}' % _nested(levels))
    # THEN stored when DynamoDB can hold it, else a 422
    assert response.status_code == (200 if levels <= 31 else 422), response.text[:300]


def test_a_record_over_dynamodbs_item_limit_gets_a_413_naming_the_field(
    client: TestClient, kinesis: FakeKinesis
) -> None:
    # GIVEN the largest string the contract lets through for this id and partition key
    probe = client.post("/", json={"data": "x" * 500_000, "id": "r1", "partition_key": "k"})
    # (the issue's 500 KB record: quarantined truncated before, acknowledged with 200)
    assert probe.status_code == 413
    assert probe.json()["error"] == "record_too_large"
    assert probe.json()["detail"][0]["field"] == "body.data"
    assert "409,600" in probe.json()["detail"][0]["problem"]
    largest = MAX_ITEM_BYTES - check_record("r1", "k", "")
    # WHEN it and one byte more are posted
    fits = client.post("/", json={"data": "x" * largest, "id": "r1", "partition_key": "k"})
    over = client.post("/", json={"data": "x" * (largest + 1), "id": "r1", "partition_key": "k"})
    # THEN the first is stored, the second refused with 413 before Kinesis saw it
    assert fits.status_code == 200
    assert over.status_code == 413
    assert [len(e["data"]) for e in _stored_envelopes(kinesis)] == [largest]


@pytest.mark.parametrize(
    "number",
    [b"123456789.123456789", b"0.30000000000000001", b"1.2345678901234567890123",
     b"12345678901234567890123456789012345678", b"-9.9999999999999999999999999999999999999E+125",
     b"1E-130", b"0.1", b"1.50"],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/", "/batch"])
def test_numbers_are_kept_exactly_as_sent(
    client: TestClient, kinesis: FakeKinesis, number: bytes, path: str
) -> None:
    # GIVEN numbers a double would round (the issue: stored rounded) and others
    record = b'{"data": {"n": %s}}' % number
    body = record if path == "/" else b'{"records": [%s]}' % record
    # WHEN posted
    assert _post(client, path, body).status_code == 200
    # THEN the envelope carries the same number, digit for digit or value for value
    ((_, _, raw),) = [r for s in kinesis.stored for r in sub_records(s.data, s.partition_key)]
    assert loads(raw)["data"]["n"] == Decimal(number.decode())


def test_a_client_id_is_the_records_id_and_marked_for_the_consumer(
    client: TestClient, kinesis: FakeKinesis
) -> None:
    # WHEN records are posted with the client's ids (one twice, as a retry would), and one
    # without
    first = client.post("/", json={"data": 1, "id": "order-1"})
    again = client.post("/", json={"data": 2, "id": "order-1"})
    batch = client.post("/batch", json={"records": [{"data": 3, "id": "order:2"}, {"data": 4}]})
    # THEN the answers carry the client's ids, and the envelopes mark them as the client's
    assert first.json()["id"] == again.json()["id"] == "order-1"
    keyed, minted = batch.json()["records"]
    assert keyed["id"] == "order:2" and minted["id"] != "order:2"
    envelopes = {e["data"]: e for e in _stored_envelopes(kinesis)}
    assert [envelopes[n].get("client_id") for n in (1, 2, 3, 4)] == [True, True, True, None]
    # AND the id is the default partition key: every copy of an id goes to the same shard
    assert first.json()["shard_id"] == again.json()["shard_id"]
    assert {s.partition_key for s in kinesis.stored} >= {"order-1"}


@pytest.mark.parametrize("bad_id", ["", "a b", "x" * 129, "é", "a/b", "line\n"])
def test_a_malformed_client_id_gets_a_422(client: TestClient, bad_id: str) -> None:
    response = client.post("/", json={"data": 1, "id": bad_id})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "body.id"
    batch = client.post("/batch", json={"records": [{"data": 1, "id": bad_id}]}).json()
    assert batch["records"][0]["detail"][0]["field"] == "id"


def test_a_partition_key_that_is_not_unicode_gets_a_422_not_a_500(client: TestClient) -> None:
    response = _post(client, "/", b'{"data": 1, "partition_key": "\\ud800"}')
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "body.partition_key"


# The issue's reproductions (issue 12, "Why"): each got 200 (or a 500) and was then lost,
# stalled a shard, or was stored other than sent. (body, path, status of the answer)
ISSUE_REPRODUCTIONS = {
    "1e126": (b'{"data": 1e126}', "/", 422),
    "1e-131": (b'{"data": 1e-131}', "/", 422),
    "a 70,000-character map key": (b'{"data": {"%s": 1}}' % (b"k" * 70_000), "/", 422),
    "a 500 KB record": (b'{"data": "%s"}' % (b"x" * 500_000), "/", 413),
    "nested 980 deep": (b'{"data": %s}' % _nested(980), "/", 422),
    "nested 1,023 deep": (b'{"data": %s}' % _nested(1023), "/", 422),
    "a 4,301-digit integer": (b'{"data": %s}' % (b"7" * 4301), "/", 422),
    "a /batch whose second record is nested 1,000 deep": (
        b'{"records": [{"data": "first"}, {"data": %s}]}' % _nested(1000), "/batch", 200),
    "a float of 21 significant digits": (b'{"data": 123456789.123456789012}', "/", 200),
}  # fmt: skip


# What sends a body to the exact parser (and, before issue 12's follow-up, a /batch with a bad
# record to a whole-request 422 on the FastAPI route): nothing, a hex string that reads as a
# three-digit exponent, sixteen digits in a row inside a string
EXACT_PARSE_TRIGGERS = {"nothing": b'"k"', "4e123abc": b'"4e123abc"',
                        "16 digits": b'"1234567890123456"'}  # fmt: skip
BAD_RECORDS = {"nested 1,000 deep": _nested(1000), "nested 1,020 deep": _nested(1020),
               "1e126": b"1e126", "a missing data": None}  # fmt: skip


@pytest.mark.parametrize("trigger", EXACT_PARSE_TRIGGERS)
@pytest.mark.parametrize("bad", BAD_RECORDS)
def test_a_batch_gets_the_same_per_record_answer_whichever_way_and_parser_reads_it(
    trigger: str, bad: str
) -> None:
    # GIVEN a batch of a good record (whose partition key may send the body to the exact
    # parser) and a bad one
    data = BAD_RECORDS[bad]
    second = b'{"nodata": 1}' if data is None else b'{"data": %s}' % data
    body = b'{"records": [{"id": "good-1", "data": 1, "partition_key": %s}, %s]}' % (
        EXACT_PARSE_TRIGGERS[trigger], second)  # fmt: skip
    answers = {}
    for way in ("fast path", "FastAPI route"):
        kinesis = FakeKinesis(even_shards(2))
        with _client(kinesis) as client:
            client.app.fast_path = way == "fast path"  # type: ignore[attr-defined]  # our FastAPI app
            # WHEN it is posted
            response = _post(client, "/batch", body)
        # THEN the good record is stored and answered, the bad one fails alone, naming why
        assert response.status_code == 200, (way, response.text[:300])
        good, failed = response.json()["records"]
        assert response.json()["failed_record_count"] == 1
        assert good["id"] == "good-1" and good["shard_id"], way
        assert failed["error"] == "invalid_record", way
        assert [e["id"] for e in _stored_envelopes(kinesis)] == ["good-1"]
        answers[way] = failed
    # AND both ways name the same problem
    assert answers["fast path"] == answers["FastAPI route"]


@pytest.mark.parametrize("case", ISSUE_REPRODUCTIONS)
@pytest.mark.parametrize("way", ["fast path", "FastAPI route"])
def test_the_issues_reproductions_are_refused_or_stored_as_sent_both_ways(
    kinesis: FakeKinesis, case: str, way: str
) -> None:
    body, path, status = ISSUE_REPRODUCTIONS[case]
    with _client(kinesis) as client:
        if way == "FastAPI route":
            client.app.fast_path = False  # type: ignore[attr-defined]  # the fast path stands aside
        # WHEN the issue's request is posted
        response = _post(client, path, body)
    # THEN a 4xx naming the field for what DynamoDB could not store, never a 5xx
    assert response.status_code == status, response.text[:300]
    stored = _stored_envelopes(kinesis)
    if path == "/batch":  # both parsers read it: the good record kept (once), the deep one
        # refused and not sent
        first, deep = response.json()["records"]
        assert deep["error"] == "invalid_record" and "nested" in deep["detail"][0]["problem"]
        assert [e["data"] for e in stored] == ["first"] and first["id"] == stored[0]["id"]
    elif status == 200:  # AND what was posted is what goes to the consumer, digit for digit
        (envelope,) = sub_records(kinesis.stored[0].data, kinesis.stored[0].partition_key)
        assert loads(envelope[2])["data"] == Decimal("123456789.123456789012")
    else:
        assert response.json()["detail"][0]["field"].startswith("body")
        assert stored == []
