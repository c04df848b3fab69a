"""The call recording (local_stack.recording) and the IAM evaluator (tests/contract/iam.py)
on known inputs: what the contract tests rest on must itself be right."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import hyperframe.frame
import pytest

from local_stack.recording.calls import CallLog, read_logs, summarize
from local_stack.recording.tap import _Reader, access_key, parse_request
from tests.contract.iam import (
    ALLOW,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    Resource,
    arn,
    authorizations,
    decide,
    fits_format,
    resource_formats,
)

AUTH = "AWS4-HMAC-SHA256 Credential=LOCALKCLDAEMON/20261130/us-east-1/kinesis/aws4_request, x"


def _collect() -> tuple[_Reader, list[tuple[dict[str, str], bytes]]]:
    seen: list[tuple[dict[str, str], bytes]] = []
    return _Reader(lambda h, b: seen.append((h, b))), seen


def test_http1_requests_are_read_across_reads_and_pipelined() -> None:
    # GIVEN two requests, one Content-Length and one chunked, split at awkward places
    body = b'{"StreamName": "s"}'
    first = (
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.ListShards\r\n"
        b"Authorization: "
        + AUTH.encode()
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    second = (
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.GetItem\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"Tab\r\n11\r\n'
        b'leName": "t"}    \r\n0\r\n\r\n'
    )
    reader, seen = _collect()
    data = first + second
    for i in range(0, len(data), 7):
        reader.feed(data[i : i + 7])
    # THEN both are read whole, in order
    assert [h["x-amz-target"] for h, _ in seen] == [
        "Kinesis_20131202.ListShards",
        "DynamoDB_20120810.GetItem",
    ]
    assert parse_request("kinesis", *seen[0]) == ("ListShards", {"StreamName": "s"})
    assert parse_request("dynamodb", *seen[1])[1] == {"TableName": "t"}
    assert access_key(seen[0][0]) == "LOCALKCLDAEMON"


def test_cleartext_http2_requests_are_read_from_the_clients_frames() -> None:
    # GIVEN a real HTTP/2 client (prior knowledge, as Netty speaks h2c) sending two requests
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    for stream_id, target in ((1, "SubscribeToShard"), (3, "DescribeStreamConsumer")):
        client.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":path", "/"),
                (":scheme", "http"),
                (":authority", "x"),
                ("authorization", AUTH),
                ("x-amz-target", f"Kinesis_20131202.{target}"),
            ],
        )
        client.send_data(
            stream_id, json.dumps({"ConsumerARN": f"arn-{stream_id}"}).encode(), end_stream=True
        )
    reader, seen = _collect()
    data = client.data_to_send()
    for i in range(0, len(data), 5):
        reader.feed(data[i : i + 5])
    # THEN both requests come out with their bodies
    assert [parse_request("kinesis", h, b) for h, b in seen] == [
        ("SubscribeToShard", {"ConsumerARN": "arn-1"}),
        ("DescribeStreamConsumer", {"ConsumerARN": "arn-3"}),
    ]


def test_frames_after_the_clients_goaway_finish_open_requests_and_are_otherwise_ignored() -> None:
    # GIVEN an HTTP/2 client with one request still sending its body when it closes the
    # connection (Netty sends GOAWAY, then RST_STREAM for the streams it gives up: CI once saw
    # "RECV_RST_STREAM in state CLOSED" from h2, which had stopped at the GOAWAY)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    headers = [(":method", "POST"), (":path", "/"), (":scheme", "http"), (":authority", "x")]
    headers += [("authorization", AUTH), ("x-amz-target", "Kinesis_20131202.ListShards")]
    client.send_headers(1, headers)
    client.send_headers(3, headers)
    client.send_data(3, b'{"StreamName": ', end_stream=False)
    before = client.data_to_send()
    goaway = hyperframe.frame.GoAwayFrame(0)
    goaway.last_stream_id = 3
    rst = hyperframe.frame.RstStreamFrame(1)
    rst.error_code = 5  # STREAM_CLOSED
    window = hyperframe.frame.WindowUpdateFrame(0)
    window.window_increment = 2**20
    data = hyperframe.frame.DataFrame(3, flags=["END_STREAM", "PADDED"])
    data.data, data.pad_length = b'"s"}', 3
    after = b"".join(f.serialize() for f in (goaway, rst, window, data))
    reader, seen = _collect()
    # WHEN the tap reads it all, in pieces that cut frames anywhere
    stream = before + after
    for i in range(0, len(stream), 6):
        reader.feed(stream[i : i + 6])
    # THEN the open request is read whole and the other frames are skipped
    assert [parse_request("kinesis", h, b) for h, b in seen] == [
        ("ListShards", {"StreamName": "s"})
    ]
    # AND a new request after the GOAWAY is not silently passed over: the tap says so
    opened = hyperframe.frame.HeadersFrame(5, flags=["END_HEADERS", "END_STREAM"])
    opened.data = b"\x82"  # any header block
    with pytest.raises(ValueError, match="after the client's GOAWAY"):
        reader.feed(opened.serialize())


def test_query_protocol_and_compressed_bodies() -> None:
    body = gzip.compress(
        b"Action=PutMetricData&Version=2010-08-01&Namespace=app&MetricData.member.1.MetricName=M"
    )
    headers = {"content-encoding": "gzip", "content-type": "application/x-www-form-urlencoded"}
    operation, params = parse_request("cloudwatch", headers, body)
    assert (operation, summarize(params)) == ("PutMetricData", {"Namespace": "app"})


def test_the_log_counts_calls_and_keeps_only_resource_parameters(tmp_path: Path) -> None:
    log = CallLog(tmp_path / "a.json", {"stream": "s"})
    for _ in range(3):
        log.add(
            "producer", "kinesis", "PutRecords", {"StreamName": "s", "Records": [{"Data": b"x"}]}
        )
    log.add(
        "consumer",
        "dynamodb",
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": "a", "Item": {}}},
                {"ConditionCheck": {"TableName": "b"}},
            ]
        },
    )
    log.flush()
    (written,) = read_logs(tmp_path)
    assert written["stack"] == {"stream": "s"}
    assert [(c["operation"], c["params"], c["count"]) for c in written["calls"]] == [
        ("TransactWriteItems", {"TransactItems": [["ConditionCheck", "b"], ["Put", "a"]]}, 1),
        ("PutRecords", {"StreamName": "s"}, 3),
    ]


# ---- the IAM evaluator -------------------------------------------------------------------------
POLICY: dict[str, Any] = {
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["kinesis:Get*", "dynamodb:PutItem"],
            "Resource": ["arn:aws:kinesis:r:1:stream/s", "arn:aws:dynamodb:r:1:table/t?"],
        },
        {
            "Effect": "Deny",
            "Action": "dynamodb:PutItem",
            "Resource": "arn:aws:dynamodb:r:1:table/tx",
        },
        {
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": ["app"]}},
        },
    ]
}


def test_policy_evaluation_deny_wins_wildcards_and_conditions() -> None:
    assert decide(POLICY, "KINESIS:GetRecords", "arn:aws:kinesis:r:1:stream/s") == ALLOW
    assert decide(POLICY, "kinesis:GetRecords", "arn:aws:kinesis:r:1:stream/s2") == IMPLICIT_DENY
    assert decide(POLICY, "dynamodb:PutItem", "arn:aws:dynamodb:r:1:table/t1") == ALLOW
    assert decide(POLICY, "dynamodb:PutItem", "arn:aws:dynamodb:r:1:table/tx") == EXPLICIT_DENY
    assert decide(POLICY, "dynamodb:PutItem", "arn:aws:dynamodb:r:1:table/t12") == IMPLICIT_DENY
    ok = (("cloudwatch:namespace", "app"),)
    other = (("cloudwatch:namespace", "other"),)
    assert decide(POLICY, "cloudwatch:PutMetricData", "*", ok) == ALLOW
    assert decide(POLICY, "cloudwatch:PutMetricData", "*", other) == IMPLICIT_DENY


def test_calls_are_authorized_as_the_reference_says() -> None:
    # a transaction is authorized as each action it contains, per table
    auths = authorizations(
        "dynamodb", "TransactWriteItems", {"TransactItems": [["Put", "a"], ["ConditionCheck", "b"]]}
    )
    assert [(a.action, a.resource.name) for a in auths] == [
        ("dynamodb:PutItem", "a"),
        ("dynamodb:ConditionCheckItem", "b"),
    ]
    assert resource_formats("dynamodb:TransactWriteItems") == ()  # no such IAM action
    # the consumer, by ARN (with its timestamp) and by stream + name (without)
    by_arn = authorizations(
        "kinesis",
        "SubscribeToShard",
        {"ConsumerARN": "arn:aws:kinesis:us-east-1:0:stream/s/consumer/app:1700000000"},
    )[0]
    assert by_arn.resource == Resource("consumer", "s", "app", "1700000000")
    resource = arn(by_arn.resource, "eu-west-1", "123456789012")
    assert fits_format(resource, resource_formats("kinesis:SubscribeToShard"))
    index = authorizations("dynamodb", "Query", {"TableName": "t", "IndexName": "i"})[0]
    assert fits_format(arn(index.resource, "r", "1"), resource_formats("dynamodb:Query"))
    assert resource_formats("cloudwatch:GetMetricData") == ("*",)


def test_a_cbor_timestamp_in_milliseconds_is_read() -> None:
    # GIVEN the rebuild's KCL's ListShards with an AT_TIMESTAMP shard filter, as the AWS SDK
    # for Java sent it through the tap (CBOR; tag 1 with epoch milliseconds)
    body = bytes.fromhex(
        "bf6a53747265616d4e616d656969742d73747265616d6b536861726446696c746572bf6454797065"
        "6c41545f54494d455354414d506954696d657374616d70c11b000001a22cb59760ffff"
    )
    headers = {"x-amz-target": "Kinesis_20131202.ListShards",
               "content-type": "application/x-amz-cbor-1.1"}  # fmt: skip
    # WHEN the tap reads it THEN it has the operation and the stream's name
    operation, params = parse_request("kinesis", headers, body)
    assert (operation, params["StreamName"]) == ("ListShards", "it-stream")
    assert params["ShardFilter"]["Type"] == "AT_TIMESTAMP"
